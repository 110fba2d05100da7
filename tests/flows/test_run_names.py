"""Flow run names keyed by partition, with the scheduled date filled in for scheduled runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import prefect.runtime.flow_run as runtime_flow_run

from flows.common import run_name, scheduled_partition


def test_scheduled_runs_are_named_by_their_date_and_others_by_their_partition(monkeypatch):
    start = dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # 04:30 UTC next day
    monkeypatch.setitem(runtime_flow_run.FIELDS, "scheduled_start_time", lambda: start)
    monkeypatch.setitem(runtime_flow_run.FIELDS, "parameters", lambda: {"partition": "{scheduled_date}"})
    assert scheduled_partition() == "2026-11-28"
    assert run_name("pipeline")() == "pipeline-2026-11-28"
    monkeypatch.setitem(runtime_flow_run.FIELDS, "parameters", lambda: {"partition": "crawl-42"})
    assert run_name("pipeline")() == "pipeline-crawl-42"



def test_a_flow_run_without_a_partition_parameter_is_named_by_the_partition_it_works_on(monkeypatch, tmp_path):
    # `python flows/langid.py --config configs/small.yaml` named its run "langid-default" while it
    # worked on partition "sample".
    config = tmp_path / "c.yaml"
    config.write_text("run:\n  partition: p9\n")
    for params, name in (({"config_path": str(config), "partition": None}, "extract-p9"),
                         ({"config_path": str(config), "run_dir": "/data/x/2026-01-02/"}, "extract-2026-01-02"),
                         ({"config_path": str(config), "run_dir": "."}, f"extract-{Path.cwd().name}"),
                         ({"config_path": str(tmp_path / "missing.yaml")}, "extract-default")):
        monkeypatch.setitem(runtime_flow_run.FIELDS, "parameters", lambda params=params: params)
        assert run_name("extract")() == name
