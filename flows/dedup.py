"""Dedup, the one global stage: MinHash signatures per shard, one clustering, a filter per shard.

`python flows/dedup.py --config configs/small.yaml`
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from prefect import flow  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.common import DEFAULT_CONFIG, map_over_shards, resolve, stage_cli  # noqa: E402
from pipeline_lib import pipeline  # noqa: E402
from tasks.shard_tasks import cluster_task, dedup_filter_task, signatures_task  # noqa: E402


@flow(name="dedup", task_runner=ThreadPoolTaskRunner(max_workers=8))
def dedup_flow(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
               run_dir: str | None = None) -> dict:
    """Map signatures, reduce to clusters (one task, bounded memory), map the filter.

    Args:
        config_path: Pipeline YAML (relative paths resolve against the worker's working directory).
        partition: Partition key, a date or crawl id; the run dir is <data_root>/<run.name>/<partition>.
            "{scheduled_date}" means the flow run's scheduled date (UTC). None: the config's run.partition.
        data_root: Local path or fsspec URL (s3://bucket/prefix) overriding run.data_root.
            None: $CRAWL2MODEL_DATA_ROOT on the worker, else the config's.
        run_dir: An explicit run dir <data_root>/<name>/<partition>; wins over partition and data_root.
    """
    cfg, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
    if not pipeline.enabled(cfg, "dedup"):
        return {"stage": "dedup", "disabled": True}
    pipeline.begin_stage(ref, run_dir, "dedup")
    names = pipeline.list_input_shards(ref, run_dir, "dedup")
    map_over_shards("signatures", names, lambda n: signatures_task.submit(ref, run_dir, n))
    clusters = cluster_task(ref, run_dir)
    summary = map_over_shards("dedup", names, lambda n: dedup_filter_task.submit(ref, run_dir, n))
    return {**summary, "clusters": clusters}


if __name__ == "__main__":
    stage_cli(dedup_flow, __doc__)
