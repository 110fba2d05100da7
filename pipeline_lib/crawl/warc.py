"""WARC / Common Crawl ingest into page shards (``source = "warc"``), built on warcio.

Inputs are local paths, http(s) URLs or ``s3://`` (fsspec), and Common Crawl ``warc.paths.gz``
listings; a listing may carry a segment range as ``LISTING#START:END`` (Python slice of its lines).

Broken input is data: a corrupt or truncated record becomes a rejected row with a counted reason
and the reader resynchronises at the next record (the next gzip member, or the next ``WARC/``
line), so one bad record does not lose the rest of the file. A file compressed as one gzip stream
(not per record) is read through a plain gunzip instead of being refused.

Idempotent through ``ingest.ingest_files``: deterministic shard numbering per input file, a
per-file completion marker, finished files skipped on rerun.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterator

import fsspec
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from pipeline_lib.crawl.encoding import decode_html
from pipeline_lib.crawl.fetcher import HTML_TYPES, looks_binary
from pipeline_lib.crawl.ingest import ingest_files
from pipeline_lib.schema import PAGE_REJECT_SCHEMA, PAGE_SCHEMA, doc_id
MAX_PAYLOAD_BYTES = 10_000_000
CC_BASES = {"s3": "s3://commoncrawl/", "default": "https://data.commoncrawl.org/"}
GZIP_MAGIC = b"\x1f\x8b\x08"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
MAX_RESYNCS = 10_000
_DATE_PREFIX = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ]?(\d{2}):?(\d{2}):?(\d{2}))?")


def expand_inputs(paths: list[str], storage_options: dict | None = None) -> list[str]:
    """Files to read, in order: listings (``*.paths``/``*.paths.gz``) become the files they name."""
    out: list[str] = []
    for p in paths:
        base, _, span = p.partition("#")
        if not re.search(r"\.paths(\.gz)?$", base):
            out.append(p)
            continue
        with fsspec.open(base, "rb", compression="infer", **(storage_options or {})) as f:
            lines = [ln.strip() for ln in f.read().decode("utf-8").splitlines() if ln.strip()]
        if span:
            start, _, end = span.partition(":")
            lines = lines[int(start) if start else None:int(end) if end else None]
        prefix = CC_BASES["s3"] if base.startswith("s3://") else CC_BASES["default"]
        # Common Crawl lines are bucket-relative ("crawl-data/..."); absolute paths and URLs pass through.
        out.extend(ln if "://" in ln or ln.startswith("/") else prefix + ln for ln in lines)
    return out


def parse_warc_date(value: str | None) -> datetime | None:
    """WARC-Date, leniently: ClueWeb writes '2008-10-294T05:21:46-0700' (sic); bad dates become null."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        pass
    m = _DATE_PREFIX.match(value.strip())
    if not m:
        return None
    try:
        parts = [int(x) if x else 0 for x in m.groups()]
        return datetime(*parts, tzinfo=timezone.utc)
    except ValueError:
        return None


