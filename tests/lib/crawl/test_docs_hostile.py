"""Cleaned-document ingest on hostile input: damaged Parquet row groups, dates Python cannot hold,
lone surrogates and invalid UTF-8, JSON that json.loads refuses in unusual ways, damaged gzip,
and ``.json`` files holding one array. Every input row ends kept or rejected with a reason, and
no row is counted twice."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import zlib
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline_lib import shards
from pipeline_lib.crawl import docs, ingest_docs
from pipeline_lib.schema import doc_id
from tests.lib.shard_support import read_stage

UTC = timezone.utc


def _ingest(tmp_path: Path, inputs: list[Path], name: str = "out") -> tuple[dict, list[dict], list[dict]]:
    out = str(tmp_path / name / "02_extract")
    fs = shards.filesystem(out)
    summary = ingest_docs([str(p) for p in inputs], fs, out, records_per_shard=100)
    kept, rejected = read_stage(fs, out), read_stage(fs, out, "rejected")
    kept = kept.to_pylist() if kept is not None else []
    rejected = rejected.to_pylist() if rejected is not None else []
    assert summary["docs"] == len(kept)
    assert summary["rejected"] == len(rejected) == sum(summary["reasons"].values())
    ids = [r["id"] for r in kept + rejected]
    assert len(ids) == len(set(ids))  # no row twice
    return summary, kept, rejected


def _damage_row_group(path: Path, group: int) -> None:
    """Overwrite the middle of the first column's data in one row group."""
    col = pq.ParquetFile(path).metadata.row_group(group).column(0)
    data = bytearray(path.read_bytes())
    for j in range(col.data_page_offset + 40, col.data_page_offset + col.total_compressed_size - 40):
        data[j] = 0xAA
    path.write_bytes(bytes(data))


def test_a_damaged_row_group_loses_only_its_own_rows(tmp_path):
    path, n = tmp_path / "rg.parquet", 200
    pq.write_table(pa.table({"text": [f"document {i} " + "x" * 50 for i in range(3 * n)],
                             "url": [f"https://a.example/{i}" for i in range(3 * n)]}),
                   path, row_group_size=n, use_dictionary=False)
    _damage_row_group(path, 1)
    with pytest.raises(Exception):
        pq.ParquetFile(path).read_row_group(1)  # the damage is real

    summary, kept, rejected = _ingest(tmp_path, [path])
    assert [r["url"] for r in kept] == [f"https://a.example/{i}" for i in [*range(n), *range(2 * n, 3 * n)]]
    # The damage is in the file: its rows are lost, counted, and the file counts as read (it was
    # "failed as a whole" on every run before, so its partition could never be complete).
    assert [r["reject_reason"] for r in rejected] == ["docs_row_group_corrupt"]
    assert summary["files_failed"] == 0
    again, _, _ = _ingest(tmp_path, [path])
    assert again["files_skipped"] == 1
    assert f"row group 1: {n} of {n} rows lost" in rejected[0]["detail"]
    assert summary["counters"]["docs.rows_lost"] == n
    assert summary["counters"]["docs.rows_read"] + summary["counters"]["docs.rows_lost"] == 3 * n
    assert kept[n]["id"] == doc_id("docs", str(path), str(2 * n))  # rows keep the ids of their file positions


def test_dates_that_do_not_convert_become_null_not_a_lost_file(tmp_path):
    ns = tmp_path / "ns.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "fetched_at": pa.array(
        [1_600_000_000_000_000_001, None], pa.timestamp("ns"))}), ns)
    far = tmp_path / "far.parquet"
    pq.write_table(pa.table({"text": ["c", "d"], "fetched_at": pa.array(
        [1_600_000_000_000_000, 2 * 253_402_300_800_000_000], pa.timestamp("us", tz="UTC"))}), far)
    mars = tmp_path / "mars.parquet"
    pq.write_table(pa.table({"text": ["e"], "timestamp": pa.array([1000], pa.timestamp("ms", tz="Mars/Olympus"))}),
                   mars)
    days = tmp_path / "days.parquet"
    pq.write_table(pa.table({"text": ["f", "g"], "date": pa.array([date(2024, 1, 2), 3_000_000], pa.date32())}),
                   days)  # day 3,000,000 is in year 10183
    lines = tmp_path / "dates.jsonl"
    lines.write_text("".join(json.dumps({"text": t, "date": d}) + "\n" for t, d in [
        ("h", "9999-12-31T23:00:00-05:00"), ("i", "0001-01-01T00:00:00+01:00"), ("j", "2024-05-06T07:08:09+02:00")]))

    summary, kept, rejected = _ingest(tmp_path, [ns, far, mars, days, lines])
    assert rejected == []
    assert {r["text"]: r["fetched_at"] for r in kept} == {
        "a": datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC), "b": None,
        "c": datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC), "d": None,
        "e": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        "f": datetime(2024, 1, 2, tzinfo=UTC), "g": None,
        "h": None, "i": None, "j": datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)}
    assert summary["counters"]["docs.dates_unconverted"] == 4  # d, g, h, i: kept with a null date, counted


