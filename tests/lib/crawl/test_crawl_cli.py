"""The three commands exactly as the README writes them."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawl2model.cli import main
from pipeline_lib import shards
from tests.lib.crawl.trap_site import serve_traps


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_crawl_command(tmp_path, capsys):
    out = str(tmp_path / "pages")
    with serve_traps() as (site, _second):
        seed = site.base + "/calendar/2024/1"
        rc = main(["crawl", "--seed", seed, "--seed", site.base + "/latin1", "--out", out, "--max-pages", "5",
                   "--max-depth", "2", "--delay", "0", "--allow-private", "127.0.0.1"])
        assert rc == 0
        summary = _last_json(capsys)
        paths = site.paths()
    assert summary["pages"] == 5 and summary["skipped"] is False
    assert "/latin1" in paths
    calendar = [p for p in paths if p.startswith("/calendar/")]
    assert len(calendar) == 4  # the budget of 5 = /latin1 + four calendar pages
    assert shards.verify_stage_dir(shards.filesystem(out), out) == []


def test_crawl_without_allow_private_refuses_localhost(tmp_path, capsys):
    out = str(tmp_path / "pages")
    with serve_traps() as (site, _second):
        assert main(["crawl", "--seed", site.base + "/", "--out", out, "--quiet"]) == 0
        assert site.paths() == []
    assert _last_json(capsys)["reasons"] == {"private_address": 1}


def test_a_rerun_that_allows_the_refused_host_crawls_it_once(tmp_path, capsys):
    # The refused seed stayed "seen": the rerun with --allow-private fetched nothing, and the one
    # after said the crawl was finished.
    out = str(tmp_path / "pages")
    with serve_traps() as (site, _second):
        seed = site.base + "/calendar/2024/1"
        assert main(["crawl", "--seed", seed, "--out", out, "--quiet"]) == 0
        assert _last_json(capsys)["reasons"] == {"private_address": 1} and site.paths() == []
        args = ["crawl", "--seed", seed, "--out", out, "--quiet", "--max-pages", "3", "--max-depth", "2",
                "--delay", "0", "--allow-private", "127.0.0.1"]
        assert main(args) == 0
        summary = _last_json(capsys)
        assert summary["pages"] == 3 and summary["skipped"] is False
        fetched = site.paths()
        assert main(args) == 0  # done: nothing fetched again
        assert _last_json(capsys)["skipped"] is True and site.paths() == fetched
    assert shards.verify_stage_dir(shards.filesystem(out), out) == []


def test_ingest_warc_command(shared_data, tmp_path, capsys):
    warc = shared_data / "warc" / "resiliparse" / "warcfile.warc.gz"
    if not warc.is_file():
        pytest.skip("shared WARC missing")
    out = str(tmp_path / "warc")
    assert main(["ingest-warc", str(warc), "--out", out]) == 0
    assert _last_json(capsys)["pages"] == 16


def test_ingest_warc_with_workers_writes_what_one_process_writes(shared_data, tmp_path, capsys):
    names = ["resiliparse/warcfile.warc.gz", "warcio/example.warc.gz", "resiliparse/clueweb-quirk.warc.gz"]
    files = [str(shared_data / "warc" / n) for n in names]
    if not all(shared_data.joinpath("warc", n).is_file() for n in names):
        pytest.skip("shared WARCs missing")
    summaries, checksums = [], []
    for workers in ("1", "3"):
        out = str(tmp_path / f"w{workers}")
        assert main(["ingest-warc", *files, "--out", out, "--records-per-shard", "10", "--workers", workers]) == 0
        summaries.append(_last_json(capsys))
        fs = shards.filesystem(out)
        checksums.append({n: shards.load_manifest(fs, out, n)["files"]["kept"]["sha256"]
                          for n in shards.list_shards(fs, out)})
    assert summaries[0] == summaries[1] and summaries[0]["files"] == 3 and summaries[0]["pages"] == 16 + 1 + 29
    assert checksums[0] == checksums[1]
    assert sorted({int(n.split("-")[1]) // 10_000 for n in checksums[0]}) == [0, 1, 2]  # a block per file


def test_ingest_docs_command(tmp_path, capsys):
    pq.write_table(pa.table({"body": ["one doc", "two doc"], "link": ["u1", "u2"]}), tmp_path / "in.parquet")
    out = str(tmp_path / "docs")
    assert main(["ingest-docs", str(tmp_path / "in.parquet"), "--out", out, "--text-column", "body",
                 "--url-column", "link"]) == 0
    assert _last_json(capsys)["docs"] == 2


def test_ingest_docs_says_when_documents_have_no_url(tmp_path, capsys):
    # A url column under another name gave every document an empty URL, and nothing said so.
    pq.write_table(pa.table({"text": ["one doc", "two doc"], "link": ["u1", "u2"]}), tmp_path / "in.parquet")
    assert main(["ingest-docs", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["counters"]["docs.rows_without_url"] == 2
    assert "note: 2 of 2 documents have no URL" in captured.err and "--url-column" in captured.err
    assert main(["ingest-docs", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "b"), "--url-column", "link"]) == 0
    assert "no URL" not in capsys.readouterr().err


def test_ingest_exits_1_naming_the_count_when_a_whole_input_file_failed(tmp_path, capsys):
    (tmp_path / "good.jsonl").write_text('{"text": "one doc", "url": "u1"}\n')
    out = str(tmp_path / "docs")
    # Before, a missing file was a line in the summary and exit 0: `ingest-docs ... && next-step` carried on.
    assert main(["ingest-docs", str(tmp_path / "good.jsonl"), str(tmp_path / "missing.jsonl"), "--out", out]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["docs"] == 1 and summary["files_failed"] == 1
    assert "1 of 2 input files failed" in captured.err
    assert f"{tmp_path / 'missing.jsonl'}: docs_unreadable: FileNotFoundError" in captured.err
    assert list(summary["failures"]) == [str(tmp_path / "missing.jsonl")]
    (tmp_path / "missing.jsonl").write_text('{"text": "two doc", "url": "u2"}\n')
    assert main(["ingest-docs", str(tmp_path / "good.jsonl"), str(tmp_path / "missing.jsonl"), "--out", out]) == 0
    again = _last_json(capsys)
    assert again["docs"] == 2 and again["files_skipped"] == 1 and again["files_failed"] == 0  # only the fixed file read


def test_refused_urls_are_retried_once_and_never_twice(tmp_path, capsys):
    # Two seeds refused, then allowed with a budget of one page: the other seed waits in the
    # saved queue. Requeued again by the next rerun, it was fetched twice (two kept rows, one id).
    out = str(tmp_path / "pages")
    with serve_traps() as (site, _second):
        base = ["crawl", "--seed", site.base + "/calendar/2024/1", "--seed", site.base + "/latin1", "--out", out,
                "--quiet", "--delay", "0", "--max-depth", "0"]
        assert main(base) == 0
        allow = base + ["--allow-private", "127.0.0.1"]
        assert main(allow + ["--max-pages", "1"]) == 0
        assert main(allow + ["--max-pages", "5"]) == 0
        pages = [p for p in site.paths() if p != "/robots.txt"]
    assert sorted(pages) == ["/calendar/2024/1", "/latin1"]
    # A redirect onto a private address that stays refused is not fetched again by every rerun:
    # only a host newly allowed is retried, once.
    escape = str(tmp_path / "escape")
    with serve_traps() as (site, _second):
        args = ["crawl", "--seed", site.base + "/escape", "--out", escape, "--quiet", "--delay", "0",
                "--allow-private", "127.0.0.1"]
        for _ in range(3):
            assert main(args) == 0
        assert [p for p in site.paths() if p != "/robots.txt"] == ["/escape"]
    capsys.readouterr()
