"""The stage contract and the generic runner that owns all shard I/O.

A stage is a pure function from one input table to a ``StageResult``. The runner reads the input
shard (verifying its manifest), calls the stage, checks ``rows_in == kept + rejected``, writes the
kept and rejected files atomically and the manifest last. A shard whose manifest already matches
(same config hash, same input checksums) is skipped, so a rerun redoes nothing and touches nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib import shards
from pipeline_lib.config import PipelineConfig
from pipeline_lib.schema import REJECT_REASON


class ContractError(RuntimeError):
    """A stage broke the contract (lost or invented rows, rejected rows without reasons)."""


@dataclass(frozen=True)
class StageResult:
    kept: pa.Table
    rejected: pa.Table  # the dropped input rows plus a `reject_reason` column
    counters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def split(cls, table: pa.Table, reasons: Sequence[str | None], counters: dict[str, int] | None = None,
              rejected_extra: dict[str, Sequence[Any]] | None = None) -> "StageResult":
        """Build kept/rejected from a per-row reason list (None = keep).

        ``rejected_extra`` adds columns to the rejected rows only (aligned with all rows; values of
        kept rows are ignored), e.g. the id of the document a duplicate was matched to.
        """
        if len(reasons) != table.num_rows:
            raise ContractError(f"{len(reasons)} reasons for {table.num_rows} rows")
        reason_arr = pa.array(reasons, pa.string())
        keep_mask = pc.is_null(reason_arr)
        kept = table.filter(keep_mask)
        drop_mask = pc.invert(keep_mask)
        rejected = table.filter(drop_mask).append_column(REJECT_REASON, reason_arr.filter(drop_mask))
        for name, values in (rejected_extra or {}).items():
            rejected = rejected.append_column(name, pa.array(values).filter(drop_mask))
        return cls(kept, rejected, dict(counters or {}))

    @classmethod
    def keep_all(cls, table: pa.Table, counters: dict[str, int] | None = None) -> "StageResult":
        empty = table.schema.append(pa.field(REJECT_REASON, pa.string())).empty_table()
        return cls(table, empty, dict(counters or {}))


def put_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Set column ``name`` to ``values``: in place when the table has it (a stage re-run on its own
    output, or text a stage rewrites), else appended. Stages own their columns without duplicating them."""
    if name in table.column_names:
        idx = table.column_names.index(name)
        return table.set_column(idx, table.schema.field(idx).with_type(values.type), values)
    return table.append_column(pa.field(name, values.type), values)


class Stage(ABC):
    """One per-document step. Subclasses set ``name``/``section`` and write ``process``."""

    name: ClassVar[str]  # the stage key, e.g. "extract"
    section: ClassVar[str]  # the config section whose hash identifies this stage's behaviour
    # Bumped when the code changes what the stage outputs for the same config: shards written by an
    # earlier version no longer count as done (version 1 adds nothing, so old shards keep matching).
    version: ClassVar[int] = 1

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg

    @abstractmethod
    def process(self, table: pa.Table) -> StageResult: ...

    @classmethod
    def input_files(cls, cfg: PipelineConfig) -> list[str]:
        """Local files this stage reads besides its shards (block lists, a model): their contents
        are part of its config_hash, so editing one redoes the stage's shards."""
        return []

    def config_hash(self) -> str:
        h = self.cfg.section_hash(self.section)
        files = self.input_files(self.cfg)
        if files:  # none by default: a config without such files keeps the hash it always had
            # Taken once per instance, when build_stage made it (a new instance when a file
            # changes), so the hash describes the lists this instance loaded.
            if getattr(self, "_files_digest", None) is None:
                self._files_digest = "".join(f":{file_digest(f)}" for f in files)
            h = hashlib.sha256((h + self._files_digest).encode()).hexdigest()[:16]
        return h if self.version == 1 else f"{h}.v{self.version}"

    def manifest_extra(self) -> dict[str, Any]:
        """Extra facts recorded in every manifest this stage writes (e.g. the tokenizer's hash)."""
        return {}


# Stage key -> "module:Class"; modules load lazily so a run pays only for what it uses.
STAGE_CLASSES = {
    "urlfilter": "pipeline_lib.urlfilter:UrlFilterStage",
    "extract": "pipeline_lib.extract:ExtractStage",
    "langid": "pipeline_lib.langid:LangIdStage",
    "quality": "pipeline_lib.quality:QualityStage",
    "pii": "pipeline_lib.pii:PiiStage",
    "tokens": "pipeline_lib.tokenization:TokenizeStage",
}


def stage_class(key: str) -> type[Stage]:
    try:
        mod, cls = STAGE_CLASSES[key].split(":")
    except KeyError:
        raise KeyError(f"unknown stage {key!r}; known: {sorted(STAGE_CLASSES)}") from None
    return getattr(importlib.import_module(mod), cls)