def test_epoch_numbers_in_seconds_or_milliseconds_are_dates(tmp_path):
    lines = tmp_path / "epochs.jsonl"
    lines.write_text("".join(json.dumps({"text": t, "timestamp": v}) + "\n" for t, v in [
        ("s", 1_700_000_000), ("ms", 1_700_000_000_123), ("f", 1_700_000_000.5), ("flag", True)]))
    summary, kept, _ = _ingest(tmp_path, [lines])
    dates = {r["text"]: r["fetched_at"] for r in kept}
    assert dates["s"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert dates["ms"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert dates["f"] == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    assert dates["flag"] is None and summary["counters"]["docs.dates_unconverted"] == 1


def test_lone_surrogates_and_invalid_utf8_are_repaired_not_a_crash(tmp_path):
    lines = tmp_path / "s.jsonl"
    lines.write_text('{"url":"a","text":"ok doc"}\n'
                     '{"url":"b","text":"broken emoji \\ud83d here"}\n'
                     '{"url":"c\\udc00","text":"bad url"}\n'
                     '{"url":"d","text":"a whole pair \\ud83d\\ude00"}\n')
    bad_utf8 = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"text": pa.array([b"fine", b"bad \xff byte"], pa.binary()).view(pa.string())}),
                   bad_utf8)

    summary, kept, rejected = _ingest(tmp_path, [lines, bad_utf8])
    assert rejected == []
    assert [(r["url"], r["text"]) for r in kept][:4] == [
        ("a", "ok doc"), ("b", "broken emoji \ufffd here"), ("c\ufffd", "bad url"), ("d", "a whole pair \U0001F600")]
    assert [r["text"] for r in kept][4:] == ["fine", "bad \ufffd byte"]
    assert summary["counters"]["docs.invalid_unicode_repaired"] == 3


def test_lines_json_refuses_unusually_are_bad_json_rows(tmp_path):
    lines = tmp_path / "hostile.jsonl"
    lines.write_text('{"url":"a","text":"ok"}\n'
                     + "[" * 100_000 + "]" * 100_000 + "\n"  # RecursionError
                     + '{"url":"b","text":"x","n":' + "9" * 5000 + "}\n"  # over 4300 digits: ValueError
                     + '{"url":"c","text":"ok too"}\n')
    summary, kept, rejected = _ingest(tmp_path, [lines])
    assert [r["url"] for r in kept] == ["a", "c"]
    assert [(r["reject_reason"], r["detail"].split(":")[0]) for r in rejected] == [
        ("bad_json", "RecursionError"), ("bad_json", "ValueError")]
    assert summary["counters"]["docs.rows_read"] == 4


def _gzip_broken_after(raw: bytes) -> bytes:
    """A gzip stream that holds ``raw`` and then a deflate block of an invalid type (zlib.error)."""
    co = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = co.compress(raw) + co.flush(zlib.Z_FULL_FLUSH) + b"\x07\xff\xff\xff" * 4
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body


