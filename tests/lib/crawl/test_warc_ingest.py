"""WARC ingest on the real files in ../shared/data/warc, the broken ones included."""

from __future__ import annotations

import gzip
import os
import random
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib import shards
from pipeline_lib.crawl import ingest_warc
from pipeline_lib.crawl.warc import expand_inputs, parse_warc_date

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def warc_dir(shared_data) -> Path:
    d = shared_data / "warc"
    if not d.is_dir():
        pytest.skip("../shared/data/warc is not present")
    return d


def _all_files(warc_dir: Path) -> list[str]:
    return sorted(str(p) for p in warc_dir.rglob("*") if p.is_file() and not p.name.startswith("LICENSE"))


def _rows(fs, out_dir: str, which: str = "kept") -> list[dict]:
    rows = []
    for name in shards.list_shards(fs, out_dir):
        if which in shards.load_manifest(fs, out_dir, name)["files"]:
            rows += shards.read_verified(fs, out_dir, name, which).to_pylist()
    return rows


def _ingest_one(path: str, tmp_path: Path) -> tuple[dict, list[dict], list[dict]]:
    out = str(tmp_path / ("out-" + Path(path).name) / "00_crawl")
    fs = shards.filesystem(out)
    summary = ingest_warc([path], fs, out, records_per_shard=5)
    return summary, _rows(fs, out), _rows(fs, out, "rejected")


def test_every_real_file_ingests_or_fails_with_counted_reasons(warc_dir, tmp_path):
    files = _all_files(warc_dir)
    assert len(files) >= 20
    out = str(tmp_path / "00_crawl")
    fs = shards.filesystem(out)
    summary = ingest_warc(files, fs, out, records_per_shard=7)
    kept, rejected = _rows(fs, out), _rows(fs, out, "rejected")
    assert summary["files"] == len(files)
    assert summary["pages"] == len(kept) > 60
    assert summary["rejected"] == len(rejected) == sum(summary["reasons"].values())
    assert shards.verify_stage_dir(fs, out) == []
    assert all(r["source"] == "warc" and r["html"] for r in kept)
    ids_per_file: dict[str, list[str]] = {}
    for name in shards.list_shards(fs, out):
        src = shards.load_manifest(fs, out, name)["input_file"]
        ids_per_file.setdefault(src, []).extend(shards.read_verified(fs, out, name).column("id").to_pylist())
    # The same record (warcfile.warc and warcfile.warc.gz) has the same id; within a file ids are unique.
    assert all(len(set(ids)) == len(ids) for ids in ids_per_file.values())
    assert set(pa.Table.from_pylist(kept).column_names) >= {"url", "final_url", "status", "html", "headers"}


def test_common_crawl_excerpt_plain_and_gzip_agree(warc_dir, tmp_path):
    _, plain, _ = _ingest_one(str(warc_dir / "resiliparse" / "warcfile.warc"), tmp_path)
    summary, gz, _ = _ingest_one(str(warc_dir / "resiliparse" / "warcfile.warc.gz"), tmp_path)
    assert summary["counters"]["warc.records_response"] == 16
    assert len(gz) == 16 and len({r["url"].split("/")[2] for r in gz}) == 15
    assert [(r["id"], r["html"]) for r in plain] == [(r["id"], r["html"]) for r in gz]
    cyrillic = next(r for r in gz if "windows-1251" in r["content_type"])
    assert "Стратегия пожарной безопасности" in cyrillic["html"]


def test_clueweb_warc_018_euc_jp_decodes(warc_dir, tmp_path):
    summary, kept, rejected = _ingest_one(str(warc_dir / "resiliparse" / "clueweb-quirk.warc.gz"), tmp_path)
    assert len(kept) == 29 and not rejected
    first = kept[0]
    assert "ヘッドポーター" in first["html"]
    assert all("\ufffd" not in r["html"] for r in kept)
    assert first["fetched_at"] is not None and first["fetched_at"].year == 2008  # '2008-10-294T...' (sic)


