"""Cleaned-document ingest: Parquet and JSONL(.gz) in, document shards out, bad rows with reasons."""

from __future__ import annotations

import gzip
import json
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_lib import shards
from pipeline_lib.crawl import ingest_docs
from pipeline_lib.crawl.docs import DOC_SCHEMA
from tests.lib.shard_support import read_stage


def _write_inputs(d: Path) -> list[str]:
    pq.write_table(pa.table({
        "content": ["A first cleaned document.", None, "   ", "Third one."],
        "link": ["https://a.example/1", "https://a.example/2", "https://a.example/3", None],
        "timestamp": ["2024-01-02T03:04:05Z"] * 4,
    }), d / "c4-like.parquet", row_group_size=2)
    with gzip.open(d / "fineweb-like.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"content": "Ein Dokument über Bäume.", "link": "https://b.example/"}) + "\n")
        f.write("{not json\n\n")
        f.write(json.dumps({"content": 42, "link": "https://b.example/n"}) + "\n")
        f.write(json.dumps(["a list"]) + "\n")
    (d / "plain.jsonl").write_text(json.dumps({"content": "plain line", "link": "https://c.example/"}) + "\n")
    return [str(d / "c4-like.parquet"), str(d / "fineweb-like.jsonl.gz"), str(d / "plain.jsonl")]


def _all(fs, out: str, which: str = "kept") -> list[dict]:
    table = read_stage(fs, out, which)
    return table.to_pylist() if table is not None else []


def test_docs_shards_have_the_document_schema_and_reasons(tmp_path):
    inputs = _write_inputs(tmp_path)
    out = str(tmp_path / "run" / "02_extract")
    fs = shards.filesystem(out)
    summary = ingest_docs(inputs, fs, out, text_column="content", url_column="link", records_per_shard=3)
    kept, rejected = _all(fs, out), _all(fs, out, "rejected")
    assert [r["text"] for r in kept] == ["A first cleaned document.", "Third one.", "Ein Dokument über Bäume.",
                                         "plain line"]
    assert {r["source"] for r in kept} == {"docs"}
    assert kept[0]["url"] == "https://a.example/1" and kept[0]["fetched_at"].year == 2024
    assert sorted(r["reject_reason"] for r in rejected) == ["bad_json", "bad_json", "missing_text", "missing_text",
                                                             "text_not_string"]
    assert summary["docs"] == 4 and summary["rejected"] == 5
    first = shards.read_verified(fs, out, shards.list_shards(fs, out)[0])
    assert first.schema.equals(DOC_SCHEMA)
    assert shards.load_manifest(fs, out, "part-00000")["stage"] == "02_extract"
    assert len({r["id"] for r in kept + rejected}) == 9

    stamps = {p: os.stat(p).st_mtime_ns for p in Path(out).rglob("*") if p.is_file()}
    again = ingest_docs(inputs, fs, out, text_column="content", url_column="link", records_per_shard=3)
    assert again["skipped"] is True and again["shards_written"] == 0
    assert stamps == {p: os.stat(p).st_mtime_ns for p in Path(out).rglob("*") if p.is_file()}


def test_missing_text_column_and_unknown_format_are_reasons(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "wrong.parquet")
    (tmp_path / "notes.csv").write_text("text\nhello\n")
    out = str(tmp_path / "docs")
    fs = shards.filesystem(out)
    summary = ingest_docs([str(tmp_path / "wrong.parquet"), str(tmp_path / "notes.csv")], fs, out)
    assert summary["reasons"] == {"docs_no_text_column": 1, "docs_unknown_format": 1}


def test_http_source(tmp_path):
    inputs = _write_inputs(tmp_path)
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        out = str(tmp_path / "from-http")
        fs = shards.filesystem(out)
        summary = ingest_docs([base + Path(p).name for p in inputs], fs, out, text_column="content",
                              url_column="link")
    finally:
        server.shutdown()
        server.server_close()
    assert summary["docs"] == 4


def test_parquet_over_http_from_a_server_without_range_requests(tmp_path):
    # python -m http.server answers every GET with the whole file; Parquet reads its footer first,
    # and fsspec refused: "The HTTP server doesn't appear to support range requests".
    texts = [f"document {i} " + "abcdef" * 150 for i in range(200)]
    pq.write_table(pa.table({"url": [f"https://a/{i}" for i in range(200)], "text": texts}),
                   tmp_path / "big.parquet", row_group_size=50, use_dictionary=False, compression="none")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = str(tmp_path / "from-http")
        summary = ingest_docs([f"http://127.0.0.1:{server.server_address[1]}/big.parquet"], shards.filesystem(out), out)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["files_failed"] == 0 and summary["docs"] == 200, summary
    assert read_stage(shards.filesystem(out), out).column("text").to_pylist() == texts


def test_a_wrong_text_column_fails_the_file_and_the_fixed_rerun_is_accepted(tmp_path):
    """JSONL with a wrong --text-column gave one missing_text reject per row, exit 0 and a file
    recorded as done; Parquet failed the file, but the rerun with the right column was refused
    ("ingested with reader ..."). Now both fail the file, and the fixed rerun reads it."""
    docs = [{"url": f"http://a/{i}", "text": f"doc {i}"} for i in range(5)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "c.json").write_text(json.dumps(docs))  # an array
    (tmp_path / "d.json").write_text(json.dumps(docs[0], indent=2))  # one pretty-printed document
    pq.write_table(pa.table({"url": ["http://b/0"], "text": ["doc b"]}), tmp_path / "b.parquet")
    for name, n in (("a.jsonl", 5), ("b.parquet", 1), ("c.json", 5), ("d.json", 1)):
        out = str(tmp_path / ("out-" + name) / "02_extract")
        fs = shards.filesystem(out)
        wrong = ingest_docs([str(tmp_path / name)], fs, out, text_column="body")
        assert wrong["reasons"] == {"docs_no_text_column": 1} and wrong["files_failed"] == 1 and wrong["docs"] == 0, name
        fixed = ingest_docs([str(tmp_path / name)], fs, out, text_column="text")
        assert fixed["files_failed"] == 0 and fixed["rejected"] == 0 and fixed["docs"] == n, name


def test_a_first_object_without_its_text_is_one_row_not_a_wrong_column(tmp_path):
    # Exporters drop null fields: the first object lacking "text" is that row's missing_text.
    docs = [{"url": "http://a/0", "title": "no text"}] + [{"url": f"http://a/{i}", "text": f"doc {i}"}
                                                           for i in range(1, 50)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = str(tmp_path / "out" / "02_extract")
    summary = ingest_docs([str(tmp_path / "a.jsonl")], shards.filesystem(out), out)
    assert summary["docs"] == 49 and summary["reasons"] == {"missing_text": 1} and summary["files_failed"] == 0
