"""Idempotent file-to-shards ingest shared by WARC and cleaned-document ingest.

Every input file owns a block of shard numbers: file i writes ``first_shard + i * FILE_SHARD_STRIDE``
onwards, so files can be ingested in parallel (one task per file) and each file's shard names are
known before any other file is read. ``prepare`` runs once before the jobs: it checks the folder's
``_ingest_state/layout.json`` against this run (numbering, records per shard, reader options, the
input list, to which new files may only be appended) and records it, before any marker exists.

When a file is complete a marker ``_ingest_state/<kind>-NNNNN.json`` records its shard range, counts
and the options it was read with, so a rerun skips it without opening it. A file that ended with a
file-level failure (missing, truncated, no text column, unknown format) gets no marker: a rerun
reads it again. A file read again (interrupted, or failed before) keeps an existing shard only if it
holds exactly the rows this read puts there, rewrites any other, and removes shards of that file
past its new last one.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pyarrow as pa

from pipeline_lib import shards
from pipeline_lib.stage import StageResult, write_result

STAGE = "00_crawl"
STATE_DIR = "_ingest_state"
# With source.kind crawl+warc both write 00_crawl: the crawl numbers its shards from 0, WARC
# ingest from here, so neither source's names (nor its resume state) collide with the other's.
WARC_FIRST_SHARD = 500_000
# Shard numbers reserved per input file (at 1,000 records a shard, 10 million records: a Common
# Crawl WARC file holds ~40,000 responses). A file that needs more fails with a clear error.
FILE_SHARD_STRIDE = 10_000

# A reader turns one input path into (kind, row) pairs, kind "kept" or "rejected", and fills counters.
Reader = Callable[[str, Counter], Iterator[tuple[str, dict]]]


def _marker_path(out_dir: str, kind: str, index: int) -> str:
    return shards.join(out_dir, STATE_DIR, f"{kind}-{index:05d}.json")


# Reasons a reader gives when it could not read a file to its end: the file is not marked done, so
# the next run reads it again (a reader that adds such a reason adds it here).
FILE_FAILURES = frozenset({"warc_unreadable", "warc_unsupported_compression", "warc_truncated", "docs_unreadable",
                           "docs_corrupt", "docs_no_text_column", "docs_unknown_format", "docs_too_large"})


def _layout_path(out_dir: str) -> str:
    return shards.join(out_dir, STATE_DIR, "layout.json")


def _reader_options(job: "IngestJob") -> dict[str, str]:
    """The reader options a file's rows depend on (none for WARC)."""
    return {"text_column": job.text_column, "url_column": job.url_column} if job.kind == "docs" else {}