@pytest.mark.parametrize("name,reason", [
    ("resiliparse/clipped.warc.gz", "warc_truncated"),
    ("warcio/example-wrong-chunks.warc.gz", "warc_corrupt_record"),
])
def test_broken_files_give_reasons_not_crashes(warc_dir, tmp_path, name, reason):
    summary, _kept, rejected = _ingest_one(str(warc_dir / name), tmp_path)
    assert summary["reasons"].get(reason, 0) >= 1
    assert reason in {r["reject_reason"] for r in rejected}


def test_a_short_record_in_a_whole_gzip_member_is_not_a_cut_file(warc_dir, tmp_path):
    # example-wrong-chunks.warc.gz: every gzip member ends whole, one record is shorter than its
    # Content-Length. It was warc_truncated, a file failure: read again, and failed, on every run.
    summary, _, rejected = _ingest_one(str(warc_dir / "warcio" / "example-wrong-chunks.warc.gz"), tmp_path)
    assert "warc_short_record" in {r["reject_reason"] for r in rejected}
    assert summary["files_failed"] == 0 and "warc_truncated" not in summary["reasons"]
    assert "warc.records_None" not in summary["counters"] and summary["counters"]["warc.records_untyped"] == 1
    # clipped.warc.gz stops inside a member (a partial download): cut short, read again next time.
    summary, _, _ = _ingest_one(str(warc_dir / "resiliparse" / "clipped.warc.gz"), tmp_path)
    assert summary["files_failed"] == 1 and summary["reasons"] == {"warc_truncated": 1}


def test_whole_file_gzip_is_read_not_refused(warc_dir, tmp_path):
    # warcio refuses a WARC gzipped as one stream; it is still a valid file, so we gunzip it.
    summary, kept, _ = _ingest_one(str(warc_dir / "warcio" / "example-bad-non-chunked.warc.gz"), tmp_path)
    assert summary["counters"]["warc.whole_file_gzip"] == 1
    assert [r["url"] for r in kept] == ["http://example.com/"]


def test_corrupt_record_resync_keeps_later_records(tmp_path, warc_dir):
    good = (warc_dir / "warcio" / "example.warc.gz").read_bytes()
    broken = tmp_path / "middle-garbage.warc.gz"
    # a valid file, then a member of random bytes that claims to be gzip, then the file again
    garbage = random.Random(7).randbytes(300)  # fixed: some random members inflate to a bad length instead
    broken.write_bytes(good + b"\x1f\x8b\x08\x00" + garbage + good)
    summary, kept, rejected = _ingest_one(str(broken), tmp_path)
    assert summary["reasons"] == {"warc_corrupt_record": 1}
    assert len(kept) == 2  # the page before and the page after the garbage


def test_rerun_is_a_noop_and_listing_ranges_work(warc_dir, tmp_path):
    files = [str(warc_dir / "warcio" / n) for n in ("example.warc.gz", "example.warc", "example.arc.gz")]
    listing = tmp_path / "warc.paths.gz"
    with gzip.open(listing, "wt") as f:
        f.write("\n".join(files) + "\n")
    assert expand_inputs([f"{listing}#1:3"]) == files[1:3]
    cc_listing = tmp_path / "cc.warc.paths"
    cc_listing.write_text("crawl-data/CC-MAIN-2020-34/segments/1/warc/a.warc.gz\n")
    assert expand_inputs([str(cc_listing)]) == ["https://data.commoncrawl.org/crawl-data/CC-MAIN-2020-34/segments/1/warc/a.warc.gz"]
    out = str(tmp_path / "00_crawl")
    fs = shards.filesystem(out)
    first = ingest_warc([str(listing)], fs, out, records_per_shard=1)
    assert first["files"] == 3 and first["pages"] == 3 and first["shards_written"] == 3
    stamps = {p: os.stat(p).st_mtime_ns for p in Path(out).rglob("*") if p.is_file()}
    again = ingest_warc([str(listing)], fs, out, records_per_shard=1)
    assert again["skipped"] is True and again["shards_written"] == 0 and again["pages"] == 3
    assert stamps == {p: os.stat(p).st_mtime_ns for p in Path(out).rglob("*") if p.is_file()}
    # An interrupted run (file marker missing) rereads the file but rewrites no finished shard.
    os.remove(Path(out) / "_ingest_state" / "warc-00002.json")
    resumed = ingest_warc([str(listing)], fs, out, records_per_shard=1)
    assert resumed["shards_written"] == 0 and resumed["files_skipped"] == 2


