"""Test helper: a whole stage folder as one table, read through the verified shard reader."""

from __future__ import annotations

import pyarrow as pa

from pipeline_lib import shards


def read_stage(fs, stage_dir: str, which: str = "kept") -> pa.Table | None:
    """Every complete shard's ``which`` file (kept / rejected) concatenated; None when no shard has one."""
    tables = []
    for name in shards.list_shards(fs, stage_dir):
        manifest = shards.load_manifest(fs, stage_dir, name)
        if which in manifest["files"]:
            tables.append(shards.read_verified(fs, stage_dir, name, which, manifest=manifest))
    return pa.concat_tables(tables) if tables else None