def prepare(jobs: list["IngestJob"], fs=None, write: bool = True) -> None:
    """Check the jobs against the folder's ingest state and record them; call once before any job runs.
    ``write=False`` checks only (``crawl2model run`` refuses a contradicting folder before Prefect starts).

    Refuses (ValueError) a folder ingested with another shard numbering, another records per shard
    or other reader options, and an input list that is not the recorded one or the recorded one
    with files appended: a file's shard block and marker are found by its position in the list, so
    any other change would ingest documents twice or lose them. A layout file without some of these
    fields (an earlier version of this one) is accepted and the missing fields are filled in.

    crawl2model before per-file shard blocks numbered file i's shards after file i-1's and wrote no
    layout file: resuming such a folder here would write a half-read file's shards a second time
    under new names. The layout is written before any marker, so a folder with markers and no
    layout is old.
    """
    if not jobs:
        return
    jobs = sorted(jobs, key=lambda j: j.index)
    job, out_dir = jobs[0], jobs[0].out_dir
    fs = fs if fs is not None else shards.filesystem(out_dir, job.storage_options)
    seen: dict[str, str] = {}
    for j in jobs:  # one local file spelled two ways (docs.jsonl, ./docs.jsonl, /abs/docs.jsonl) is one file
        key = j.src if "://" in j.src else os.path.realpath(j.src)
        if key in seen:
            same = j.src if seen[key] == j.src else f"{seen[key]} (as {j.src})"
            raise ValueError(f"{out_dir}: {same} is listed more than once; its documents would be ingested twice")
        seen[key] = j.src
    want = {"file_shard_stride": FILE_SHARD_STRIDE, "kind": job.kind, "first_shard": job.first_shard,
            "records_per_shard": job.records_per_shard, "reader": _reader_options(job),
            "inputs": [j.src for j in jobs]}
    path = _layout_path(out_dir)
    if not shards.exists(fs, path):
        state = fs._strip_protocol(shards.join(out_dir, STATE_DIR))
        # Finished-file markers only: a temp file left by a write this process was killed in is not one.
        if fs.exists(state) and any(re.fullmatch(r"[a-z]+-\d{5,}\.json", p.rsplit("/", 1)[-1])
                                    for p in fs.ls(state, detail=False)):
            raise ValueError(f"{out_dir} was ingested by an older crawl2model that numbered shards across files; "
                             "finish it with the version that started it, or ingest into a new folder")
        if write:
            shards.write_bytes_atomic(fs, path, json.dumps(want, sort_keys=True).encode())
        return
    found = json.loads(shards.read_bytes(fs, path))
    if found.get("file_shard_stride") != FILE_SHARD_STRIDE:
        raise ValueError(f"{out_dir}: ingest state numbered with file_shard_stride "
                         f"{found.get('file_shard_stride')}, this crawl2model uses {FILE_SHARD_STRIDE}; "
                         "ingest into a new folder")
    old_inputs = found.get("inputs") or []
    # Reader options decide every row; while no file has been read to its end (a wrong --text-column
    # fails each file as a whole), they may still change: nothing was kept under the old ones.
    nothing_finished = not any(shards.exists(fs, _marker_path(out_dir, job.kind, i)) for i in range(len(old_inputs)))
    for key in ("kind", "first_shard", "records_per_shard", "reader"):
        if key == "reader" and nothing_finished:
            continue
        if key in found and found[key] != want[key]:
            raise ValueError(f"{out_dir} was ingested with {key} {found[key]!r}, this run asks for {want[key]!r}; "
                             f"rerun with {found[key]!r} or ingest into a new run dir")
    old = found.get("inputs")
    # A file never finished (no marker: it failed, e.g. a mistyped URL) may be replaced in place:
    # its shards name their input file, so the new file's read rewrites them.
    replaceable = {i for i, (a, b) in enumerate(zip(old or [], want["inputs"]))
                   if not same_input(a, b) and not shards.exists(fs, _marker_path(out_dir, job.kind, i))}
    if old is not None and (len(want["inputs"]) < len(old) or not all(
            same_input(a, b) for i, (a, b) in enumerate(zip(old, want["inputs"])) if i not in replaceable)):
        at = next((i for i, (a, b) in enumerate(zip(old, want["inputs"]))
                   if not same_input(a, b) and i not in replaceable), None)
        what = (f"{len(old)} files were ingested, this run lists {len(want['inputs'])}" if at is None else
                f"file {at} was {old[at]}, this run lists {want['inputs'][at]}")
        raise ValueError(f"{out_dir}: the input files differ from what this run dir was ingested from ({what}); "
                         "new files may only be appended at the end, and only a file that never finished "
                         "replaced. Use a new run dir")
    if found != want and write:  # fields an earlier layout file lacked, or appended files
        shards.write_bytes_atomic(fs, path, json.dumps(want, sort_keys=True).encode())


def unfinished_inputs(fs, out_dir: str) -> list[str]:
    """The input files the folder's layout names that have no finished-file marker (failed, or not
    read yet); empty when the folder has no ingest state."""
    layout = shards.read_json_or_none(fs, _layout_path(out_dir)) or {}
    kind = layout.get("kind")
    return [src for i, src in enumerate(layout.get("inputs") or [])
            if kind and not shards.exists(fs, _marker_path(out_dir, kind, i))]


def _holds(manifest: dict, kept: pa.Table, rejected: pa.Table) -> bool:
    """Whether an existing shard holds exactly these rows: the same row counts, then the same bytes."""
    files = manifest.get("files", {})
    tables = {"kept": kept, "rejected": rejected}
    if any((files[w]["rows"] if w in files else 0) != t.num_rows for w, t in tables.items()):
        return False
    return all(shards.sha256_bytes(shards.table_to_parquet_bytes(t)) == files[w]["sha256"]
               for w, t in tables.items() if w in files)


def _write_shard(fs, out_dir: str, stage: str, index: int, kept: list[dict], rejected: list[dict],
                 schemas: tuple[pa.Schema, pa.Schema], src: str, chunk: int, started: float, kind: str) -> bool:
    name = shards.shard_name(index)
    kt = _table(kept, schemas[0])
    rt = _table(rejected, schemas[1])
    existing = shards.load_manifest(fs, out_dir, name)
    if existing and same_input(existing.get("input_file") or "", src) and existing.get("input_chunk") == chunk and \
            _holds(existing, kt, rt):
        return False  # written by an earlier, interrupted run
    write_result(fs, out_dir, name, stage, kt.num_rows + rt.num_rows, StageResult(kt, rt), kind, [],
                 time.perf_counter() - started, extra={"source": kind, "input_file": src, "input_chunk": chunk})
    return True


