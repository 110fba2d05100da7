"""Flow run names keyed by partition, with the scheduled date filled in for scheduled runs."""

from __future__ import annotations

import datetime as dt

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
    monkeypatch.setitem(runtime_flow_run.FIELDS, "parameters", lambda: {"partition": None})
    assert run_name("extract")() == "extract-default"
