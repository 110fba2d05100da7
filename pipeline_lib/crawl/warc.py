"""WARC / Common Crawl ingest into page shards (``source = "warc"``), built on warcio.

Inputs are local paths, http(s) URLs or ``s3://`` (fsspec), and Common Crawl ``warc.paths.gz``
listings; a listing may carry a segment range as ``LISTING#START:END`` (Python slice of its lines).

Broken input is data: a corrupt or truncated record becomes a rejected row with a counted reason
and the reader resynchronises at the next record (the next gzip member, or the next ``WARC/``
line), so one bad record does not lose the rest of the file. A file compressed as one gzip stream
(not per record) is read through a plain gunzip instead of being refused. A record whose
Content-Length is no number, or is missing in an uncompressed file (where warcio would read the
records after it as its body), is one reject (``warc_bad_length``, not also the resync it causes); one
whose HTTP status is outside 100..999 (``bad_status``) is rejected; a WARC-Date that is no date, or
falls outside years 1..9999 in UTC, becomes null. Data that ends inside a record is
``warc_truncated`` (the file was cut short, a file failure read again by the next run) unless the
record's gzip member ended whole: then the writer wrote a short record (``warc_short_record``)
and the file still counts as read. A file that opens with neither ``WARC/`` nor ``filedesc://``
is no WARC (``warc_unreadable``).

Speed (bench/crawl.py, warc section): warcio iterates with ``no_record_parse`` and only response
records get their HTTP head split off (``http_head``, warcio's rules on bytes in memory); pages go
into the shard as UTF-8 bytes (``html_as_utf8``: the text ``decode_html`` gives, transcoded only
when the page is not UTF-8 already).

Idempotent through ``ingest.run_job``: deterministic shard numbering per input file, a
per-file completion marker, finished files skipped on rerun.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import logging
import re
import struct
import zlib
from collections import Counter
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterator

import fsspec
import pyarrow as pa
from isal import igzip, isal_zlib
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import BufferedReader, ChunkedDataReader, DecompressingBufferedReader
from warcio.exceptions import ArchiveLoadFailed
from warcio.limitreader import LimitReader
from warcio.recordloader import ARC2WARCHeadersParser

from pipeline_lib.crawl.encoding import charset_from_content_type, charset_from_meta, codec_for, decode_html
from pipeline_lib.crawl.fetcher import HTML_TYPES, looks_binary
from pipeline_lib.crawl.ingest import jobs_for, run_jobs
from pipeline_lib.schema import PAGE_REJECT_SCHEMA, PAGE_SCHEMA, doc_id
MAX_PAYLOAD_BYTES = 10_000_000
CC_BASES = {"s3": "s3://commoncrawl/", "default": "https://data.commoncrawl.org/"}
# warcio logs a warning per record whose target URI holds spaces (it repairs them): on a broken
# file, one per line of stderr and of the run's log. The record itself is judged here.
logging.getLogger("warcio.recordloader").setLevel(logging.ERROR)

GZIP_MAGIC = b"\x1f\x8b\x08"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
MAX_RESYNCS = 10_000
MAX_HTTP_HEAD_BYTES = 1 << 20  # read with the payload; a head larger than this eats into the payload limit
_HTTP_SCHEMES = ("http:", "https:")  # as warcio: only these records carry an HTTP head
_DECOMPRESSORS = frozenset(BufferedReader.get_supported_decompressors())


def _isal_inflater(wbits: int):
    return lambda: isal_zlib.decompressobj(wbits)


class _IsalInflate:
    """warcio's readers with ISA-L's inflate (python-isal) in place of zlib's: the same streams and
    the same member boundaries (``unused_data``), about twice as fast. Inflating is nearly all of
    warcio's read: on 1,000 real pages (188 MB of HTML) plain iteration takes 0.46 s with zlib and
    0.24 s with this (bench/crawl.py, ``plain_warcio_isal``)."""

    DECOMPRESSORS = {**BufferedReader.DECOMPRESSORS, "gzip": _isal_inflater(16 + isal_zlib.MAX_WBITS),
                     "deflate": _isal_inflater(isal_zlib.MAX_WBITS),
                     "deflate_alt": _isal_inflater(-isal_zlib.MAX_WBITS)}


class _MarkingArcParser(ARC2WARCHeadersParser):
    """warcio's ARC-to-WARC header parser, marking the headers it made: such a record gets a random
    WARC-Record-ID from warcio, so its stable id is derived instead (also in a file that does not
    open like an ARC, where warcio falls back to ARC parsing record by record)."""

    def parse(self, stream, headerline=None):
        headers = super().parse(stream, headerline)
        headers.from_arc = True
        return headers


class _RecordReader(_IsalInflate, DecompressingBufferedReader):
    """The reader under ArchiveIterator (gzip members, or plain when the file is not gzip)."""


class _PayloadReader(_IsalInflate, BufferedReader):
    """An HTTP payload with a Content-Encoding."""


class _ChunkedPayloadReader(_IsalInflate, ChunkedDataReader):
    """A chunked HTTP payload, with or without a Content-Encoding."""
_HEAD_END = re.compile(rb"(?:^|\n)[ \t\r\x0b\x0c]*\n")  # a blank (whitespace-only) line ends the head
# One encoder for every page: json.dumps with options builds a new JSONEncoder per call.
_headers_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
_DATE_PREFIX = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ]?(\d{2}):?(\d{2}):?(\d{2}))?")


def expand_inputs(paths: list[str], storage_options: dict | None = None) -> list[str]:
    """Files to read, in order: listings (``*.paths``/``*.paths.gz``) become the files they name."""
    out: list[str] = []
    for p in paths:
        base, _, span = p.partition("#")
        if not re.search(r"\.paths(\.gz)?$", base):
            out.append(p)
            continue
        try:
            with fsspec.open(base, "rb", **(storage_options or {})) as f:
                data = f.read()
            if base.endswith(".gz"):  # the standard library's gzip, whatever fsspec would pick
                data = gzip.decompress(data)
            lines = [ln.strip() for ln in data.decode("utf-8").splitlines() if ln.strip()]
        except (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError) as e:  # not gzip, truncated, binary
            raise ValueError(f"not a readable WARC listing: {base}: {type(e).__name__}: {e}") from e
        if span:
            start, _, end = span.partition(":")
            try:
                lines = lines[int(start) if start else None:int(end) if end else None]
            except ValueError:
                raise ValueError(f"{p}: a listing range is #START:END (line numbers), not #{span}") from None
        prefix = CC_BASES["s3"] if base.startswith("s3://") else CC_BASES["default"]
        # Common Crawl lines are bucket-relative ("crawl-data/..."); absolute paths and URLs pass through.
        out.extend(ln if "://" in ln or ln.startswith("/") else prefix + ln for ln in lines)
    return out


def parse_warc_date(value: str | None) -> datetime | None:
    """WARC-Date, leniently: ClueWeb writes '2008-10-294T05:21:46-0700' (sic); bad dates become null."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        pass
    else:  # a date without a zone is UTC (as below), not the local time of the machine reading it
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:  # in UTC before year 1 or after 9999 (0001-01-01T00:00+01:00)
            return None
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
        self.is_arc = False
        self._arc_keys: Counter[str] = Counter()
        self._bad_length_at: int | None = None  # offset of the last record, when its Content-Length was bad
        self._gzipped = False
        self._reader = None  # the reader under the current ArchiveIterator
        self._unbounded = False  # the last record had no Content-Length in a file without gzip members

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
            head = f.read(4096)
            f.seek(0)
            opening = _opening(head)
            start = (opening or b"").lstrip()
            self.is_arc = start.startswith(b"filedesc://")  # ARC files open with a version block
            if opening is not None and start and not any(start.startswith(m) or m.startswith(start)
                                                         for m in (b"WARC/", b"filedesc://")):
                # A text file or a page, not a WARC: warcio would read its lines as ARC headers and
                # make dozens of bad records of it, and the file would count as read.
                yield self._reject(self.path, "warc_unreadable", "not a WARC or ARC file: it starts with "
                                   f"{start[:40]!r}, not WARC/ or filedesc://")
                return
            if head[:4] == LZ4_MAGIC:
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
        self._gzipped = gzipped
        for _attempt in range(MAX_RESYNCS):
            # no_record_parse: HTTP headers are parsed (by warcio's own parser) only for the records
            # that can become pages, not for every request and metadata record.
            it = ArchiveIterator(stream, arc2warc=True, no_record_parse=True)
            it.INC_RECORD = ""  # warcio's stderr note on a bad Content-Length: that record is a warc_bad_length row
            it.reader = self._reader = _RecordReader(it.fh)  # before the first record: iteration is lazy
            it.loader.arc_parser = _MarkingArcParser()
            self._loader = it.loader
            # warcio's offsets start at the stream's tell() (the resync point) when it has one, else
            # at 0: file offsets are base plus the distance from where this iterator started.
            origin = it.offset
            last_end = base
            try:
                for record in it:
                    # it.offset is where this record starts (get_record_offset() would consume the record).
                    last_end = base + it.offset - origin
                    row = self._record(record, last_end)
                    if row is not None:
                        emitted += 1
                        yield row
                    if self._unbounded and resync:
                        # warcio would read the records after it as this one's body: find the next one.
                        raise _Unbounded(f"record at offset {last_end} has no Content-Length")
                return
            except ArchiveLoadFailed as e:
                if "non-chunked gzip" in str(e) and gzipped and base == 0:
                    self.counters["warc.whole_file_gzip"] += 1
                    stream.seek(0)
                    self._arc_keys.clear()  # the rows are read again from the start
                    yield from self._skip(self._iterate(igzip.IGzipFile(fileobj=stream), resync=False), emitted)
                    return
                problem = e
            except Exception as e:  # zlib errors, bad headers inside warcio: the record is lost
                problem = e
            offset = max(last_end, base + it.offset - origin)
            # A record with a bad Content-Length is read by warcio as an empty block, so the reader
            # stops in its body: that record already has its reject (warc_bad_length), and the
            # resync below finds the next record. Without a resync the rest is lost: say so.
            follows_bad_length = resync and self._bad_length_at is not None and self._bad_length_at == last_end
            self._bad_length_at = None
            nxt = _find_next_record(stream, offset + 1, gzipped) if resync else None
            if not follows_bad_length:
                # The data ending inside a record, with no record after it: the file was cut short (a
                # partial download), which a file-level reason says, so that it is read again.
                reason = "warc_truncated" if isinstance(problem, EOFError) and nxt is None else "warc_corrupt_record"
                yield self._reject(f"{self.path}#offset={offset}", reason,
                                   f"{type(problem).__name__}: {str(problem).strip()[:300]}")
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

    def _record(self, record, offset: int) -> tuple[str, dict] | None:
        rec_type = record.rec_type
        self.counters[f"warc.records_{rec_type or 'untyped'}"] += 1
        self._bad_length_at = None
        # Every WARC record has a Content-Length; in a file without gzip members nothing else bounds
        # its block, and warcio would read the records after it as its body (see _iterate).
        self._unbounded = not self.is_arc and not self._gzipped and record.rec_headers.get_header("Content-Length") is None
        if self._unbounded:
            self._bad_length_at = offset
            self.counters["warc.records_without_length"] += 1
        if rec_type not in ("response", "resource"):
            return None  # warcinfo, request, metadata, revisit: not pages
        # One pass over the header list instead of a linear get_header() scan per field; reversed so
        # that, like get_header(), the first of repeated headers wins.
        h = {k.lower(): v for k, v in reversed(record.rec_headers.headers)}
        url = (h.get("warc-target-uri") or "").strip().strip("<>")
        record_id = h.get("warc-record-id") or f"{self.path}#{offset}"
        if getattr(record.rec_headers, "from_arc", False):  # a random WARC-Record-ID: derive a stable one
            key = f"arc|{url}|{h.get('warc-date')}"
            self._arc_keys[key] += 1
            record_id = key if self._arc_keys[key] == 1 else f"{key}|{self._arc_keys[key]}"
        fetched_at = parse_warc_date(h.get("warc-date"))
        declared_length = h.get("content-length")
        if self._unbounded:
            return self._reject(url or f"{self.path}#offset={offset}", "warc_bad_length", "no Content-Length",
                                fetched_at=fetched_at, record_id=record_id)
        if declared_length is not None and not _valid_length(declared_length):
            # warcio reads such a record as an empty block (and then fails on its body, see _iterate).
            self._bad_length_at = offset
            return self._reject(url or f"{self.path}#offset={offset}", "warc_bad_length",
                                f"Content-Length {declared_length[:100]!r}", fetched_at=fetched_at,
                                record_id=record_id)
        if not url:
            return self._reject(f"{self.path}#offset={offset}", "warc_no_target_uri", record_id=record_id)
        if rec_type == "response" and record.length and isinstance(record.raw_stream, LimitReader) \
                and url.startswith(_HTTP_SCHEMES):
            return self._response(record, url, record_id, fetched_at)
        if record.http_headers is None and rec_type == "response":  # no Content-Length: warcio's own parser
            record.http_headers = self._loader.load_http_headers(rec_type, url, record.raw_stream, record.length)
        status = None
        content_type = h.get("content-type") or ""
        headers: dict[str, str] = {}
        if record.http_headers is not None and rec_type == "response":
            status_text = record.http_headers.get_statuscode()
            status, usable = _status(status_text)
            if not usable:
                return self._reject(url, "bad_status", f"status {status_text[:100]!r}", None, fetched_at, record_id)
            content_type = record.http_headers.get_header("Content-Type") or ""
            headers = {k.lower(): v for k, v in record.http_headers.headers}
        rejected = self._check_head(url, status, content_type, fetched_at, record_id)
        if rejected:
            return rejected
        try:
            body = record.content_stream().read(MAX_PAYLOAD_BYTES + 1)
        except Exception as e:  # a broken chunked or gzip payload
            return self._reject(url, "warc_bad_payload", f"{type(e).__name__}: {e}", status, fetched_at, record_id)
        return self._page(record, url, record_id, fetched_at, status, content_type, headers, body)

    def _response(self, record, url: str, record_id: str, fetched_at) -> tuple[str, dict]:
        """A response record with a known length: the block is read once and its HTTP head split off
        here (warcio's line-by-line parser is most of the cost of a page; same rules, see http_head)."""
        block = record.raw_stream.read(MAX_PAYLOAD_BYTES + MAX_HTTP_HEAD_BYTES)
        status_text, header_list, payload_start = http_head(block)
        if status_text is None:  # an empty block: what warcio's parser reports as EOFError
            raise EOFError(f"{url}: response record without an HTTP head")
        status, usable = _status(status_text)
        if not usable:
            return self._reject(url, "bad_status", f"status {status_text[:100]!r}", None, fetched_at, record_id)
        headers = {k.lower(): v for k, v in header_list}
        content_type = next((v for k, v in header_list if k.lower() == "content-type"), "")
        rejected = self._check_head(url, status, content_type, fetched_at, record_id)
        if rejected:
            return rejected
        body = block[payload_start:]
        encoding = (headers.get("content-encoding") or "").lower()
        if encoding not in _DECOMPRESSORS:
            encoding = ""
        try:
            if headers.get("transfer-encoding") == "chunked":  # the exact test content_stream() makes
                body = _ChunkedPayloadReader(io.BytesIO(body), decomp_type=encoding or None).read(MAX_PAYLOAD_BYTES + 1)
            elif encoding:
                body = _PayloadReader(io.BytesIO(body), decomp_type=encoding).read(MAX_PAYLOAD_BYTES + 1)
        except Exception as e:  # a broken chunked or gzip payload
            return self._reject(url, "warc_bad_payload", f"{type(e).__name__}: {e}", status, fetched_at, record_id)
        return self._page(record, url, record_id, fetched_at, status, content_type, headers, body)

    def _check_head(self, url, status, content_type, fetched_at, record_id) -> tuple[str, dict] | None:
        if status is not None and not 200 <= status < 300:
            return self._reject(url, f"http_{status}", status=status, fetched_at=fetched_at, record_id=record_id)
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime and mime not in HTML_TYPES:
            return self._reject(url, "non_html", mime, status, fetched_at, record_id)
        return None

    def _page(self, record, url, record_id, fetched_at, status, content_type, headers, body) -> tuple[str, dict]:
        if len(body) > MAX_PAYLOAD_BYTES:
            return self._reject(url, "too_large", f"more than {MAX_PAYLOAD_BYTES} bytes", status, fetched_at,
                                record_id)
        declared = headers.get("content-length", "")
        payload_complete = declared.isdigit() and "content-encoding" not in headers and len(body) >= int(declared)
        if not payload_complete and getattr(record.raw_stream, "limit", 0) > 0 and not record.raw_stream.read(1):
            # The data ended before the record's Content-Length: half a page is not a page. When the
            # record's gzip member ended whole, the file is not cut short (a download would stop
            # inside a member): the writer wrote a short record, and reading again will not mend it.
            decompressor = getattr(self._reader, "decompressor", None)
            whole_member = self._gzipped and decompressor is not None and decompressor.eof
            return self._reject(url, "warc_short_record" if whole_member else "warc_truncated",
                                f"{record.raw_stream.limit} bytes missing", status, fetched_at, record_id)
        if not body.strip():
            return self._reject(url, "empty_body", "", status, fetched_at, record_id)
        if looks_binary(body):
            return self._reject(url, "binary_content", "", status, fetched_at, record_id)
        return "kept", {"id": doc_id("warc", record_id), "url": url, "final_url": url, "status": status,
                        "content_type": content_type, "html": html_as_utf8(body, content_type),
                        "fetched_at": fetched_at, "depth": None, "source": "warc",
                        "headers": _headers_json(headers)}