def _remove_stale_shards(fs, out_dir: str, first: int, num_shards: int) -> int:
    """Remove the shards of a file's block numbered past its last chunk, left by an earlier read of
    it that gave more chunks. Highest first, manifest first, so a kill midway leaves no gap."""
    stale = []
    for index in range(first + num_shards, first + FILE_SHARD_STRIDE):
        name = shards.shard_name(index)
        if not (shards.exists(fs, shards.manifest_path(out_dir, name)) or
                shards.exists(fs, shards.data_path(out_dir, name))):
            break
        stale.append(name)
    for name in reversed(stale):
        shards.remove_shard(fs, out_dir, name)
    return len(stale)


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows to a table, column by column. A string column may hold UTF-8 ``bytes`` (WARC pages are
    kept as their own bytes): those become a binary array cast to string, which validates the
    UTF-8 in one pass instead of converting value by value (``from_pylist`` took ~10% of ingest)."""
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_string(field.type) and any(isinstance(v, bytes) for v in values):
            values = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
            columns.append(pa.array(values, type=pa.binary()).cast(pa.string()))
        else:
            columns.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass(frozen=True)
class IngestJob:
    """One input file to ingest: everything a worker process needs (picklable)."""

    kind: str  # "warc" or "docs"
    index: int  # position in the expanded input list: decides the file's shard numbers
    src: str
    out_dir: str
    records_per_shard: int = 1000
    storage_options: dict | None = None
    first_shard: int = 0
    stage: str = STAGE
    text_column: str = "text"
    url_column: str = "url"


def _reader_and_schemas(job: IngestJob) -> tuple[Reader, tuple[pa.Schema, pa.Schema]]:
    from pipeline_lib.schema import PAGE_REJECT_SCHEMA, PAGE_SCHEMA

    if job.kind == "warc":
        from pipeline_lib.crawl.warc import _read_warc

        return _read_warc(job.storage_options), (PAGE_SCHEMA, PAGE_REJECT_SCHEMA)
    if job.kind == "docs":
        from pipeline_lib.crawl.docs import DOC_SCHEMA, _DocReader

        return _DocReader(job.text_column, job.url_column, job.storage_options), (DOC_SCHEMA, PAGE_REJECT_SCHEMA)
    raise ValueError(f"unknown ingest kind {job.kind!r}")


def absolute_input(src: str) -> str:
    """A local input as an absolute path (URLs as given): ``in/x.warc.gz``, ``./in/x.warc.gz`` and
    ``/abs/in/x.warc.gz`` are one file, with one set of document ids. Symlinks stay as written (the
    path recorded is the one the user gave; a config's relative paths are resolved through them,
    so a symlinked spelling gives other ids), and same_input sees through them."""
    return src if "://" in src else os.path.abspath(src)


def same_input(recorded: str, src: str) -> bool:
    """Whether a recorded input is this run's ``src``: the same file however spelled (relative, as
    a layout or marker written before inputs were made absolute may hold, or through a symlink)."""
    return recorded == src or ("://" not in recorded and "://" not in src
                               and os.path.realpath(recorded) == os.path.realpath(src))


def jobs_for(kind: str, inputs: list[str], out_dir: str, records_per_shard: int = 1000,
             storage_options: dict | None = None, first_shard: int = 0, stage: str = STAGE, text_column: str = "text",
             url_column: str = "url") -> list[IngestJob]:
    """One job per input file, numbered by position."""
    return [IngestJob(kind, i, absolute_input(src), out_dir, records_per_shard, storage_options, first_shard, stage,
                      text_column, url_column) for i, src in enumerate(inputs)]


def run_jobs(jobs: list[IngestJob], workers: int = 1, fs=None) -> dict[str, Any]:
    """Every job, here one after another or on ``workers`` spawned processes; one summary."""
    prepare(jobs, fs)
    if workers <= 1 or len(jobs) <= 1:
        return summarize([run_job(job, fs) for job in jobs])
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return summarize(list(pool.map(run_job, jobs)))


def _check_marker(job: IngestJob, marker: dict, marker_path: str, first: int) -> None:
    """Refuse a file's marker that does not describe this job (another file at this
    position, another shard block, other options): reusing its shards would lose or duplicate rows."""
    if not same_input(marker.get("input_file") or "", job.src):
        raise ValueError(f"{marker_path} records {marker.get('input_file')} at input position {job.index}, this "
                         f"run has {job.src} there: the inputs differ from what {job.out_dir} was ingested from; "
                         "use a new run dir")
    if marker.get("first_shard") != first:  # e.g. source.kind changed between warc and crawl+warc
        raise ValueError(f"{job.out_dir} holds {job.src} as shards from {marker.get('first_shard')}; this run would "
                         f"start it at {first}. Ingest into a new folder.")
    # Markers written before these fields existed say nothing about them: accepted.
    for key, value in (("records_per_shard", job.records_per_shard), ("reader", _reader_options(job))):
        if key in marker and marker[key] != value:
            raise ValueError(f"{job.out_dir} holds {job.src} ingested with {key} {marker[key]!r}, this run asks "
                             f"for {value!r}; rerun with {marker[key]!r} or ingest into a new run dir")


def run_job(job: IngestJob, fs=None) -> dict[str, Any]:
    """Ingest one input file into its block of shards, or skip it when its marker says it is done.

    Runs in whichever process it is given to, after ``prepare`` ran on the whole job list; returns
    the file's marker plus what this call did (``failed``: the file-level failure reason, if any).
    ``fs``: the output filesystem when the caller has one; a worker process builds its own.
    """
    src, out_dir, kind, records_per_shard = job.src, job.out_dir, job.kind, job.records_per_shard
    fs = fs if fs is not None else shards.filesystem(out_dir, job.storage_options)
    first = job.first_shard + job.index * FILE_SHARD_STRIDE
    marker_path = _marker_path(out_dir, kind, job.index)
    marker = json.loads(shards.read_bytes(fs, marker_path)) if shards.exists(fs, marker_path) else None
    if marker is not None:
        _check_marker(job, marker, marker_path, first)
        # An earlier version marked a file that failed as done too: that file is read again.
        if not FILE_FAILURES & set(marker.get("reasons", {})):
            return {**marker, "skipped": True, "shards_written": 0, "failed": None}
    if not shards.exists(fs, _layout_path(out_dir)):
        raise ValueError(f"{out_dir}: no {STATE_DIR}/layout.json; call ingest.prepare(jobs) before running the jobs")
    reader, schemas = _reader_and_schemas(job)
    file_counters: Counter[str] = Counter()
    file_reasons: Counter[str] = Counter()
    kept: list[dict] = []
    rejected: list[dict] = []
    n_kept = n_rejected = chunk = written = 0
    failure: str | None = None  # the first whole-file failure, as the summary names it
    started = time.perf_counter()

    def flush() -> None:
        nonlocal kept, rejected, chunk, started, written
        if chunk >= FILE_SHARD_STRIDE:
            raise ValueError(f"{src} needs more than {FILE_SHARD_STRIDE} shards of {records_per_shard} records; "
                             "raise source.records_per_shard (or --records-per-shard)")
        written += _write_shard(fs, out_dir, job.stage, first + chunk, kept, rejected, schemas, src, chunk, started, kind)
        kept, rejected, chunk, started = [], [], chunk + 1, time.perf_counter()

    for which, row in reader(src, file_counters):
        if which == "kept":
            kept.append(row)
            n_kept += 1
        else:
            rejected.append(row)
            n_rejected += 1
            file_reasons[row["reject_reason"]] += 1
            if row["reject_reason"] in FILE_FAILURES and failure is None:
                failure = f"{row['reject_reason']}: {row.get('detail') or ''}".rstrip(": ")
        if len(kept) + len(rejected) >= records_per_shard:
            flush()
    failed = min(FILE_FAILURES & set(file_reasons), default=None)
    if kept or rejected:
        existing = shards.load_manifest(fs, out_dir, shards.shard_name(first + chunk)) if failed else None
        if existing and same_input(existing.get("input_file") or "", src) and existing.get("input_chunk") == chunk and \
                existing.get("counters", {}).get("rows_in", 0) > len(kept) + len(rejected):
            chunk += 1  # a read cut short does not replace a fuller read of this chunk by a shorter one
        else:
            flush()
    if failed is None:  # a read cut short says nothing about how many shards the file really has
        _remove_stale_shards(fs, out_dir, first, chunk)
    marker = {"input_file": src, "first_shard": first, "num_shards": chunk, "kept": n_kept,
              "rejected": n_rejected, "reasons": dict(file_reasons), "counters": dict(file_counters),
              "records_per_shard": records_per_shard, "reader": _reader_options(job)}
    if failed is None:  # done: a rerun skips it. A failed file is read again by the next run.
        shards.write_bytes_atomic(fs, marker_path, json.dumps(marker, sort_keys=True).encode())
    return {**marker, "skipped": False, "shards_written": written, "failed": failed,
            "failure": failure if failed else None}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from the per-file results of ``run_job`` (in input order)."""
    reasons: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    for r in results:
        reasons.update(r["reasons"])
        counters.update(r["counters"])
    skipped = sum(bool(r["skipped"]) for r in results)
    failed = sum(bool(r.get("failed")) for r in results)
    failures = {r["input_file"]: r.get("failure") or r["failed"] for r in results if r.get("failed")}
    return {"files": len(results), "files_skipped": skipped, "files_failed": failed, "failures": failures,
            "shards": sum(r["num_shards"] for r in results),
            "shards_written": sum(r["shards_written"] for r in results), "kept": sum(r["kept"] for r in results),
            "rejected": sum(r["rejected"] for r in results), "reasons": dict(sorted(reasons.items())),
            "counters": dict(sorted(counters.items())), "skipped": bool(results) and skipped == len(results)}