def test_http_source_via_fsspec(warc_dir, tmp_path):
    handler = partial(SimpleHTTPRequestHandler, directory=str(warc_dir / "resiliparse"))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/warcfile.warc.gz"
        summary, kept, _ = _ingest_one(url, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["pages"] == 16 and len(kept) == 16


def test_missing_input_is_a_reason(tmp_path):
    summary, kept, rejected = _ingest_one(str(tmp_path / "nope.warc.gz"), tmp_path)
    assert kept == [] and [r["reject_reason"] for r in rejected] == ["warc_unreadable"]


def test_lenient_dates():
    assert parse_warc_date("2020-08-08T17:27:41Z").hour == 17
    assert parse_warc_date("2008-10-294T05:21:46-0700").day == 29
    assert parse_warc_date("not a date") is None


def test_lz4_warc_reads_like_gzip_or_is_a_counted_reason(warc_dir, tmp_path):
    summary, kept, rejected = _ingest_one(str(warc_dir / "resiliparse" / "warcfile.warc.lz4"), tmp_path)
    try:
        import lz4.frame  # noqa: F401  (optional dependency)
    except ImportError:
        assert [r["reject_reason"] for r in rejected] == ["warc_unsupported_compression"]
        return
    _, gz, _ = _ingest_one(str(warc_dir / "resiliparse" / "warcfile.warc.gz"), tmp_path)
    assert [(r["id"], r["html"]) for r in kept] == [(r["id"], r["html"]) for r in gz] and len(kept) == 16


def test_arc_records_get_the_same_id_on_every_run(warc_dir, tmp_path):
    # arc2warc invents a random WARC-Record-ID; a rerun must not change page ids.
    _, first, _ = _ingest_one(str(warc_dir / "warcio" / "example.arc"), tmp_path / "a")
    _, again, _ = _ingest_one(str(warc_dir / "warcio" / "example.arc"), tmp_path / "b")
    _, gz, _ = _ingest_one(str(warc_dir / "warcio" / "example.arc.gz"), tmp_path / "c")
    assert len(first) == 1 and [r["id"] for r in first] == [r["id"] for r in again] == [r["id"] for r in gz]



def test_arc_records_in_a_file_not_opening_like_an_arc_get_stable_ids(warc_dir, tmp_path):
    # warcio falls back to ARC parsing record by record when a record opens with an ARC header line
    # (here: an ARC without its filedesc block); every such record got a new random id on each run.
    arc = (warc_dir / "warcio" / "example.arc").read_bytes()
    mixed = tmp_path / "mixed.warc"
    mixed.write_bytes(arc.split(b"\n\n", 1)[1])
    runs = [_ingest_one(str(mixed), tmp_path / name) for name in ("a", "b")]
    ids = [[r["id"] for r in kept + rejected] for _, kept, rejected in runs]
    assert ids[0] and ids[0] == ids[1]


def test_gzip_members_inflate_with_isal_and_read_as_with_zlib(warc_dir, tmp_path, monkeypatch):
    import isal.isal_zlib
    import warcio.bufferedreaders as plain

    from pipeline_lib.crawl import warc

    made = []
    real = isal.isal_zlib.decompressobj
    monkeypatch.setattr(isal.isal_zlib, "decompressobj", lambda *a: made.append(a) or real(*a))
    src = str(warc_dir / "resiliparse" / "warcfile.warc.gz")
    _, fast_kept, fast_rejected = _ingest_one(src, tmp_path / "isal")
    assert len(made) > 16  # one inflater per gzip member
    monkeypatch.setattr(warc, "_RecordReader", plain.DecompressingBufferedReader)
    monkeypatch.setattr(warc, "_PayloadReader", plain.BufferedReader)
    monkeypatch.setattr(warc, "_ChunkedPayloadReader", plain.ChunkedDataReader)
    _, kept, rejected = _ingest_one(src, tmp_path / "zlib")
    assert len(kept) == 16 and fast_kept == kept and fast_rejected == rejected

@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-A: 1\r\n\r\n<p>body</p>",
    b"HTTP/1.0 404\nContent-Type: text/html\n\nnot found",  # LF only, no reason phrase
    b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\n\tthree\r\nNoColonHere\r\n  dropped\r\nA : b \r\n\r\nrest",
    b"\r\nContent-Type: text/html\r\n\r\nbody",  # blank status line: only that line is the head
    b"HTTP/1.1 200 OK\r\nServer: caf\xe9\r\nContent-Type: text/html\r\n\r\n\xe9t\xe9",  # ISO-8859-1 header
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n",  # no blank line: all head, no payload
    b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n \t \r\npayload after a whitespace-only line",
    b"HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n continued-first\r\nContent-Type: text/html\r\n\r\nx",
])
def test_http_head_splits_like_warcio(head):
    import io

    from warcio.recordloader import ArcWarcRecordLoader
    from warcio.statusandheaders import StatusAndHeadersParser

    from pipeline_lib.crawl.warc import http_head

    stream = io.BytesIO(head)
    theirs = StatusAndHeadersParser(ArcWarcRecordLoader.HTTP_TYPES, verify=False).parse(stream)
    status, headers, payload_start = http_head(head)
    assert (status, headers) == (theirs.get_statuscode(), theirs.headers)
    assert head[payload_start:] == stream.read()