class _Unbounded(Exception):
    """A record without a Content-Length in an uncompressed file: the reader resyncs past it."""


def _valid_length(text: str) -> bool:
    """Whether a WARC Content-Length is one warcio takes as it stands (it reads any other as 0)."""
    try:
        return int(text) >= 0
    except ValueError:
        return False


def _status(text: str | None) -> tuple[int | None, bool]:
    """(status code, usable) from an HTTP status line's code text. Text that is no number gives no
    status (None) but a usable record, as before; a number outside 100..999 (no HTTP status, and
    none an int32 column holds when it is huge) makes the record unusable."""
    try:
        status = int(text)
    except (TypeError, ValueError):
        # int() refuses numbers over 4300 digits: those are out of range too, not "no number"
        return None, not (text or "").strip().isdigit()
    return (status, True) if 100 <= status <= 999 else (None, False)


@lru_cache(maxsize=256)
def _header_codec(content_type: str) -> str | None:
    """The codec a Content-Type names (content types repeat, so the lookup is cached)."""
    return codec_for(charset_from_content_type(content_type))


def html_as_utf8(body: bytes, content_type: str) -> bytes:
    """The page as UTF-8 bytes, the same text ``decode_html`` gives, without the str round trip.

    Arrow stores strings as UTF-8, so a page that already is UTF-8 (or plain ASCII under an
    ASCII-compatible charset, most of the web) goes into the shard as its own bytes; only other
    charsets are transcoded. Anything unusual (BOMs, invalid UTF-8, EBCDIC labels) takes the full
    ``decode_html`` path, so the stored text never differs from what the crawler would store.
    """
    if not body.startswith(_BOM_STARTS):  # decode_html honours a BOM before any declaration
        # decode_html's order: the header's charset, then <meta>, then UTF-8 (utf-16 labels are ignored).
        codec = _usable(_header_codec(content_type)) or _usable(codec_for(charset_from_meta(body[:4096])))
        if body.isascii():
            if codec is None or codec in _ASCII_COMPATIBLE:
                return body
        elif codec is None or codec == "utf-8":
            if _is_utf8(body):
                return body
        elif codec in _ASCII_COMPATIBLE:  # real text codecs only ("hex" or "base64" are labels too)
            try:
                return _transcode(body, codec)
            except UnicodeDecodeError:
                pass  # a wrong declaration: decode_html tries the next source of truth
    try:
        text = decode_html(body, content_type)[0]
    except (UnicodeError, LookupError):  # a label naming no text codec ("hex", "base64", "undefined")
        text = body.decode("utf-8") if _is_utf8(body) else body.decode("cp1252", "replace")
    return text.encode("utf-8", "replace")  # "replace": unicode_escape can yield lone surrogates


