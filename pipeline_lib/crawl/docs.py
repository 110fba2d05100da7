"""Cleaned-document ingest: C4 / FineWeb / RefinedWeb style files into document shards.

Reads ``.parquet`` (streamed by row group), ``.jsonl``/``.json`` and their ``.gz`` forms, from
local paths, http(s) or ``s3://``. Output rows are ``id, url, text, fetched_at, source="docs"``,
the shape every stage from ``urlfilter`` onwards accepts, so a run can start past extraction.
A row without usable text, or a line that is not JSON, is a rejected row with a reason.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_lib.crawl.ingest import jobs_for, run_jobs
from pipeline_lib.crawl.warc import parse_warc_date
from pipeline_lib.schema import PAGE_REJECT_SCHEMA, TIMESTAMP, doc_id

DOC_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("text", pa.string()),
                        ("fetched_at", TIMESTAMP), ("source", pa.string())])
DATE_COLUMNS = ("fetched_at", "date", "timestamp", "crawl_date")
BATCH_ROWS = 4096


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_warc_date(str(value))


class _DocReader:
    def __init__(self, text_column: str, url_column: str, storage_options: dict | None = None):
        self.text_column, self.url_column = text_column, url_column
        self.storage_options = storage_options or {}

    def _row(self, src: str, index: int, record: dict[str, Any]) -> tuple[str, dict]:
        url = record.get(self.url_column)
        url = url if isinstance(url, str) else ("" if url is None else str(url))
        text = record.get(self.text_column)
        fetched_at = next((_as_datetime(record[c]) for c in DATE_COLUMNS if record.get(c) is not None), None)
        row_id = doc_id("docs", src, str(index))
        if not isinstance(text, str) or not text.strip():
            reason = "missing_text" if text is None or isinstance(text, str) else "text_not_string"
            return "rejected", {"id": row_id, "url": url or f"{src}#row={index}", "status": None, "depth": None,
                                "fetched_at": fetched_at, "source": "docs", "reject_reason": reason,
                                "detail": f"column {self.text_column!r}"}
        return "kept", {"id": row_id, "url": url, "text": text, "fetched_at": fetched_at, "source": "docs"}

    def _reject(self, src: str, reason: str, detail: str, index: int = -1) -> tuple[str, dict]:
        url = src if index < 0 else f"{src}#row={index}"
        return "rejected", {"id": doc_id("docs", src, str(index)), "url": url, "status": None, "depth": None,
                            "fetched_at": None, "source": "docs", "reject_reason": reason, "detail": detail[:500]}

    def __call__(self, src: str, counters: Counter) -> Iterator[tuple[str, dict]]:
        name = src.split("?", 1)[0].lower()
        try:
            handle = fsspec.open(src, "rb", compression="infer", **self.storage_options)
            f = handle.open()
        except Exception as e:
            yield self._reject(src, "docs_unreadable", f"{type(e).__name__}: {e}")
            return
        with f:
            if name.endswith(".parquet"):
                yield from self._parquet(src, f, counters)
            elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")):
                yield from self._jsonl(src, f, counters)
            else:
                yield self._reject(src, "docs_unknown_format", "expected .parquet, .jsonl or .jsonl.gz")

    def _parquet(self, src: str, f, counters: Counter) -> Iterator[tuple[str, dict]]:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:
            yield self._reject(src, "docs_unreadable", f"{type(e).__name__}: {e}")
            return
        names = set(pf.schema_arrow.names)
        if self.text_column not in names:
            yield self._reject(src, "docs_no_text_column", f"no column {self.text_column!r}; has {sorted(names)[:20]}")
            return
        columns = [c for c in (self.text_column, self.url_column, *DATE_COLUMNS) if c in names]
        index = 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                for record in batch.to_pylist():
                    counters["docs.rows_read"] += 1
                    yield self._row(src, index, record)
                    index += 1
        except Exception as e:  # a corrupt row group: what was read stays, the rest is counted lost
            yield self._reject(src, "docs_corrupt", f"after row {index}: {type(e).__name__}: {e}", index)

    def _jsonl(self, src: str, f, counters: Counter) -> Iterator[tuple[str, dict]]:
        index = 0
        try:
            for line in f:
                if not line.strip():
                    continue
                counters["docs.rows_read"] += 1
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    yield self._reject(src, "bad_json", str(e), index)
                else:
                    if isinstance(record, dict):
                        yield self._row(src, index, record)
                    else:
                        yield self._reject(src, "bad_json", "line is not a JSON object", index)
                index += 1
        except (OSError, EOFError) as e:  # truncated gzip: keep what was read
            yield self._reject(src, "docs_corrupt", f"after row {index}: {type(e).__name__}: {e}", index)


def ingest_docs(paths: list[str], fs, out_dir: str, text_column: str = "text", url_column: str = "url",
                records_per_shard: int = 1000, storage_options: dict | None = None, workers: int = 1) -> dict[str, Any]:
    # The manifest names the stage these documents stand in for (the folder, e.g. "02_extract").
    stage = out_dir.rstrip("/").rsplit("/", 1)[-1]
    jobs = jobs_for("docs", list(paths), out_dir, records_per_shard, storage_options, 0, stage, text_column, url_column)
    summary = run_jobs(jobs, workers, fs)
    summary["docs"] = summary.pop("kept")
    return summary
