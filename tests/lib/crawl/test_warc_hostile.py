"""WARC ingest on hostile input: dates outside what Python's datetime holds, HTTP status codes no
int32 column holds, Content-Length values warcio cannot use, and listings that are not gzip.
Every record ends kept or rejected with one reason; the rest of the file is still read."""

from __future__ import annotations

import gzip
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crawl2model.cli import main
from pipeline_lib import shards
from pipeline_lib.crawl import ingest_warc
from pipeline_lib.crawl.warc import expand_inputs, parse_warc_date
from tests.lib.shard_support import read_stage

PAGE = b"<html><body><p>a fine page</p></body></html>"


def _record(uri: str, status: bytes = b"HTTP/1.1 200 OK", date: bytes = b"2020-01-01T00:00:00Z",
            length: bytes | None = b"") -> bytes:
    """One response record; ``length`` b"" writes the true Content-Length, None writes none."""
    block = status + b"\r\nContent-Type: text/html\r\n\r\n" + PAGE
    if length == b"":
        length = b"%d" % len(block)
    head = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Date: " + date + b"\r\nWARC-Record-ID: <urn:uuid:"
            + uri.encode() + b">\r\nWARC-Target-URI: " + uri.encode() + b"\r\n")
    if length is not None:
        head += b"Content-Length: " + length + b"\r\n"
    return head + b"\r\n" + block + b"\r\n\r\n"


def _write(path: Path, records: list[bytes], gzipped: bool = False) -> str:
    path.write_bytes(b"".join(gzip.compress(r, mtime=0) for r in records) if gzipped else b"".join(records))
    return str(path)


def _ingest(tmp_path: Path, path: str) -> tuple[dict, list[dict], list[dict]]:
    out = str(tmp_path / ("out-" + Path(path).name) / "00_crawl")
    fs = shards.filesystem(out)
    summary = ingest_warc([path], fs, out, records_per_shard=5)
    kept, rejected = read_stage(fs, out), read_stage(fs, out, "rejected")
    kept = kept.to_pylist() if kept is not None else []
    rejected = rejected.to_pylist() if rejected is not None else []
    assert summary["pages"] == len(kept)
    assert summary["rejected"] == len(rejected) == sum(summary["reasons"].values())
    return summary, kept, rejected


def test_dates_outside_the_datetime_range_are_null():
    assert parse_warc_date("9999-12-31T23:00:00-05:00") is None  # year 10000 in UTC
    assert parse_warc_date("0001-01-01T00:00:00+01:00") is None  # year 0 in UTC
    assert parse_warc_date("2020-08-08T17:27:41+02:00") == datetime(2020, 8, 8, 15, 27, 41, tzinfo=timezone.utc)