# Pages are transcoded in slices of this size: one str of a whole 100 KB page is a fresh mmap that
# the kernel faults in page by page (measured: ~13,000 faults and a third of the decoding time on
# the bench file); slices this small are served from the heap and reused.
_SLICE = 16384


def _is_utf8(body: bytes) -> bool:
    """Whether the page is valid UTF-8, by Python's strict rules (no surrogates, no overlong forms,
    nothing above U+10FFFF): Arrow's validator, which agrees with them, checks it in place without
    building a str, ~4x faster than decoding (bench/crawl.py real pages: 11 ms against 46 ms a 1,000)."""
    offsets = pa.py_buffer(struct.pack("<ii", 0, len(body)))
    try:
        pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(body)]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _transcode(body: bytes, codec: str) -> bytes:
    """``body.decode(codec).encode("utf-8")``, slice by slice (the incremental decoder carries
    multibyte characters across slice ends, so the text is the same)."""
    if len(body) <= _SLICE:
        return body.decode(codec).encode("utf-8", "replace")
    decoder = codecs.getincrementaldecoder(codec)()
    parts = [decoder.decode(body[i:i + _SLICE]).encode("utf-8", "replace") for i in range(0, len(body), _SLICE)]
    parts.append(decoder.decode(b"", True).encode("utf-8", "replace"))
    return b"".join(parts)


