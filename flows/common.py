"""What every flow shares: config resolution, the task runner, mapping a stage over its shards.

Flows read like a table of contents; the mechanics live here and in pipeline_lib.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline_lib import pipeline
from pipeline_lib.config import PipelineConfig, load_config, run_overrides
from pipeline_lib.pipeline import ConfigRef
from tasks.shard_tasks import stage_shard_task

DEFAULT_CONFIG = "configs/small.yaml"
SCHEDULED_DATE = "{scheduled_date}"  # deployment parameter: partition = the run's scheduled date
PROGRESS_EVERY_S = 2.0  # the least time between two updates of a stage's progress artifact
DATA_ROOT_ENV = "CRAWL2MODEL_DATA_ROOT"  # set on a worker: the data root of every run it starts
# CPU stages that map one task per shard: the ones a Dask cluster spreads out (crawl and train do not).
DASK_STAGES = tuple(k for k in pipeline.ORDER if k not in ("crawl", "train"))

# Appended to every flow's docstring: Prefect shows these as the parameters' descriptions in the UI.
PARAMETER_DOCS = """

Args:
    config_path: Pipeline YAML (relative paths resolve against the worker's working directory).
    partition: Partition key, a date or crawl id; the run dir is <data_root>/<run.name>/<partition>.
        "{scheduled_date}" means the flow run's scheduled date (UTC). None: the config's run.partition.
    data_root: Local path or fsspec URL (s3://bucket/prefix) overriding run.data_root.
        None: $CRAWL2MODEL_DATA_ROOT on the worker, else the config's.
    run_dir: An explicit run dir <data_root>/<name>/<partition>; wins over partition and data_root.
"""


def documented(fn):
    """Give a flow function the shared parameter docs (apply below @flow: Prefect reads them at decoration)."""
    fn.__doc__ = (fn.__doc__ or "").rstrip() + PARAMETER_DOCS
    return fn


def scheduled_partition() -> str:
    """The flow run's scheduled start date (UTC), so a scheduled run and its backfill agree."""
    from prefect.runtime import flow_run

    start = flow_run.scheduled_start_time
    if start.tzinfo is None:  # Prefect reports UTC; a naive time can only mean UTC too
        start = start.replace(tzinfo=datetime.timezone.utc)
    return start.astimezone(datetime.timezone.utc).date().isoformat()


def run_name(prefix: str):
    """A flow_run_name callable: ``<prefix>-<partition>``, with "{scheduled_date}" resolved to the date.

    A plain template would name scheduled runs literally "pipeline-{scheduled_date}".
    """
    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        partition = params.get("partition")
        if partition == SCHEDULED_DATE:
            partition = scheduled_partition()
        if not partition:  # not passed (python flows/langid.py --config ...): the one the run will use
            partition = _partition_of(params)
        return f"{prefix}-{partition or 'default'}"

    return name


def _partition_of(params: dict) -> str | None:
    """The partition a flow run with these parameters works on: its run_dir's last part, else the
    config's run.partition; None when the config cannot be read (the run itself will say why)."""
    if params.get("run_dir"):
        run_dir = str(params["run_dir"])
        run_dir = run_dir if "://" in run_dir else os.path.abspath(run_dir)  # "." names its folder
        return run_dir.rstrip("/").rsplit("/", 1)[-1] or None
    try:
        return load_config(params.get("config_path") or DEFAULT_CONFIG, check_files=False).run.partition
    except Exception:
        return None


def resolve(config_path: str, partition: str | None = None, data_root: str | None = None,
            run_dir: str | None = None, check_files: bool = True) -> tuple[PipelineConfig, ConfigRef, str]:
    """Load and validate the config (fails before any work), apply overrides, make the run dir.

    ``check_files=False``: the step reads only the run dir, so the config's input files need not exist here."""
    if partition == SCHEDULED_DATE:
        partition = scheduled_partition()
    # A worker of the server stack points every run at the shared store (docker-compose.yml);
    # an explicit data_root parameter still wins.
    data_root = data_root or os.environ.get(DATA_ROOT_ENV) or None
    cfg = load_config(config_path, run_overrides(partition, data_root), check_files)
    if run_dir:
        cfg = cfg.with_run_dir(run_dir)
    return cfg, ConfigRef.of(cfg), pipeline.prepare_run(cfg)


def dask_task_runner(address: str):
    """A task runner on the run's Dask scheduler (``dask_cluster`` yields its address)."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


def _local_cluster_kwargs(cfg: PipelineConfig) -> dict[str, Any]:
    # One single-threaded process per worker: the stages are CPU-bound Python, threads would share a GIL.
    return {"n_workers": cfg.run.workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}


@contextmanager
def dask_cluster(cfg: PipelineConfig):
    """The scheduler address the stages share: the configured one, or a LocalCluster for this run.

    Started once per pipeline run (not once per stage flow), so workers and the models they have
    loaded serve every stage. Yields None when the run does not use Dask.
    """
    if cfg.run.task_runner != "dask" or cfg.run.dask_address:
        yield cfg.run.dask_address
        return
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client

    # Task runs on the workers report to this run's API; without it each worker process would
    # start its own temporary Prefect server (the embedded default has no PREFECT_API_URL).
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    with LocalCluster(**_local_cluster_kwargs(cfg), env={"PREFECT_API_URL": api_url}) as cluster:
        yield cluster.scheduler_address


def task_threads(cfg: PipelineConfig) -> int:
    """Task threads of a stage flow.

    With the process pool, twice the pool: while one task run does its Prefect bookkeeping (a few
    API calls, ~35 ms) the next shard already waits in the pool, so no worker idles between shards;
    the pool still bounds the parallelism at run.workers. With task_runner thread each task thread
    does the work itself, so there the thread count is the parallelism.
    """
    return 2 * cfg.run.workers if cfg.run.task_runner == "process" else cfg.run.workers


@contextmanager
def subflow_settings(cfg: PipelineConfig):
    """Stage flows run as subflows without heartbeats of their own, unless run.subflow_heartbeats.

    They run in the parent's process, whose heartbeat already shows the server that the run is
    alive; and each flow's heartbeat thread sleeps in one-second steps, so joining it at the end
    of every subflow cost up to a second of wall time (~5 s a run). The price: if the process is
    killed, a zombie-detection automation marks the parent crashed but not the running subflow.
    """
    if cfg.run.subflow_heartbeats:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_stage_flows(stage_flows: list, cfg: PipelineConfig, params: dict[str, Any]) -> dict[str, Any]:
    """Run stage flows in order as subflows; on Dask, the CPU stages run on the shared cluster.

    With Dask, ``results["dask"]`` says which workers ran how many tasks (from the scheduler's
    task stream), so a run shows that it really was spread out.
    """
    results: dict[str, Any] = {}
    with dask_cluster(cfg) as address, subflow_settings(cfg):
        if not address:
            threads = ThreadPoolTaskRunner(max_workers=task_threads(cfg))
            for stage_flow in stage_flows:
                results[stage_flow.name] = stage_flow.with_options(task_runner=threads)(**params)
            return results
        from distributed import Client, get_task_stream

        with Client(address) as client, get_task_stream(client) as stream:
            for stage_flow in stage_flows:
                if stage_flow.name in DASK_STAGES:
                    stage_flow = stage_flow.with_options(task_runner=dask_task_runner(address))
                results[stage_flow.name] = stage_flow(**params)
        per_worker: dict[str, int] = {}
        for record in stream.data:
            per_worker[record["worker"]] = per_worker.get(record["worker"], 0) + 1
        results["dask"] = {"scheduler": address, "tasks_per_worker": per_worker}
    return results


def summarize(key: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    total = {"stage": key, "shards": len(results), "skipped": sum(bool(r.get("skipped")) for r in results)}
    for field in ("rows_in", "kept", "rejected"):
        total[field] = sum(int(r.get(field, 0)) for r in results)
    total["seconds"] = round(sum(float(r.get("seconds", 0.0)) for r in results), 3)
    return total


def map_over_shards(key: str, names: list[str], submit: Callable[[str], Any]) -> dict[str, Any]:
    """Submit one task per shard, report progress as an artifact, wait, and summarise."""
    logger = get_run_logger()
    progress_id = create_progress_artifact(0.0, description=f"{key}: shards done of {len(names)}") if names else None
    futures = [submit(n) for n in names]
    results = []
    last_update = time.monotonic()
    for i, fut in enumerate(futures, 1):
        results.append(fut.result())
        # At most one progress update per PROGRESS_EVERY_S (each is an API call), and always 100%.
        if progress_id and (i == len(names) or time.monotonic() - last_update >= PROGRESS_EVERY_S):
            update_progress_artifact(progress_id, 100.0 * i / len(names))
            last_update = time.monotonic()
    summary = summarize(key, results)
    logger.info("%s: %d shards (%d already done), %d in, %d kept, %d rejected",
                   key, summary["shards"], summary["skipped"], summary["rows_in"], summary["kept"], summary["rejected"])
    print_progress(summary)
    return summary


def print_progress(summary: dict[str, Any]) -> None:
    s = summary
    note = f" ({s['skipped']} already done)" if s.get("skipped") else ""
    print(f"  {s['stage']:<10} {s['shards']:>3} shards{note}: {s['rows_in']} in, {s['kept']} kept, "
          f"{s['rejected']} rejected", file=sys.stderr, flush=True)


def stage_inputs(ref: ConfigRef, run_dir: str, key: str) -> list[str] | None:
    """The shards a stage maps over, after clearing leftovers of killed writes; None if it is disabled."""
    if not pipeline.enabled(ref.load(), key):
        return None
    pipeline.begin_stage(ref, run_dir, key)
    return pipeline.list_input_shards(ref, run_dir, key)


def run_stage(ref: ConfigRef, run_dir: str, key: str) -> dict[str, Any]:
    names = stage_inputs(ref, run_dir, key)
    if names is None:
        return {"stage": key, "disabled": True}
    return map_over_shards(key, names, lambda n: stage_shard_task.submit(ref, run_dir, key, n))


def stage_cli(flow_fn, description: str) -> None:
    """`python flows/<stage>.py --config PATH [--partition P] [--run-dir DIR]` for every flow file."""
    from crawl2model.env import configure_environment

    configure_environment()
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--partition")
    ap.add_argument("--run-dir")
    args = ap.parse_args()
    result = flow_fn(config_path=args.config, partition=args.partition, run_dir=args.run_dir)
    print(result)


def make_stage_flow(key: str, doc: str):
    """The flow of one per-document stage: map its one-shard task over the input shards."""
    from prefect import flow

    def stage_flow(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
                   run_dir: str | None = None) -> dict:
        _, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
        return run_stage(ref, run_dir, key)

    stage_flow.__doc__ = doc.strip().splitlines()[0]
    documented(stage_flow)
    stage_flow.__name__ = f"{key}_flow"
    return flow(name=key, flow_run_name=run_name(key), task_runner=ThreadPoolTaskRunner(max_workers=8))(stage_flow)
