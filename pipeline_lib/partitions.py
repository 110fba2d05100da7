"""Partitions: which keys a backfill covers, and whether a partition's run is already complete.

A partition is a date (``2026-11-27``) or any crawl id; its run dir is
``<data_root>/<name>/<partition>``, so asking "is this partition done?" is reading manifests there.
Plain Python (no Prefect): the backfill command decides what to submit from these answers.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pipeline_lib import pipeline, shards
from pipeline_lib.config import PipelineConfig
from pipeline_lib.schema import TRAIN_DONE_FILE

MAX_PARTITIONS = 3660  # ten years of days: a typo in --from should not create a million flow runs
_PARTITION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}")  # the same rule as run.partition


class PartitionError(ValueError):
    """A partition range or list that cannot be turned into partition keys."""


def parse_date(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise PartitionError(f"{flag}: {text!r} is not a date (YYYY-MM-DD)") from None


def date_range(start: str, end: str) -> list[str]:
    """Every day from ``start`` to ``end``, both included, as ISO dates."""
    first, last = parse_date(start, "--from"), parse_date(end, "--to")
    if last < first:
        raise PartitionError(f"--to {last} is before --from {first}")
    days = (last - first).days + 1
    if days > MAX_PARTITIONS:
        raise PartitionError(f"{days} partitions from {first} to {last}; at most {MAX_PARTITIONS} per backfill")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def parse_list(text: str) -> list[str]:
    """``a,b,c`` -> ["a", "b", "c"]: stripped, empty items dropped, duplicates removed, order kept."""
    keys = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not keys:
        raise PartitionError("--partitions: no partition given")
    bad = [k for k in keys if not _PARTITION_RE.fullmatch(k)]
    if bad:
        raise PartitionError(f"--partitions: invalid partition key(s) {', '.join(map(repr, bad))} "
                             "(1-128 chars of letters, digits, '.', '_', '=', '-')")
    if len(keys) > MAX_PARTITIONS:
        raise PartitionError(f"{len(keys)} partitions; at most {MAX_PARTITIONS} per backfill")
    return keys


def select(start: str | None = None, end: str | None = None, listed: str | None = None) -> list[str]:
    """The partitions of a backfill: either a date range or an explicit list, never both."""
    if listed is not None:
        if start or end:
            raise PartitionError("give either --partitions or --from/--to, not both")
        return parse_list(listed)
    if not (start and end):
        raise PartitionError("give --from and --to (dates), or --partitions a,b,c")
    return date_range(start, end)


def for_partition(cfg: PipelineConfig, partition: str) -> PipelineConfig:
    """The same config, keyed to another partition (so its run dir is that partition's)."""
    run = cfg.run.model_copy(update={"partition": partition})
    return cfg.model_copy(update={"run": run})  # base_dir is copied too


@dataclass(frozen=True)
class Completeness:
    partition: str
    run_dir: str
    complete: bool
    missing: tuple[str, ...]  # what is not done yet, e.g. "07_tokens: 2 of 5 shards", "08_train: no done.json"

    @property
    def reason(self) -> str:
        return "complete" if self.complete else "; ".join(self.missing)


def _made_from_other_inputs(manifests, in_dir: str, out_dir: str, names: list[str]) -> int:
    """How many output shards record an input checksum that is not their input shard's now (the
    input was redone after them: a source file fixed and read again, a stage rerun with new code)."""
    ins, outs = manifests(in_dir, names), manifests(out_dir, names)
    stale = 0
    for name in names:
        recorded = (outs.get(name) or {}).get("inputs") or []
        current = ins.get(name)
        if recorded and current and recorded[0].get("sha256") != current["files"]["kept"]["sha256"]:
            stale += 1
    return stale


def check(cfg: PipelineConfig, partition: str) -> Completeness:
    """Is this partition's run finished? Every WARC or document input file read to its end, token
    shards for every input shard, and training done.

    Every per-shard stage that runs is checked against its input, down the chain: a shard for each
    input shard, made from that input shard as it is now (the checksum its manifest records), and
    no shard left without its manifest. (Checking only the tokens stage missed a shard dropped
    upstream, e.g. by two runs of the partition at once.) Training writes ``done.json`` last.
    """
    pcfg = for_partition(cfg, partition)
    run_dir = pcfg.run_dir
    fs = pipeline.fs_for(pcfg, run_dir)
    missing: list[str] = []
    listed: dict[str, set[str]] = {}  # each stage is listed once, as an output and as the next one's input
    loaded: dict[str, dict[str, dict | None]] = {}  # and its manifests read once

    def complete(d: str) -> set[str]:
        if d not in listed:
            listed[d] = set(shards.list_shards(fs, d))
        return listed[d]

    def manifests(d: str, names: list[str]) -> dict[str, dict | None]:
        have = loaded.setdefault(d, {})
        have.update(shards.load_manifests(fs, d, [n for n in names if n not in have]))
        return have

    source = pipeline.source_dir(pcfg, run_dir)
    if not complete(source):
        missing.append(f"{source.rstrip('/').rsplit('/', 1)[-1]}: no shards")
    for key in pipeline.ORDER[1:-1]:  # urlfilter .. tokens
        out = pipeline.stage_dir(run_dir, key)
        if out == source or not pipeline.enabled(pcfg, key):
            continue
        inputs = complete(pipeline.input_dir(pcfg, run_dir, key))
        done = complete(out)
        stage = out.rstrip("/").rsplit("/", 1)[-1]
        if not inputs <= done:
            missing.append(f"{stage}: {len(inputs & done)} of {len(inputs)} shards")
        elif set(shards.list_data_names(fs, out)) - done:
            missing.append(f"{stage}: shards without a manifest (being written, or cut short)")
        else:
            stale = _made_from_other_inputs(manifests, pipeline.input_dir(pcfg, run_dir, key), out, sorted(inputs))
            if stale:
                missing.append(f"{stage}: {stale} of {len(inputs)} shards made from an earlier version of their "
                               "input (a run redoes them)")
    if pcfg.source.kind != "crawl":  # WARC or document files: each one read to its end
        from pipeline_lib.crawl.ingest import unfinished_inputs

        source = pipeline.source_dir(pcfg, run_dir)
        left = unfinished_inputs(fs, source)
        if left:
            missing.append(f"{source.rstrip('/').rsplit('/', 1)[-1]}: {len(left)} input files not read to the end "
                           f"(failed or interrupted), e.g. {left[0]}")
    if pcfg.train.enabled and not shards.exists(fs, shards.join(pipeline.stage_dir(run_dir, "train"), TRAIN_DONE_FILE)):
        missing.append(f"08_train: no {TRAIN_DONE_FILE}")
    return Completeness(partition, run_dir, not missing, tuple(missing))
