"""Getting pages in: a polite, hardened crawler, WARC ingest and cleaned-document ingest.

The three entry points write shards in the standard layout (``part-NNNNN.parquet`` + manifest,
``_rejected/`` for failures) and are idempotent: a rerun skips what is already complete.
"""

from __future__ import annotations

from typing import Callable

from pipeline_lib.config import PipelineConfig


def run_crawl(cfg: PipelineConfig, fs, out_dir: str, progress: Callable[[dict], None] | None = None) -> dict:
    """Crawl ``cfg.crawl.seeds`` into page shards under ``out_dir``; resumable, skips when done."""
    from pipeline_lib.crawl.crawler import run_crawl as _run

    return _run(cfg, fs, out_dir, progress)


def ingest_warc(paths: list[str], fs, out_dir: str, records_per_shard: int = 1000,
                storage_options: dict | None = None, first_shard: int = 0, workers: int = 1) -> dict:
    """WARC/WARC.gz files, URLs or ``warc.paths.gz`` listings -> page shards (source=warc).

    ``first_shard``: the number of the first shard written (beside a crawl in the same folder:
    ``ingest.WARC_FIRST_SHARD``). ``workers`` > 1: that many processes, one file each at a time.
    """
    from pipeline_lib.crawl.warc import ingest_warc as _ingest

    return _ingest(paths, fs, out_dir, records_per_shard, storage_options, first_shard, workers)


def ingest_docs(paths: list[str], fs, out_dir: str, text_column: str = "text", url_column: str = "url",
                records_per_shard: int = 1000, storage_options: dict | None = None, workers: int = 1) -> dict:
    """Cleaned-document files (.parquet, .jsonl, .jsonl.gz) -> document shards (source=docs)."""
    from pipeline_lib.crawl.docs import ingest_docs as _ingest

    return _ingest(paths, fs, out_dir, text_column, url_column, records_per_shard, storage_options, workers)


__all__ = ["run_crawl", "ingest_warc", "ingest_docs"]
