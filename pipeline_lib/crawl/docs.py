"""Cleaned-document ingest: C4 / FineWeb / RefinedWeb style files into document shards.

Reads ``.parquet`` (streamed by row group), ``.jsonl``/``.json`` and their ``.gz`` forms, from
local paths, http(s) or ``s3://``. Output rows are ``id, url, text, fetched_at, source="docs"``,
the shape every stage from ``urlfilter`` onwards accepts, so a run can start past extraction.
A row without usable text, or a line that is not JSON, is a rejected row with a reason.

Damaged input costs only what is damaged: a Parquet row group that cannot be read is one
``docs_row_group_corrupt`` reject that says how many rows it held (counter ``docs.rows_lost``) and
the next row group is read (the file still counts as read; a JSONL file whose last line is
unfinished is ``docs_corrupt``, cut short, and read again by the next run); a date that does not
convert becomes null (counter ``docs.dates_unconverted``; epoch numbers in seconds or milliseconds
are dates); a lone surrogate (JSON ``"\\ud83d"``) or invalid UTF-8 in a text becomes U+FFFD (counter
``docs.invalid_unicode_repaired``). A ``.json`` file that opens with ``[`` is one JSON array of
documents (rejected as ``docs_too_large`` over MAX_JSON_ARRAY_BYTES); one whose first line is not a
whole object may be one pretty-printed document; any other ``.json`` file is read as JSONL (C4 names
its JSONL files ``.json.gz``). Any error while building one row rejects that row (``bad_row``)."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import tempfile
import zlib
from collections import Counter
from contextlib import ExitStack, nullcontext
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_lib import shards
from pipeline_lib.crawl.ingest import jobs_for, run_jobs
from pipeline_lib.crawl.warc import parse_warc_date
from pipeline_lib.schema import PAGE_REJECT_SCHEMA, TIMESTAMP, doc_id

DOC_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("text", pa.string()),
                        ("fetched_at", TIMESTAMP), ("source", pa.string())])
DATE_COLUMNS = ("fetched_at", "date", "timestamp", "crawl_date")
BATCH_ROWS = 4096
# A .json array is parsed whole; a larger one is rejected with advice to convert it to JSONL.
MAX_JSON_ARRAY_BYTES = 256 << 20
_SURROGATES = re.compile("[\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}  # nanoseconds are divided instead
JUDGE_ROWS = 100  # objects read before a missing text column fails the whole file
_STREAM_ERRORS = (OSError, EOFError, zlib.error)  # a truncated or damaged (gzip) stream


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if not value.tzinfo:
            return value.replace(tzinfo=timezone.utc)
        try:
            return value.astimezone(timezone.utc)
        except (OverflowError, ValueError):  # the UTC instant falls outside years 1..9999
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if 1e11 <= abs(seconds) < 1e14:  # epoch milliseconds (JavaScript, Elasticsearch): as seconds, past year 5000
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_warc_date(str(value))


def _valid_unicode(value: str) -> tuple[str, bool]:
    """The string with lone surrogates (which no UTF-8 column can hold) replaced by U+FFFD, and whether
    any were. JSON decodes an escaped surrogate pair to one character, so what is left here is lone."""
    if value.isascii():
        return value, False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value), True
    return value, False


def _timestamp(value: int | None, unit: str) -> datetime | None:
    """One Arrow timestamp (an integer count of its unit since the epoch, UTC whatever the column's
    time zone) as a UTC datetime, nanoseconds cut to microseconds; None where it falls outside what
    datetime holds (years 1..9999)."""
    if value is None:
        return None
    micros = value // 1000 if unit == "ns" else value * _MICROS_PER_UNIT[unit]
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return None


def _column_values(column: pa.Array, counters: Counter) -> list:
    """A Parquet column's values as Python objects, without one bad value failing the whole batch.

    Timestamps are converted from their integers (nanoseconds, years past 9999 and time zones Python
    does not know all fail Arrow's own conversion); invalid UTF-8 in a string column becomes U+FFFD;
    in any other column a value that does not convert becomes None.
    """
    if pa.types.is_timestamp(column.type):
        unit = column.type.unit
        ints = column.cast(pa.int64()).to_pylist()
        values = [_timestamp(v, unit) for v in ints]
        counters["docs.dates_unconverted"] += sum(1 for v, t in zip(ints, values) if v is not None and t is None)
        return values
    try:
        return column.to_pylist()
    except Exception:
        pass
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = []
        for raw in column.cast(pa.large_binary()).to_pylist():
            if raw is None:
                values.append(None)
                continue
            try:
                values.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                counters["docs.invalid_unicode_repaired"] += 1
                values.append(raw.decode("utf-8", "replace"))
        return values
    values = []
    for i in range(len(column)):
        try:
            values.append(column[i].as_py())
        except Exception:
            values.append(None)
            if pa.types.is_temporal(column.type):
                counters["docs.dates_unconverted"] += 1
    return values


def _ends_unfinished(e: Exception) -> bool:
    """Whether a JSON error is the text running out (a string or object left open at the end), as
    in a line cut off by a partial download; a malformed but finished line (a trailing comma) is not."""
    if not isinstance(e, json.JSONDecodeError):
        return False
    return e.msg.startswith("Unterminated string") or e.pos >= len(e.doc.rstrip())


def _complete_json_line(start: bytes) -> bool:
    """Whether the first line of ``start`` (a prefix of the file) parses as JSON on its own."""
    line = start.split(b"\n", 1)[0]
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _read_up_to(data: bytes, f, limit: int, stop_at_newline: bool = False) -> tuple[bytes, Exception | None]:
    """``data`` plus what ``f`` gives, up to ``limit`` bytes (or the first newline), in pieces, so a
    stream error keeps what came before it: (bytes read, the error or None)."""
    parts, size = [data], len(data)
    while size < limit and not (stop_at_newline and b"\n" in parts[-1]):
        try:
            chunk = f.read(min(1 << 16, limit - size))  # small: a failing read loses its piece
        except _STREAM_ERRORS as e:
            return b"".join(parts), e
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), None


def _read_first_line(head: bytes, f) -> tuple[bytes, Exception | None]:
    """``head`` extended to hold the file's first line whole (up to MAX_JSON_ARRAY_BYTES)."""
    if b"\n" in head:
        return head, None
    return _read_up_to(head, f, MAX_JSON_ARRAY_BYTES + 1, stop_at_newline=True)


class _Failing(io.RawIOBase):
    """A stream that raises ``error`` when read: the rest of a file whose reading already failed."""

    def __init__(self, error: Exception):
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise self._error


class _Prefixed(io.RawIOBase):
    """A stream that gives ``prefix`` and then the rest of ``f``: what was read to look at a file's
    first bytes is read again, without seeking (an HTTP stream cannot)."""

    def __init__(self, prefix: bytes, f):
        self._prefix, self._f = prefix, f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n], self._prefix = self._prefix[:n], self._prefix[n:]
            return n
        data = self._f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _DocReader:
    def __init__(self, text_column: str, url_column: str, storage_options: dict | None = None):
        self.text_column, self.url_column = text_column, url_column
        self.storage_options = storage_options or {}

    def _row(self, src: str, index: int, record: dict[str, Any], counters: Counter) -> tuple[str, dict]:
        try:
            return self._build_row(src, index, record, counters)
        except Exception as e:  # a value no rule here foresaw: the row is rejected, the file goes on
            return self._reject(src, "bad_row", f"{type(e).__name__}: {e}", index)

    def _build_row(self, src: str, index: int, record: dict[str, Any], counters: Counter) -> tuple[str, dict]:
        url = record.get(self.url_column)
        url = url if isinstance(url, str) else ("" if url is None else str(url))
        url, url_repaired = _valid_unicode(url)
        text = record.get(self.text_column)
        text_repaired = False
        if isinstance(text, str):
            text, text_repaired = _valid_unicode(text)
        if url_repaired or text_repaired:
            counters["docs.invalid_unicode_repaired"] += 1
        dated = next((c for c in DATE_COLUMNS if record.get(c) is not None), None)
        fetched_at = _as_datetime(record[dated]) if dated else None
        if dated and fetched_at is None:
            counters["docs.dates_unconverted"] += 1  # kept, with a null date
        row_id = doc_id("docs", src, str(index))
        if not isinstance(text, str) or not text.strip():
            reason = "missing_text" if text is None or isinstance(text, str) else "text_not_string"
            url = url or _valid_unicode(f"{src}#row={index}")[0]
            return "rejected", {"id": row_id, "url": url, "status": None, "depth": None,
                                "fetched_at": fetched_at, "source": "docs", "reject_reason": reason,
                                "detail": f"column {self.text_column!r}"}
        if not url:
            counters["docs.rows_without_url"] += 1  # kept: a URL is useful, not required
        return "kept", {"id": row_id, "url": url, "text": text, "fetched_at": fetched_at, "source": "docs"}

    def _reject(self, src: str, reason: str, detail: str, index: int = -1, part: str = "") -> tuple[str, dict]:
        """A rejected row for the file (index -1), row ``index`` or a ``part`` of it (a row group)."""
        url = f"{src}#{part}" if part else src if index < 0 else f"{src}#row={index}"
        return "rejected", {"id": doc_id("docs", src, part or str(index)), "url": _valid_unicode(url)[0],
                            "status": None, "depth": None, "fetched_at": None, "source": "docs",
                            "reject_reason": reason, "detail": _valid_unicode(detail[:500])[0]}

    def __call__(self, src: str, counters: Counter) -> Iterator[tuple[str, dict]]:
        name = src.split("?", 1)[0].lower()
        try:
            raw = fsspec.open(src, "rb", **self.storage_options).open()
        except Exception as e:
            yield self._reject(src, "docs_unreadable", f"{type(e).__name__}: {e}")
            return
        # The standard library's gzip, not fsspec's choice (python-isal's reader once installed): on a
        # file cut short it keeps every row before the damage, where isal's drops up to 128 KiB of them.
        with raw, (gzip.GzipFile(fileobj=raw, mode="rb") if name.endswith(".gz") else nullcontext(raw)) as f:
            if name.endswith(".parquet"):
                yield from self._parquet(src, f, counters)
            elif name.endswith((".json", ".json.gz")):
                yield from self._json(src, f, counters)
            elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
                yield from self._jsonl(src, f, counters)
            else:
                yield self._reject(src, "docs_unknown_format", "expected .parquet, .jsonl, .json or their .gz forms")

    def _parquet(self, src: str, f, counters: Counter) -> Iterator[tuple[str, dict]]:
        with ExitStack() as stack:
            try:
                try:
                    pf = pq.ParquetFile(f)
                except ValueError as e:
                    if "range requests" not in str(e):
                        raise
                    # An http(s) server without Range support (python -m http.server): Parquet reads
                    # its footer first, so the file is streamed once into a local temporary file.
                    spool = stack.enter_context(tempfile.TemporaryFile())
                    with fsspec.open(src, "rb", **{**self.storage_options, "block_size": 0}) as whole:
                        shutil.copyfileobj(whole, spool, 1 << 20)
                    spool.seek(0)
                    pf = pq.ParquetFile(spool)
            except Exception as e:
                yield self._reject(src, "docs_unreadable", f"{type(e).__name__}: {e}")
                return
            yield from self._parquet_rows(src, pf, counters)

    def _parquet_rows(self, src: str, pf: pq.ParquetFile, counters: Counter) -> Iterator[tuple[str, dict]]:
        names = set(pf.schema_arrow.names)
        if self.text_column not in names:
            yield self._reject(src, "docs_no_text_column", f"no column {self.text_column!r}; has {sorted(names)[:20]} "
                                   "(name the text column: --text-column, or source.text_column)")
            return
        columns = [c for c in (self.text_column, self.url_column, *DATE_COLUMNS) if c in names]
        index = 0
        # Row group by row group: one that cannot be read (damaged pages, bad compression) is one
        # reject that counts the rows it held, and reading goes on with the next one. Row positions
        # (and so row ids) stay those of the file, whatever was lost before them.
        for group in range(pf.num_row_groups):
            group_rows = pf.metadata.row_group(group).num_rows
            done = 0
            try:
                for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns):
                    values = [_column_values(column, counters) for column in batch.columns]
                    for record in zip(*values):
                        counters["docs.rows_read"] += 1
                        yield self._row(src, index, dict(zip(batch.schema.names, record)), counters)
                        index += 1
                        done += 1
            except Exception as e:
                lost = max(group_rows - done, 0)
                counters["docs.rows_lost"] += lost
                # Damage inside a file whose footer reads is in the file itself: its rows are lost for
                # good and the file is still read to the end (no file failure, so it is not read
                # again forever). A connection or storage error is no damage: the file failed and
                # the next run reads it again.
                # s3fs raises throttling and 5xx as a builtin OSError with an errno, the botocore
                # error as its cause; damage Arrow finds is an OSError without one.
                cause = e.__cause__ or e.__context__
                transient = (isinstance(e, (ConnectionError, TimeoutError)) or shards.is_storage_error(e)
                             or (cause is not None and shards.is_storage_error(cause))
                             or (isinstance(e, OSError) and e.errno is not None))
                reason = "docs_unreadable" if transient else "docs_row_group_corrupt"
                yield self._reject(src, reason, f"row group {group}: {lost} of {group_rows} rows lost: "
                                   f"{type(e).__name__}: {e}", part=f"row_group={group}")
                index += lost

    def _json(self, src: str, f, counters: Counter) -> Iterator[tuple[str, dict]]:
        """A ``.json`` file: one JSON array of documents when its first non-blank character is ``[``,
        otherwise JSONL. An array is parsed whole, up to MAX_JSON_ARRAY_BYTES."""
        head = b""
        try:
            while True:  # the first non-blank bytes; a blank start is blank lines, which JSONL skips
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                head += chunk
                if head.lstrip():
                    break
                head = b""
        except _STREAM_ERRORS as e:
            yield self._reject(src, "docs_corrupt", f"at the start: {type(e).__name__}: {e}")
            return
        start = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        if start.startswith(b"{"):
            # JSONL unless its first line (read whole, however long) opens an object it does not
            # close: then one pretty-printed document.
            head, failure = _read_first_line(head, f)
            if not _complete_json_line(head.removeprefix(b"\xef\xbb\xbf").lstrip()):
                yield from self._json_object(src, head, _Failing(failure) if failure else f, counters)
                return
            f = _Failing(failure) if failure else f
        if not start.startswith(b"["):
            yield from self._jsonl(src, io.BufferedReader(_Prefixed(head, f)), counters)
            return
        try:
            data = head + f.read(max(MAX_JSON_ARRAY_BYTES + 1 - len(head), 0))
        except _STREAM_ERRORS as e:
            yield self._reject(src, "docs_corrupt", f"JSON array unreadable: {type(e).__name__}: {e}")
            return
        if len(data) > MAX_JSON_ARRAY_BYTES:
            yield self._reject(src, "docs_too_large", f"a JSON array over {MAX_JSON_ARRAY_BYTES} bytes is not "
                               "loaded; convert it to JSONL (one document a line)")
            return
        try:
            records = json.loads(data)
        except (ValueError, RecursionError) as e:  # cut short (a partial download) or not JSON: no row is known
            yield self._reject(src, "docs_corrupt", f"not a complete JSON array: {type(e).__name__}: {e}")
            return
        objects = [r for r in records[:JUDGE_ROWS] if isinstance(r, dict)] if isinstance(records, list) else []
        if objects and not any(self.text_column in r for r in objects):
            counters["docs.rows_read"] += len(records)
            yield self._no_text_column(src, len(objects))
            return
        for index, record in enumerate(records):
            counters["docs.rows_read"] += 1
            if isinstance(record, dict):
                yield self._row(src, index, record, counters)
            else:
                yield self._reject(src, "bad_json", "array element is not a JSON object", index)

    def _json_object(self, src: str, head: bytes, f, counters: Counter) -> Iterator[tuple[str, dict]]:
        """A ``.json`` file whose first line is not a whole object: one (pretty-printed) document,
        or, when it does not parse as one, JSONL after all (its lines are judged one by one)."""
        data, failure = _read_up_to(head, f, MAX_JSON_ARRAY_BYTES + 1)
        if failure is not None:  # cut short: what was read is judged line by line, then the damage
            yield from self._jsonl(src, io.BufferedReader(_Prefixed(data, _Failing(failure))), counters)
            return
        if len(data) <= MAX_JSON_ARRAY_BYTES:
            try:
                record = json.loads(data)
            except (ValueError, RecursionError):
                pass
            else:
                counters["docs.rows_read"] += 1
                if isinstance(record, dict) and self.text_column not in record:
                    yield self._no_text_column(src, 1)
                    return
                yield self._row(src, 0, record, counters)
                return
        yield from self._jsonl(src, io.BufferedReader(_Prefixed(data, f)), counters)

    def _jsonl(self, src: str, f, counters: Counter) -> Iterator[tuple[str, dict]]:
        index = 0
        # Rows wait here until some object has the text column: when none of the first JUDGE_ROWS
        # objects (or of the file) has it, the column is wrong (--text-column), a file-level failure
        # as for Parquet, not one missing_text reject per row and a file recorded as done. One row
        # without the key (an exporter dropping a null) is still that row's missing_text.
        pending: list[tuple[str, dict]] | None = []
        objects = 0
        try:
            for line in f:
                if not line.strip():
                    continue
                counters["docs.rows_read"] += 1
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError) as e:  # also too deep nesting, integers over 4300 digits
                    if not line.endswith(b"\n") and _ends_unfinished(e):
                        # The last line, unfinished: a file cut short (a partial download), as a
                        # truncated gzip is; not one bad row of a file then recorded as read.
                        yield from pending or ()
                        yield self._reject(src, "docs_corrupt", f"cut short after row {index}: the last line "
                                           f"ends without a newline and is not whole JSON ({e})", index)
                        return
                    out = self._reject(src, "bad_json", f"{type(e).__name__}: {e}", index)
                else:
                    if isinstance(record, dict):
                        objects += 1
                        if pending is not None and self.text_column in record:
                            yield from pending
                            pending = None
                        out = self._row(src, index, record, counters)
                    else:
                        out = self._reject(src, "bad_json", "line is not a JSON object", index)
                index += 1
                if pending is None:
                    yield out
                    continue
                pending.append(out)
                if objects >= JUDGE_ROWS:
                    yield self._no_text_column(src, objects)
                    return
        except _STREAM_ERRORS as e:  # truncated or damaged gzip: keep what was read
            yield from pending or ()
            yield self._reject(src, "docs_corrupt", f"after row {index}: {type(e).__name__}: {e}", index)
            return
        if pending is not None and objects:
            yield self._no_text_column(src, objects)
            return
        yield from pending or ()

    def _no_text_column(self, src: str, objects: int) -> tuple[str, dict]:
        return self._reject(src, "docs_no_text_column", f"none of the first {objects} objects has a key "
                            f"{self.text_column!r} (name the text column: --text-column, or source.text_column)")


def ingest_docs(paths: list[str], fs, out_dir: str, text_column: str = "text", url_column: str = "url",
                records_per_shard: int = 1000, storage_options: dict | None = None, workers: int = 1) -> dict[str, Any]:
    # The manifest names the stage these documents stand in for (the folder, e.g. "02_extract").
    stage = out_dir.rstrip("/").rsplit("/", 1)[-1]
    jobs = jobs_for("docs", list(paths), out_dir, records_per_shard, storage_options, 0, stage, text_column, url_column)
    summary = run_jobs(jobs, workers, fs)
    summary["docs"] = summary.pop("kept")
    return summary
