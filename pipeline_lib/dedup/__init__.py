"""Exact and MinHash near-duplicate removal across a whole run (and, optionally, earlier runs).

Three steps, each idempotent and each a Prefect task in ``flows/dedup.py``:
``run_signatures_shard`` (map), ``run_clustering`` (reduce), ``run_filter_shard`` (map).
"""

from pipeline_lib.dedup.steps import run_clustering, run_filter_shard, run_signatures_shard

__all__ = ["run_signatures_shard", "run_clustering", "run_filter_shard"]