def test_damaged_deflate_keeps_the_rows_read_and_is_a_reason(tmp_path):
    rows = [{"url": f"u{i}", "text": hashlib.sha256(str(i).encode()).hexdigest() * 4} for i in range(3000)]
    raw = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    start = tmp_path / "start.jsonl.gz"
    damaged = bytearray(gzip.compress(raw, mtime=0))
    damaged[20] ^= 0xFF  # zlib.error on the first block
    start.write_bytes(bytes(damaged))
    middle = tmp_path / "middle.jsonl.gz"
    middle.write_bytes(_gzip_broken_after(raw))

    summary, kept, rejected = _ingest(tmp_path, [start, middle])
    assert [r["reject_reason"] for r in rejected] == ["docs_corrupt", "docs_corrupt"]
    assert all("error" in r["detail"] for r in rejected)
    assert 0 < len(kept) <= len(rows)
    assert [r["url"] for r in kept] == [r["url"] for r in rows[:len(kept)]]  # what was read before the damage
    assert summary["counters"]["docs.rows_read"] == len(kept)


def test_an_exception_building_a_row_rejects_that_row(tmp_path, monkeypatch):
    real = docs._as_datetime

    def fussy(value):
        if value == "explode":
            raise RuntimeError("a value nobody foresaw")
        return real(value)

    monkeypatch.setattr(docs, "_as_datetime", fussy)
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps({"url": u, "text": "t", "date": d}) + "\n"
                             for u, d in [("a", "2024-01-01"), ("b", "explode"), ("c", None)]))
    summary, kept, rejected = _ingest(tmp_path, [lines])
    assert [r["url"] for r in kept] == ["a", "c"]
    assert [(r["url"], r["reject_reason"]) for r in rejected] == [(f"{lines}#row=1", "bad_row")]
    assert "RuntimeError: a value nobody foresaw" in rejected[0]["detail"]


def test_a_json_file_holding_an_array_is_one_row_per_element(tmp_path, monkeypatch):
    array = tmp_path / "arr.json"
    elements = [{"url": f"u{i}", "text": f"doc {i}"} for i in range(4)] + [7, "text"]
    array.write_text("\n  " + json.dumps(elements), encoding="utf-8-sig")  # a BOM, then blanks, then '['
    c4_style = tmp_path / "c4-train.00000-of-01024.json.gz"  # C4 names its JSONL files .json.gz
    with gzip.open(c4_style, "wt") as f:
        f.write("\n" * 70_000 + "".join(json.dumps({"url": f"c{i}", "text": f"c4 doc {i}"}) + "\n" for i in range(3)))
    broken = tmp_path / "broken.json"
    broken.write_text('[{"url": "x", "text": "cut"}, ')

    summary, kept, rejected = _ingest(tmp_path, [array, c4_style, broken])
    assert [r["url"] for r in kept] == ["u0", "u1", "u2", "u3", "c0", "c1", "c2"]
    assert [(r["url"], r["reject_reason"]) for r in rejected] == [
        (f"{array}#row=4", "bad_json"), (f"{array}#row=5", "bad_json"), (str(broken), "docs_corrupt")]
    assert summary["counters"]["docs.rows_read"] == 6 + 3

    monkeypatch.setattr(docs, "MAX_JSON_ARRAY_BYTES", 100)
    summary, kept, rejected = _ingest(tmp_path, [array], name="small-limit")
    assert kept == [] and [r["reject_reason"] for r in rejected] == ["docs_too_large"]
    assert "convert it to JSONL" in rejected[0]["detail"]


def test_a_json_file_holding_one_pretty_printed_object_is_one_document(tmp_path):
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps({"url": "p", "text": "one document,\nindented"}, indent=2))
    long_first_line = tmp_path / "long.json"  # JSONL whose first line outgrows the first 64 KiB read
    long_first_line.write_text(json.dumps({"url": "l0", "text": "x" * 100_000}) + "\n"
                               + json.dumps({"url": "l1", "text": "short"}) + "\n")
    long_pretty = tmp_path / "long-pretty.json"  # pretty-printed, its first line over the first read
    long_pretty.write_text('{"text": "' + "y" * 100_000 + '",\n "url": "lp"\n}\n')
    not_one_object = tmp_path / "lines.json"  # starts like an object, is neither one nor JSONL
    not_one_object.write_text('{"url": "a",\n "text": "b"}\n{"url": "c", "text": "d"}\n')

    summary, kept, rejected = _ingest(tmp_path, [pretty, long_first_line, long_pretty, not_one_object])
    assert [(r["url"], r["text"]) for r in kept] == [("p", "one document,\nindented"), ("l0", "x" * 100_000),
                                                     ("l1", "short"), ("lp", "y" * 100_000), ("c", "d")]
    assert [(r["url"], r["reject_reason"]) for r in rejected] == [
        (f"{not_one_object}#row=0", "bad_json"), (f"{not_one_object}#row=1", "bad_json")]