def _stat_key(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return path, -1, -1  # missing: the stage's own loading says so
    return path, st.st_size, st.st_mtime_ns


@lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (16 hex digits), read again only when its size or mtime changed."""
    key = _stat_key(path)
    return "missing" if key[1] < 0 else _digest(*key)


@lru_cache(maxsize=16)
def _cached_stage(key: str, cfg_json: str, base_dir: str, files: tuple) -> Stage:
    stage = stage_class(key)(PipelineConfig.from_json(cfg_json, base_dir))
    if files:
        stage.config_hash()  # the files' digest taken now, right after the stage loaded them
    return stage


def build_stage(key: str, cfg: PipelineConfig) -> Stage:
    """A stage instance, cached per process: models (fastText, presidio) load once per worker. A
    list or model file edited since (a long-lived worker, the next run) builds a fresh one."""
    files = tuple(_stat_key(f) for f in stage_class(key).input_files(cfg))
    return _cached_stage(key, cfg.model_dump_json(), cfg.base_dir, files)


def check_result(stage_name: str, rows_in: int, result: StageResult) -> None:
    kept, rejected = result.kept.num_rows, result.rejected.num_rows
    if rows_in != kept + rejected:
        raise ContractError(f"stage {stage_name}: rows_in {rows_in} != kept {kept} + rejected {rejected}")
    if rejected:
        if REJECT_REASON not in result.rejected.column_names:
            raise ContractError(f"stage {stage_name}: rejected rows have no {REJECT_REASON} column")
        if result.rejected.column(REJECT_REASON).null_count:
            raise ContractError(f"stage {stage_name}: rejected rows without a reason")


def reason_counts(rejected: pa.Table) -> dict[str, int]:
    if rejected.num_rows == 0:
        return {}
    counts = Counter(rejected.column(REJECT_REASON).to_pylist())
    return {f"rejected.{k}": v for k, v in counts.items()}


def input_entries(fs, in_dir: str, name: str, manifest: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What an output's manifest records about input shard ``name`` (``manifest``: already loaded)."""
    if manifest is None:
        manifest = shards.load_manifest(fs, in_dir, name)
    if manifest is None:
        raise shards.ShardError(f"{shards.manifest_path(in_dir, name)}: input shard is incomplete")
    kept = manifest["files"]["kept"]
    return [{"stage": manifest["stage"], "shard": name, "sha256": kept["sha256"], "rows": kept["rows"]}]


def is_done(fs, out_dir: str, name: str, config_hash: str, inputs: list[dict[str, Any]]) -> dict | None:
    """The existing manifest if this shard is already complete for exactly these inputs and config,
    and its files still have the sizes the manifest records (one stat each, no read): a truncated
    or missing file is redone by a rerun, where before every rerun failed on it in the next stage."""
    manifest = shards.load_manifest(fs, out_dir, name)
    if manifest and manifest.get("config_hash") == config_hash and manifest.get("inputs") == inputs \
            and _sizes_match(fs, out_dir, manifest):
        return manifest
    return None


def _sizes_match(fs, out_dir: str, manifest: dict[str, Any]) -> bool:
    for entry in manifest["files"].values():
        if "bytes" not in entry:
            continue
        try:
            if fs.size(shards.join(out_dir, entry["path"])) != entry["bytes"]:
                return False
        except (FileNotFoundError, NotADirectoryError):
            return False
    return True


def summary_from_manifest(manifest: dict[str, Any], skipped: bool) -> dict[str, Any]:
    c = manifest["counters"]
    return {"stage": manifest["stage"], "shard": manifest["shard"], "rows_in": c.get("rows_in", 0),
            "kept": c.get("kept", 0), "rejected": c.get("rejected", 0), "skipped": skipped,
            "seconds": manifest["seconds"]}


def write_result(fs, out_dir: str, name: str, stage_name: str, rows_in: int, result: StageResult,
                 config_hash: str, inputs: list[dict[str, Any]], seconds: float,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write kept + rejected files, then the manifest; returns the manifest.

    A redo first deletes the shard's previous manifest: a write that fails half-way then leaves an
    incomplete shard (never listed, redone by the next run), not an old manifest over new files that
    a later run with the old inputs would skip as done. A previous rejected file the new result has
    no rows for is deleted too, so a reader of ``_rejected/`` never counts rows no manifest lists.
    """
    check_result(stage_name, rows_in, result)
    shards.remove_if_exists(fs, shards.manifest_path(out_dir, name))
    files = {"kept": shards.write_table_file(fs, out_dir, f"{name}.parquet", result.kept)}
    if result.rejected.num_rows:
        files["rejected"] = shards.write_table_file(fs, out_dir, f"{shards.REJECTED_DIR}/{name}.parquet", result.rejected)
    else:
        shards.remove_if_exists(fs, shards.rejected_path(out_dir, name))
    counters = {"rows_in": rows_in, "kept": result.kept.num_rows, "rejected": result.rejected.num_rows,
                **reason_counts(result.rejected), **result.counters}
    manifest = shards.build_manifest(stage=stage_name, name=name, files=files, schema=result.kept.schema,
                                     counters=counters, seconds=seconds, config_hash=config_hash,
                                     inputs=inputs, extra=extra)
    shards.write_manifest(fs, out_dir, name, manifest)
    return manifest


def run_shard(stage: Stage, fs, in_dir: str, out_dir: str, name: str, out_stage: str | None = None) -> dict[str, Any]:
    """Run one stage on one shard: skip if done, else read-verify, process, write, manifest last."""
    out_stage = out_stage or out_dir.rstrip("/").rsplit("/", 1)[-1]
    in_manifest = shards.load_manifest(fs, in_dir, name)
    inputs = input_entries(fs, in_dir, name, in_manifest)
    config_hash = stage.config_hash()
    done = is_done(fs, out_dir, name, config_hash, inputs)
    if done:
        return summary_from_manifest(done, skipped=True)
    t0 = time.perf_counter()
    table = shards.read_verified(fs, in_dir, name, manifest=in_manifest)  # the manifest `inputs` recorded
    result = stage.process(table)
    manifest = write_result(fs, out_dir, name, out_stage, table.num_rows, result, config_hash, inputs,
                            time.perf_counter() - t0, extra=stage.manifest_extra())
    return summary_from_manifest(manifest, skipped=False)
