"""deployments/prefect.yaml: what `prefect deploy` and `crawl2model serve` build from it (no server needed)."""

from __future__ import annotations

import pytest
import yaml

from crawl2model.commands.ops import DEFAULT_PREFECT_FILE, load_entrypoint, load_prefect_file, runner_deployments
from pipeline_lib.schema import STAGE_DIRS

PARAMETERS = {"config_path", "partition", "data_root", "run_dir"}


@pytest.fixture(scope="module")
def spec() -> list[dict]:
    return load_prefect_file(DEFAULT_PREFECT_FILE)


def test_one_deployment_per_stage_plus_the_daily_pipeline(spec):
    names = [d["name"] for d in spec]
    assert len(names) == len(set(names))
    assert set(names) == {"daily", *STAGE_DIRS}


def test_training_alone_uses_the_gpu_pool(spec):
    pools = {d["name"]: d["work_pool"]["name"] for d in spec}
    assert pools.pop("train") == "crawl2model-gpu"
    assert set(pools.values()) == {"crawl2model-cpu"}


def test_shared_settings_come_from_anchors_and_name_every_flow_parameter(spec):
    text = DEFAULT_PREFECT_FILE.read_text()
    assert "&stage_params" in text and "<<: *common" in text
    for d in spec:
        assert set(d["parameters"]) == PARAMETERS, d["name"]
        assert d["enforce_parameter_schema"] is True
        flow = load_entrypoint(d["entrypoint"])
        assert set(flow.parameters.properties) == PARAMETERS, d["entrypoint"]
    stage_defaults = [d["parameters"] for d in spec if d["name"] != "daily"]
    assert all(p == stage_defaults[0] for p in stage_defaults)


def test_daily_schedule_keys_the_partition_by_scheduled_date(spec):
    daily = next(d for d in spec if d["name"] == "daily")
    assert daily["parameters"]["partition"] == "{scheduled_date}"
    (schedule,) = daily["schedules"]
    assert schedule["cron"] == "0 3 * * *" and schedule["timezone"] == "UTC"


def test_serve_builds_the_same_deployments(spec):
    served = {d.name: d for d in runner_deployments(spec)}
    assert set(served) == {d["name"] for d in spec}
    daily = served["daily"]
    assert daily.parameters["partition"] == "{scheduled_date}"
    assert [s.schedule.cron for s in daily.schedules] == ["0 3 * * *"]
    assert daily.flow_name == "pipeline" and "pipeline" in daily.tags
    assert not served["tokens"].schedules
    assert [s.active for s in daily.schedules] == [True]
    paused = [{**d, "schedules": [{**s, "active": False} for s in d.get("schedules") or []]} for d in spec]
    assert [s.active for s in {d.name: d for d in runner_deployments(paused)}["daily"].schedules] == [False]
    only = runner_deployments(spec, only=["tokens"], schedules=False)
    assert [d.name for d in only] == ["tokens"]
    with pytest.raises(ValueError, match="not all found"):
        runner_deployments(spec, only=["tokenz"])


def test_serve_keeps_interval_and_rrule_schedules_and_deployment_settings(spec):
    # Only cron schedules were served; interval and rrule ones, paused and concurrency_limit were dropped.
    daily = next(d for d in spec if d["name"] == "daily")
    variants = [{**daily, "name": "every6h", "schedules": [{"interval": 21600, "timezone": "UTC"}],
                 "paused": True, "concurrency_limit": 1, "version": "0.1.0"},
                {**daily, "name": "weekdays", "schedules": [{"rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"}]}]
    served = {d.name: d for d in runner_deployments(variants)}
    every6h, weekdays = served["every6h"], served["weekdays"]
    assert [s.schedule.interval.total_seconds() for s in every6h.schedules] == [21600.0]
    assert every6h.paused is True and every6h.concurrency_limit == 1 and every6h.version == "0.1.0"
    assert [s.schedule.rrule.endswith("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR") for s in weekdays.schedules] == [True]
    with pytest.raises(ValueError, match="needs cron, interval or rrule"):
        runner_deployments([{**daily, "schedules": [{"every": "day"}]}])


def test_flow_docstrings_document_the_parameters(spec):
    from flows.extract import extract_flow

    described = extract_flow.parameters.properties
    assert "partition" in described and described["partition"].get("description"), described
    assert yaml.safe_load(DEFAULT_PREFECT_FILE.read_text())["prefect-version"].startswith("3.")