def _usable(codec: str | None) -> str | None:
    return None if codec is None or codec.startswith("utf-16") else codec


# BOM openings: decode_html honours a BOM before any declaration.
_BOM_STARTS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# Codecs under which pure-ASCII bytes decode to the same characters (EBCDIC, UTF-7, UTF-16/32 do not).
_ASCII_COMPATIBLE = frozenset(codecs.lookup(name).name for name in (
    "utf-8", "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
    "cp874", "cp932", "cp949", "cp950", "euc_jp", "euc_kr", "gb18030", "gb2312", "gbk", "big5", "big5hkscs",
    "koi8_r", "koi8_u", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6",
    "iso8859_7", "iso8859_8", "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15",
    "iso8859_16", "mac_roman", "ascii", "shift_jis", "euc_jis_2004", "shift_jis_2004", "cp866"))


def _opening(head: bytes) -> bytes | None:
    """The first bytes of the file's content (gzip and lz4 undone); None when they cannot be had
    here (damaged compression, lz4 not installed): the reader then says what is wrong."""
    try:
        if head[:3] == GZIP_MAGIC:
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 256)
        if head[:4] == LZ4_MAGIC:
            import lz4.frame

            return lz4.frame.LZ4FrameDecompressor().decompress(head, 256)
    except Exception:
        return None
    return head[:256]