class _Source:
    """One input file: yields (kind, row) with kind "kept" / "rejected", counting what it skipped."""

    def __init__(self, path: str, storage_options: dict | None):
        self.path = path
        self.storage_options = storage_options or {}
        self.counters: Counter[str] = Counter()

    def _reject(self, url: str, reason: str, detail: str = "", status: int | None = None,
                fetched_at: datetime | None = None, record_id: str = "") -> tuple[str, dict]:
        return "rejected", {"id": doc_id("warc", record_id or url), "url": url, "status": status, "depth": None,
                            "fetched_at": fetched_at, "source": "warc", "reject_reason": reason,
                            "detail": detail[:500]}

    def rows(self) -> Iterator[tuple[str, dict]]:
        try:
            f = fsspec.open(self.path, "rb", **self.storage_options).open()
        except Exception as e:  # missing file, unreachable URL, denied bucket
            yield self._reject(self.path, "warc_unreadable", f"{type(e).__name__}: {e}")
            return
        with f:
            head = f.read(4)
            f.seek(0)
            if head == LZ4_MAGIC:
                try:
                    import lz4.frame
                except ImportError:
                    yield self._reject(self.path, "warc_unsupported_compression", "lz4 (pip install lz4 to read it)")
                    return
                yield from self._iterate(lz4.frame.LZ4FrameFile(f), resync=False)
                return
            yield from self._iterate(f, resync=True, gzipped=head[:3] == GZIP_MAGIC)

    def _iterate(self, stream, resync: bool, gzipped: bool = False) -> Iterator[tuple[str, dict]]:
        base = 0
        emitted = 0
        for _attempt in range(MAX_RESYNCS):
            it = ArchiveIterator(stream, arc2warc=True)
            last_end = base
            try:
                for record in it:
                    # it.offset is where this record starts (get_record_offset() would consume the record).
                    last_end = base + it.offset
                    for row in self._record(record, last_end):
                        emitted += 1
                        yield row
                return
            except ArchiveLoadFailed as e:
                if "non-chunked gzip" in str(e) and gzipped and base == 0:
                    self.counters["warc.whole_file_gzip"] += 1
                    stream.seek(0)
                    yield from self._skip(self._iterate(gzip.GzipFile(fileobj=stream), resync=False), emitted)
                    return
                problem = e
            except Exception as e:  # zlib errors, bad headers inside warcio: the record is lost
                problem = e
            offset = max(last_end, base + getattr(it, "offset", 0))
            yield self._reject(f"{self.path}#offset={offset}", "warc_corrupt_record",
                               f"{type(problem).__name__}: {str(problem).strip()[:300]}")
            if not resync:
                return
            nxt = _find_next_record(stream, offset + 1, gzipped)
            if nxt is None:
                return
            self.counters["warc.resyncs"] += 1
            stream.seek(nxt)
            base = nxt

    @staticmethod
    def _skip(rows: Iterator[tuple[str, dict]], n: int) -> Iterator[tuple[str, dict]]:
        for i, row in enumerate(rows):
            if i >= n:
                yield row

    def _record(self, record, offset: int) -> Iterator[tuple[str, dict]]:
        rec_type = record.rec_type
        self.counters[f"warc.records_{rec_type}"] += 1
        if rec_type not in ("response", "resource"):
            return  # warcinfo, request, metadata, revisit: not pages
        h = record.rec_headers
        url = (h.get_header("WARC-Target-URI") or "").strip().strip("<>")
        record_id = h.get_header("WARC-Record-ID") or f"{self.path}#{offset}"
        fetched_at = parse_warc_date(h.get_header("WARC-Date"))
        if not url:
            yield self._reject(f"{self.path}#offset={offset}", "warc_no_target_uri", record_id=record_id)
            return
        status = None
        content_type = h.get_header("Content-Type") or ""
        headers: dict[str, str] = {}
        if record.http_headers is not None and rec_type == "response":
            try:
                status = int(record.http_headers.get_statuscode())
            except (TypeError, ValueError):
                status = None
            content_type = record.http_headers.get_header("Content-Type") or ""
            headers = {k.lower(): v for k, v in record.http_headers.headers}
        if status is not None and not 200 <= status < 300:
            yield self._reject(url, f"http_{status}", status=status, fetched_at=fetched_at, record_id=record_id)
            return
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime and mime not in HTML_TYPES:
            yield self._reject(url, "non_html", mime, status, fetched_at, record_id)
            return
        try:
            body = record.content_stream().read(MAX_PAYLOAD_BYTES + 1)
        except Exception as e:  # a broken chunked or gzip payload
            yield self._reject(url, "warc_bad_payload", f"{type(e).__name__}: {e}", status, fetched_at, record_id)
            return
        if len(body) > MAX_PAYLOAD_BYTES:
            yield self._reject(url, "too_large", f"more than {MAX_PAYLOAD_BYTES} bytes", status, fetched_at, record_id)
            return
        declared = headers.get("content-length", "")
        payload_complete = declared.isdigit() and "content-encoding" not in headers and len(body) >= int(declared)
        if not payload_complete and getattr(record.raw_stream, "limit", 0) > 0 and not record.raw_stream.read(1):
            # The file ended before the record's Content-Length: half a page is not a page.
            yield self._reject(url, "warc_truncated", f"{record.raw_stream.limit} bytes missing",
                               status, fetched_at, record_id)
            return
        if not body.strip():
            yield self._reject(url, "empty_body", "", status, fetched_at, record_id)
            return
        if looks_binary(body):
            yield self._reject(url, "binary_content", "", status, fetched_at, record_id)
            return
        html, _codec = decode_html(body, content_type)
        yield "kept", {"id": doc_id("warc", record_id), "url": url, "final_url": url, "status": status,
                       "content_type": content_type, "html": html, "fetched_at": fetched_at, "depth": None,
                       "source": "warc", "headers": json.dumps(headers, sort_keys=True, ensure_ascii=False)}


def _find_next_record(stream, start: int, gzipped: bool) -> int | None:
    """Offset of the next plausible record start at or after ``start``, or None at end of file."""
    markers = [GZIP_MAGIC] if gzipped else [b"\nWARC/1.", b"\nWARC/0."]
    stream.seek(start)
    pos, carry = start, b""
    while True:
        block = stream.read(1 << 20)
        if not block:
            return None
        data = carry + block
        hits = [i for i in (data.find(m) for m in markers) if i >= 0]
        if hits:
            found = pos - len(carry) + min(hits)
            return found if gzipped else found + 1
        carry = data[-16:]
        pos += len(block)


def _read_warc(storage_options: dict | None):
    def reader(src: str, counters: Counter) -> Iterator[tuple[str, dict]]:
        source = _Source(src, storage_options)
        source.counters = counters
        return source.rows()
    return reader


def ingest_warc(paths: list[str], fs, out_dir: str, records_per_shard: int = 1000,
                storage_options: dict | None = None) -> dict[str, Any]:
    inputs = expand_inputs(paths, storage_options)
    summary = ingest_files(inputs, fs, out_dir, records_per_shard, _read_warc(storage_options), "warc",
                           (PAGE_SCHEMA, PAGE_REJECT_SCHEMA))
    summary["pages"] = summary.pop("kept")
    return summary