@pytest.mark.parametrize("body,content_type", [
    (b"<html>plain ascii</html>", "text/html; charset=iso-8859-1"),
    ("<html>caf\u00e9 \u2603</html>".encode(), "text/html"),  # undeclared UTF-8
    ("<html>\u0421\u0442\u0440\u0430\u0442\u0435\u0433\u0438\u044f</html>".encode("cp1251"),
     "text/html; charset=windows-1251"),
    ('<meta charset="gb2312"><p>\u4e2d\u6587</p>'.encode("gb18030"), "text/html"),  # <meta> only
    ("<p>caf\u00e9 \u201cq\u201d</p>".encode("cp1252"), "text/html; charset=utf-8"),  # wrong declaration
    ("<p>x</p>".encode("utf-16"), "text/html"),  # BOM
    (b"<html>ascii under EBCDIC</html>", "text/html; charset=cp037"),  # not ASCII-compatible
    (b"<html>ascii, utf-16 label</html>", "text/html; charset=utf-16"),  # ignored label
    (b"<p>\xed\xa0\x80 lone surrogate</p>", "text/html"),  # invalid UTF-8
    ('<meta charset="euc-jp"><p>\u30d8\u30c3\u30c9</p>'.encode("euc-jp"), "text/html; charset=bogus-label"),
    # Pages larger than the 16 KB slices they are checked in, with multibyte characters cut by slice ends:
    (("<p>\u4e2d\u6587 x" * 9000).encode("gb18030"), "text/html; charset=gb2312"),
    (("<p>\u0421\u0442 \u2603" * 9000).encode("utf-8"), "text/html"),
    (("<p>\u2603" * 9000).encode("utf-8") + b"\xff tail", "text/html; charset=utf-8"),  # invalid past slice 1
    (("<p>\u2603" * 9000).encode("utf-8") + b"\xe2\x98", "text/html"),  # cut character at the very end
    (("\u0421\u0442\u0440 " * 20000).encode("cp1251"), "text/html; charset=windows-1251"),
    (("caf\u00e9 " * 5000).encode("cp1252") + b"\x81\x8d\x8f\x90\x9d", "text/html; charset=iso-8859-1"),  # C1 bytes
    ('<meta charset="utf-8"><p>\u041c\u043e\u0441\u043a\u0432\u0430</p>'.encode(), "text/html; charset=iso-8859-1"),
])
def test_pages_stored_as_utf8_bytes_hold_the_decoded_text(body, content_type):
    from pipeline_lib.crawl.encoding import decode_html
    from pipeline_lib.crawl.warc import html_as_utf8

    stored = html_as_utf8(body, content_type)
    assert stored.decode("utf-8") == decode_html(body, content_type)[0]


