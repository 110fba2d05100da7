"""How stage flows run inside the pipeline flow: task threads and heartbeats."""

from __future__ import annotations

from prefect.settings import get_current_settings

from flows.common import subflow_settings, task_threads
from pipeline_lib.config import parse_config


def _cfg(**run):
    return parse_config({"run": {"name": "t", **run}}, "inline", ".")


def test_process_pool_runs_get_two_task_threads_per_worker_and_thread_runs_one():
    assert task_threads(_cfg(workers=3, task_runner="process")) == 6
    assert task_threads(_cfg(workers=3, task_runner="thread")) == 3


def test_stage_subflows_send_no_heartbeat_of_their_own_and_the_parent_keeps_its_own():
    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None  # Prefect's default: the parent flow heartbeats
    with subflow_settings(_cfg()):
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before
    with subflow_settings(_cfg(subflow_heartbeats=True)):  # opted in: subflows heartbeat as the parent does
        assert get_current_settings().flows.heartbeat_frequency == before
