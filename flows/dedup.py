"""Dedup, the one global stage: MinHash signatures per shard, one clustering, a filter per shard.

`python flows/dedup.py --config configs/small.yaml`
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from prefect import flow  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.common import (DEFAULT_CONFIG, documented, map_over_shards, resolve, run_name, stage_cli,  # noqa: E402
                          stage_inputs)
from tasks.shard_tasks import cluster_task, dedup_filter_task, signatures_task  # noqa: E402


@flow(name="dedup", flow_run_name=run_name("dedup"), task_runner=ThreadPoolTaskRunner(max_workers=8))
@documented
def dedup_flow(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
               run_dir: str | None = None) -> dict:
    """Map signatures, reduce to clusters (one task, bounded memory), map the filter."""
    _, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
    names = stage_inputs(ref, run_dir, "dedup")
    if names is None:
        return {"stage": "dedup", "disabled": True}
    map_over_shards("signatures", names, lambda n: signatures_task.submit(ref, run_dir, n))
    clusters = cluster_task(ref, run_dir)
    summary = map_over_shards("dedup", names, lambda n: dedup_filter_task.submit(ref, run_dir, n))
    return {**summary, "clusters": clusters}


if __name__ == "__main__":
    stage_cli(dedup_flow, __doc__)