@pytest.mark.parametrize("label", ["hex", "base64", "undefined", "unicode_escape", "punycode"])
def test_a_charset_label_naming_no_text_codec_still_gives_a_page(label):
    from pipeline_lib.crawl.warc import html_as_utf8

    body = f'<meta charset="{label}"><p>caf\u00e9 \\ud800</p>'.encode()
    text = html_as_utf8(body, "text/html").decode("utf-8")  # valid UTF-8, so Arrow takes it
    assert text.startswith("<meta") and "</p>" in text


def _chunked(data: bytes, size: int = 7) -> bytes:
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize("compress", [True, False])
def test_payload_encodings_and_head_outcomes_in_a_written_warc(tmp_path, compress):
    import io
    import zlib

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    html = "<html><p>caf\u00e9 \u2603 page</p></html>".encode()
    cases = {  # name: (status, headers, payload as stored)
        "gzip": ("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], gzip.compress(html)),
        "chunked-gzip": ("200 OK", [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked"),
                                    ("Content-Encoding", "gzip")], _chunked(gzip.compress(html))),
        "deflate": ("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "deflate")], zlib.compress(html)),
        "folded": ("200 OK", [("X-Long", "a\r\n b"), ("Content-Type", "text/html")], html),
        "server-error": ("500 Oops", [("Content-Type", "text/html")], html),
        "pdf": ("200 OK", [("Content-Type", "application/pdf")], b"%PDF-1.4"),
        "blank": ("200 OK", [("Content-Type", "text/html")], b"  \r\n "),
    }
    path = tmp_path / ("made.warc.gz" if compress else "made.warc")
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=compress)
        for name, (status, headers, payload) in cases.items():
            head = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(f"http://example.com/{name}", "response",
                                                          payload=io.BytesIO(payload), http_headers=head))
    summary, kept, rejected = _ingest_one(str(path), tmp_path)
    assert {r["url"].rsplit("/", 1)[1]: r["html"] for r in kept} == {
        "gzip": html.decode(), "chunked-gzip": html.decode(), "deflate": html.decode(), "folded": html.decode()}
    assert '"x-long": "a b"' in next(r["headers"] for r in kept if r["url"].endswith("folded"))
    assert {r["url"].rsplit("/", 1)[1]: r["reject_reason"] for r in rejected} == {
        "server-error": "http_500", "pdf": "non_html", "blank": "empty_body"}


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=12) | st.text(max_size=6).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_utf8_check_follows_python_strict_utf8(body):
    from pipeline_lib.crawl.warc import _is_utf8

    try:
        body.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert _is_utf8(body) is valid
    for bad in (b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"\xff"):
        assert not _is_utf8(body + bad)


def test_utf8_check_of_whole_pages():
    from pipeline_lib.crawl.warc import _is_utf8

    page = ("<p>\u2603\u0421 " * 9000).encode("utf-8")  # 3- and 2-byte characters, 150 KB
    assert _is_utf8(page) and _is_utf8(b"") and _is_utf8(b"ascii")
    assert not _is_utf8(page + b"\xe2\x98")  # a character cut by the end of the page is not UTF-8
    assert not _is_utf8(page[:20000] + b"\xed\xa0\x80" + page[20000:])  # an encoded surrogate


def test_a_temp_file_from_a_killed_write_is_not_taken_for_an_older_layout(warc_dir, tmp_path):
    out = tmp_path / "00_crawl"
    (out / "_ingest_state").mkdir(parents=True)
    (out / "_ingest_state" / ".tmp-0f3a-layout.json").write_text("{")  # killed while writing the layout file
    summary = ingest_warc([str(warc_dir / "warcio" / "example.warc.gz")], shards.filesystem(str(out)), str(out))
    assert summary["pages"] == 1 and summary["shards_written"] == 1