def test_a_cut_short_json_gz_with_a_long_first_line_keeps_the_rows_read(tmp_path):
    """C4-style JSONL named .json.gz whose first document outgrows the first read: it is JSONL, read
    line by line, so a download cut short keeps what came before the damage."""
    lines = [json.dumps({"url": "l0", "text": "x" * 100_000})] + \
        [json.dumps({"url": f"l{i}", "text": f"doc {i} " * 50}) for i in range(1, 2000)]
    packed = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "c4-cut.json.gz"
    cut.write_bytes(packed[: len(packed) * 3 // 4])
    summary, kept, rejected = _ingest(tmp_path, [cut])
    assert len(kept) > 1000 and kept[0]["url"] == "l0"
    assert [r["reject_reason"] for r in rejected] == ["docs_corrupt"]


def test_a_jsonl_file_cut_inside_its_last_line_fails_and_is_read_again_once_whole(tmp_path):
    # A partial download: the unfinished last line was one bad_json row, the file was recorded as
    # read, and the rest of it never arrived.
    path = tmp_path / "part.jsonl"
    whole = "".join(json.dumps({"url": f"u{i}", "text": f"document {i}"}) + "\n" for i in range(3))
    path.write_text(whole[:-12])
    summary, kept, rejected = _ingest(tmp_path, [path])
    assert [r["url"] for r in kept] == ["u0", "u1"]
    assert [r["reject_reason"] for r in rejected] == ["docs_corrupt"] and "cut short after row 2" in rejected[0]["detail"]
    assert summary["files_failed"] == 1
    path.write_text(whole)
    summary, kept, rejected = _ingest(tmp_path, [path])
    assert [r["url"] for r in kept] == ["u0", "u1", "u2"] and rejected == [] and summary["files_failed"] == 0
    # A complete file whose last line has no newline but is whole JSON is fine as it is.
    path.write_text(whole.rstrip("\n"))
    summary, kept, _ = _ingest(tmp_path, [path], name="no-final-newline")
    assert [r["url"] for r in kept] == ["u0", "u1", "u2"] and summary["files_failed"] == 0


class _Throttled(io.RawIOBase):
    """A Parquet file whose middle cannot be read for now: s3fs raises throttling (SlowDown, 503)
    as a builtin OSError with an errno, the botocore error as its cause."""

    def __init__(self, data: bytes, bad: range):
        self.data, self.bad = io.BytesIO(data), bad

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, *args):
        return self.data.seek(*args)

    def tell(self):
        return self.data.tell()

    def readinto(self, buf):
        if self.data.tell() in self.bad:
            e = OSError(errno.EBUSY, "SlowDown: please reduce your request rate")
            e.__cause__ = RuntimeError("botocore ClientError")
            raise e
        chunk = self.data.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


def test_a_row_group_that_cannot_be_read_for_now_fails_the_file_not_its_rows_for_good(tmp_path):
    # Counted as damage, the rows were lost for good and the file recorded as read.
    from collections import Counter

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"document {i} " + "x" * 50 for i in range(600)]}), path,
                   row_group_size=200, use_dictionary=False)
    group = pq.ParquetFile(path).metadata.row_group(1).column(0)
    reader = docs._DocReader("text", "url")
    rows = list(reader._parquet("s3://bucket/t.parquet", _Throttled(path.read_bytes(), range(
        group.data_page_offset, group.data_page_offset + group.total_compressed_size)), Counter()))
    assert [r["reject_reason"] for kind, r in rows if kind == "rejected"] == ["docs_unreadable"]
    assert sum(kind == "kept" for kind, _ in rows) == 400


def test_a_finished_jsonl_file_whose_last_line_is_malformed_is_one_bad_row(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text('{"url": "u1", "text": "one"}\n{"text": "last", "url": "u2",}')  # a trailing comma
    summary, kept, rejected = _ingest(tmp_path, [path])
    assert [r["url"] for r in kept] == ["u1"] and [r["reject_reason"] for r in rejected] == ["bad_json"]
    assert summary["files_failed"] == 0