def http_head(block: bytes) -> tuple[str | None, list[tuple[str, str]], int]:
    """(status code text, [(name, value)], payload offset) of an HTTP response head.

    The rules of warcio's lenient parser, applied to bytes already in memory instead of line by
    line through its readers: lines end at LF and lose trailing whitespace, a blank line ends the
    head, a line starting with space or tab continues the previous value, a line without a colon
    is dropped, lines are UTF-8 else ISO-8859-1. Status text None means an empty block.
    """
    if not block:
        return None, [], 0
    m = _HEAD_END.search(block)
    if m is None:  # no blank line: everything is head, the payload is empty
        head, payload_start = block, len(block)
    else:
        head, payload_start = block[:m.start()], m.end()  # a blank status line gives an empty head
    try:
        lines = head.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = [_header_line(raw) for raw in head.split(b"\n")]
    status_line = lines[0].rstrip()
    parts = status_line.split(" ", 1)
    status = parts[1].strip().split(" ", 1)[0] if len(parts) > 1 else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        line = line.rstrip()
        if headers and line[:1] in (" ", "\t"):
            if headers[-1][1] is not None:
                headers[-1] = (headers[-1][0], headers[-1][1] + line)
            continue
        name, colon, value = line.partition(":")
        headers.append((name.rstrip(" \t"), value.lstrip() if colon else None))
    return status, [(k, v) for k, v in headers if v is not None], payload_start


def _header_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


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
                storage_options: dict | None = None, first_shard: int = 0, workers: int = 1) -> dict[str, Any]:
    jobs = jobs_for("warc", expand_inputs(paths, storage_options), out_dir, records_per_shard, storage_options,
                    first_shard)
    summary = run_jobs(jobs, workers, fs)
    summary["pages"] = summary.pop("kept")
    return summary
