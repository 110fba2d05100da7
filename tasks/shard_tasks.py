"""Thin Prefect tasks: one task run per shard (never per document), paths in, small dicts out.

Retries are for what can succeed on retry (I/O); a bad document is a rejected row, and a broken
contract or a corrupt input shard fails at once. The work itself runs in pipeline_lib, in the
run's worker-process pool (``workers.call``) or inline on a Dask worker.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pipeline_lib import pipeline, workers
from pipeline_lib.pipeline import ConfigRef
from tasks.retry import retry_on_io

SHARD_TASK = dict(retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_io,
                  cache_policy=NO_CACHE, persist_result=False)


def pool_size(ref: ConfigRef) -> int:
    """Worker processes for shard work; 0 (inline) when threads or Dask already parallelise."""
    cfg = ref.load()
    return cfg.run.workers if cfg.run.task_runner == "process" else 0


@task(name="crawl", **SHARD_TASK)
def crawl_task(ref: ConfigRef, run_dir: str) -> dict[str, Any] | None:
    # Crawling is I/O-bound and keeps its own host concurrency: it runs in this process.
    return pipeline.run_crawl_source(ref, run_dir)


@task(name="ingest-file", task_run_name="ingest-{job.kind}-{job.index}", **SHARD_TASK)
def ingest_file_task(ref: ConfigRef, job) -> dict[str, Any]:
    # One WARC or document file per task, on the worker pool: files are ingested side by side.
    return workers.call(pool_size(ref), pipeline.ingest_source_file, job)


@task(name="stage-shard", task_run_name="{key}-{name}", **SHARD_TASK)
def stage_shard_task(ref: ConfigRef, run_dir: str, key: str, name: str) -> dict[str, Any]:
    return workers.call(pool_size(ref), pipeline.run_stage_shard, ref, run_dir, key, name)


@task(name="dedup-signatures", task_run_name="signatures-{name}", **SHARD_TASK)
def signatures_task(ref: ConfigRef, run_dir: str, name: str) -> dict[str, Any]:
    return workers.call(pool_size(ref), pipeline.dedup_signatures_shard, ref, run_dir, name)


@task(name="dedup-cluster", **SHARD_TASK)
def cluster_task(ref: ConfigRef, run_dir: str) -> dict[str, Any]:
    return workers.call(pool_size(ref), pipeline.dedup_cluster, ref, run_dir)


@task(name="dedup-filter", task_run_name="dedup-filter-{name}", **SHARD_TASK)
def dedup_filter_task(ref: ConfigRef, run_dir: str, name: str) -> dict[str, Any]:
    return workers.call(pool_size(ref), pipeline.dedup_filter_shard, ref, run_dir, name)


@task(name="prepare-tokenizer", **SHARD_TASK)
def prepare_tokenizer_task(ref: ConfigRef, run_dir: str) -> dict[str, Any]:
    return workers.call(pool_size(ref), pipeline.prepare_tokenizer, ref, run_dir)


@task(name="train", tags=["gpu"], cache_policy=NO_CACHE, persist_result=False)
def train_task(ref: ConfigRef, run_dir: str) -> dict[str, Any]:
    # Not retried: a resumed training run continues from its last checkpoint on the next flow run.
    return pipeline.run_train(ref, run_dir)