def test_a_date_without_a_zone_is_utc_whatever_the_machine_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_warc_date("2020-01-01T10:00:00") == datetime(2020, 1, 1, 10, tzinfo=timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert os.environ.get("TZ") != "America/New_York"


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_record_with_an_unconvertible_date_is_kept_with_a_null_date(tmp_path, gzipped):
    path = _write(tmp_path / ("d.warc.gz" if gzipped else "d.warc"), [
        _record("http://a/1", date=b"0001-01-01T00:00:00+01:00"),
        _record("http://a/2", date=b"9999-12-31T23:00:00-05:00"),
        _record("http://a/3")], gzipped)
    summary, kept, rejected = _ingest(tmp_path, path)
    assert rejected == []
    assert [(r["url"], r["fetched_at"]) for r in kept] == [
        ("http://a/1", None), ("http://a/2", None), ("http://a/3", datetime(2020, 1, 1, tzinfo=timezone.utc))]


def test_a_status_outside_100_to_999_is_a_bad_status_reject(tmp_path):
    huge = b"9" * 5000  # more digits than int() takes
    path = _write(tmp_path / "s.warc", [
        _record("http://a/1"),
        _record("http://a/2", status=b"HTTP/1.1 99999999999 Weird"),
        _record("http://a/3", status=b"HTTP/1.1 -5 Minus"),
        _record("http://a/4", status=b"HTTP/1.1 0 Zero"),
        _record("http://a/5", status=b"HTTP/1.1 " + huge + b" Long"),
        _record("http://a/6", status=b"HTTP/1.1 404 Not Found"),
        _record("http://a/7")])
    summary, kept, rejected = _ingest(tmp_path, path)
    assert [r["url"] for r in kept] == ["http://a/1", "http://a/7"]
    assert [(r["url"], r["reject_reason"], r["status"]) for r in rejected] == [
        ("http://a/2", "bad_status", None), ("http://a/3", "bad_status", None), ("http://a/4", "bad_status", None),
        ("http://a/5", "bad_status", None), ("http://a/6", "http_404", 404)]
    assert "99999999999" in rejected[0]["detail"] and "'-5'" in rejected[1]["detail"]
    assert summary["counters"]["warc.records_response"] == 7
    # No Content-Length in its own gzip member: read through warcio's own parser, same rule.
    gz = _write(tmp_path / "s.warc.gz", [_record("http://a/8", status=b"HTTP/1.1 99999999999 Weird", length=None)],
                gzipped=True)
    summary, kept, rejected = _ingest(tmp_path, gz)
    assert kept == [] and [(r["url"], r["reject_reason"]) for r in rejected] == [("http://a/8", "bad_status")]


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("length", [b"abc", b"-5"])
def test_a_bad_content_length_is_one_reject_for_its_record(tmp_path, gzipped, length):
    path = _write(tmp_path / ("l.warc.gz" if gzipped else "l.warc"),
                  [_record("http://a/1"), _record("http://a/2", length=length), _record("http://a/3")], gzipped)
    summary, kept, rejected = _ingest(tmp_path, path)
    assert [r["url"] for r in kept] == ["http://a/1", "http://a/3"]
    assert [r["reject_reason"] for r in rejected] == ["warc_bad_length"]
    assert repr(length.decode()) in rejected[0]["detail"]

    last = _write(tmp_path / ("last.warc.gz" if gzipped else "last.warc"),
                  [_record("http://a/1"), _record("http://a/2", length=length)], gzipped)
    summary, kept, rejected = _ingest(tmp_path, last)
    assert [r["url"] for r in kept] == ["http://a/1"] and [r["reject_reason"] for r in rejected] == ["warc_bad_length"]


@pytest.mark.parametrize("name", ["LICENSE.warcio", "page.html.gz", "notes.warc"])
def test_a_file_that_is_no_warc_fails_as_a_whole_quietly(tmp_path, name, capfd, shared_data):
    # warcio read a licence text's lines as ARC headers: 63 warc_bad_length rows, one "page", a
    # stderr warning per line, and the file recorded as read.
    text = (shared_data / "warc" / "warcio" / "LICENSE.warcio").read_bytes()
    data = gzip.compress(b"<html><body>hello</body></html>") if name.endswith(".gz") else text
    path = tmp_path / name
    path.write_bytes(data)
    summary, kept, rejected = _ingest(tmp_path, str(path))
    assert kept == [] and summary["files_failed"] == 1
    assert [r["reject_reason"] for r in rejected] == ["warc_unreadable"]
    assert "not a WARC or ARC file" in rejected[0]["detail"]
    assert "WARNING" not in capfd.readouterr().err


def test_warcios_notes_on_bad_records_stay_off_stderr(tmp_path, capfd):
    path = _write(tmp_path / "l.warc", [_record("http://a/1", length=b"abc"), _record("http://a/2")]
                  + [b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://a/with space\r\n"
                     b"Content-Type: application/http; msgtype=response\r\nContent-Length: 4\r\n\r\nxxxx\r\n\r\n"])
    summary, kept, rejected = _ingest(tmp_path, path)
    assert "warc_bad_length" in summary["reasons"]
    err = capfd.readouterr().err
    assert "Record not followed by newline" not in err and "Replacing spaces" not in err


# A metadata record whose Content-Length runs 25 bytes into the next record: warcio then fails on
# the rest of that record's head, which is lost (one warc_corrupt_record) and resynced past.
EATS_NEXT = b"WARC/1.0\r\nWARC-Type: metadata\r\nContent-Length: 30\r\n\r\nshort"


def test_a_corrupt_record_after_a_bad_length_is_still_a_reject(tmp_path):
    path = _write(tmp_path / "g.warc", [_record("http://a/1"), _record("http://a/2", length=b"abc"), EATS_NEXT,
                                        _record("http://a/3"), _record("http://a/4")])
    summary, kept, rejected = _ingest(tmp_path, path)
    assert [r["url"] for r in kept] == ["http://a/1", "http://a/4"]
    assert [r["reject_reason"] for r in rejected] == ["warc_bad_length", "warc_corrupt_record"]


def test_every_damaged_spot_in_a_file_is_resynced_past(tmp_path):
    path = _write(tmp_path / "two.warc", [_record("http://a/1"), EATS_NEXT, _record("http://a/2"),
                                          _record("http://a/3"), EATS_NEXT, _record("http://a/4"),
                                          _record("http://a/5")])
    summary, kept, rejected = _ingest(tmp_path, path)
    assert [r["url"] for r in kept] == ["http://a/1", "http://a/3", "http://a/5"]
    assert [r["reject_reason"] for r in rejected] == ["warc_corrupt_record", "warc_corrupt_record"]
    assert summary["counters"]["warc.resyncs"] == 2
    # The rejects name where the damage is: inside the record each metadata record ran into.
    data = Path(path).read_bytes()
    starts = [data.index(b"WARC-Target-URI: http://a/" + n) for n in (b"2", b"4")]
    offsets = [int(r["url"].rsplit("=", 1)[1]) for r in rejected]
    assert all(s - 200 < o < s + 200 for s, o in zip(starts, offsets))


def test_a_listing_that_is_not_gzip_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.paths.gz"
    bad.write_bytes(b"not gzip")
    truncated = tmp_path / "cut.paths.gz"
    truncated.write_bytes(gzip.compress(b"crawl-data/a.warc.gz\n" * 100)[:30])
    for listing in (bad, truncated):
        with pytest.raises(ValueError, match="not a readable WARC listing: " + str(listing)):
            expand_inputs([str(listing)])
    good = tmp_path / "good.paths"
    good.write_text("crawl-data/a.warc.gz\n")
    with pytest.raises(ValueError, match="listing range"):
        expand_inputs([f"{good}#x:y"])

    assert main(["ingest-warc", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: not a readable WARC listing: {bad}") and "Traceback" not in err


def test_a_record_without_a_content_length_does_not_swallow_the_records_after_it(tmp_path):
    # Uncompressed, nothing bounds such a record: warcio would read the rest of the file as its body.
    path = _write(tmp_path / "n.warc", [_record("http://a/1"), _record("http://a/2", length=None),
                                        _record("http://a/3"), _record("http://a/4")])
    summary, kept, rejected = _ingest(tmp_path, path)
    assert [r["url"] for r in kept] == ["http://a/1", "http://a/3", "http://a/4"]
    assert [(r["url"], r["reject_reason"], r["detail"]) for r in rejected] == [
        ("http://a/2", "warc_bad_length", "no Content-Length")]
    assert summary["counters"]["warc.records_without_length"] == 1
    # In its own gzip member the record is bounded by the member: it is read as it stands.
    summary, kept, rejected = _ingest(tmp_path, _write(tmp_path / "n.warc.gz", [
        _record("http://a/1"), _record("http://a/2", length=None), _record("http://a/3")], gzipped=True))
    assert [r["url"] for r in kept] == ["http://a/1", "http://a/2", "http://a/3"] and rejected == []
