"""ExtractStage: HTML page rows in, document rows out; bad pages rejected with a reason."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline_lib.config import PipelineConfig
from pipeline_lib.extract import ExtractOptions, ExtractStage, ExtractorProcess, extract_page, prune_html
from pipeline_lib.schema import PAGE_SCHEMA

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

ARTICLE = """<!doctype html><html lang="en-US"><head><title>Tide pools of the north coast</title>
<meta name="date" content="2021-06-03"><script>var tracking = "SCRIPT_NOISE";</script>
<style>.x{color:red}</style></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article><h1>Tide pools of the north coast</h1>
<p>Tide pools form where the sea retreats twice a day and leaves water trapped among the rocks.
The animals that live there must survive heat, fresh rain and hungry birds until the tide returns.</p>
<p>Anemones close up to keep their water in, while crabs hide under the weed and wait for the cool
water to come back. Visitors should walk carefully and never lift the rocks they stand on.</p>
<p>The best time to visit is an hour before low tide, when the pools are calm and clear and the
light reaches the bottom, so that even small shrimp can be seen moving over the sand.</p>
<form><label>Subscribe FORM_NOISE</label><input name="email"></form>
<noscript>NOSCRIPT_NOISE please enable javascript</noscript></article>
<footer>Copyright 2021</footer></body></html>"""


def page_table(htmls: list[str | None], statuses: list[int] | None = None,
               content_types: list[str | None] | None = None) -> pa.Table:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    statuses = statuses or [200] * len(htmls)
    content_types = content_types or ["text/html; charset=utf-8"] * len(htmls)
    rows = [dict(id=f"p{i}", url=f"http://example.test/{i}", final_url=None, status=s,
                 content_type=ct, html=h, fetched_at=now, depth=0, source="test", headers="{}")
            for i, (h, s, ct) in enumerate(zip(htmls, statuses, content_types))]
    return pa.Table.from_pylist(rows, schema=PAGE_SCHEMA)


@pytest.fixture(scope="module")
def stage():
    return ExtractStage(PipelineConfig())


def test_article_becomes_a_document_without_boilerplate(stage):
    result = stage.process(page_table([ARTICLE]))
    assert result.rejected.num_rows == 0
    doc = result.kept.to_pylist()[0]
    assert "Anemones close up" in doc["text"] and "best time to visit" in doc["text"]
    for noise in ("SCRIPT_NOISE", "FORM_NOISE", "NOSCRIPT_NOISE", "color:red"):
        assert noise not in doc["text"]
    assert doc["title"] == "Tide pools of the north coast"
    assert doc["date"] == "2021-06-03"
    assert doc["language_hint"] == "en"
    assert doc["id"] == "p0" and doc["source"] == "test" and doc["fetched_at"] is not None
    assert "html" not in result.kept.column_names and "headers" not in result.kept.column_names


def test_bad_pages_are_rejected_with_reasons(stage):
    table = page_table([ARTICLE, "", None, "<html><body><div></div></body></html>", ARTICLE, ARTICLE, ARTICLE],
                       statuses=[200, 200, 200, 200, 404, 200, 200],
                       content_types=["text/html"] * 5 + ["application/pdf", "application/xhtml+xml"])
    result = stage.process(table)
    assert result.kept.column("id").to_pylist() == ["p0", "p6"]
    reasons = dict(zip(result.rejected.column("id").to_pylist(), result.rejected.column("reject_reason").to_pylist()))
    assert reasons == {"p1": "extract_empty", "p2": "extract_empty", "p3": "extract_empty", "p4": "extract_bad_status",
                       "p5": "extract_not_html"}
    assert result.kept.num_rows + result.rejected.num_rows == table.num_rows
    assert "html" not in result.rejected.column_names


def test_prune_drops_never_text_but_keeps_json_ld():
    html = ('<html lang="de"><body><nav>NAV</nav><script>a()</script><script type="application/ld+json">{"x":1}'
            '</script><svg><text>SVG</text></svg><form><p>kept</p><input value="INPUT"></form></body></html>')
    pruned, lang = prune_html(html)
    assert lang == "de"
    assert "a()" not in pruned and "SVG" not in pruned and "NAV" not in pruned and "INPUT" not in pruned
    assert '{"x":1}' in pruned and "kept" in pruned  # JSON-LD (metadata) and forms (ASP.NET pages) stay


def test_fast_mode_falls_back_when_it_keeps_a_lead_paragraph_without_the_div_body():
    """A <p> lead over a body of <div>s: fast mode kept the 650-character lead alone, where plain
    trafilatura's readability comparison finds the whole article."""
    import trafilatura

    intro = "<p>" + "This introduction paragraph summarises the story in a few words. " * 10 + "</p>"
    body = "".join(f"<div>Body paragraph {i}: the council voted on the new budget after a long debate about "
                   "schools, roads and the harbour, and residents spoke at length.</div>" for i in range(25))
    html = f"<html><head><title>T</title></head><body><div id='wrap'><h1>Budget</h1>{intro}<div class='story'>{body}</div></div></body></html>"
    got = extract_page(html, None, ExtractOptions())["text"]
    assert "Body paragraph 24" in got and len(got) >= len(trafilatura.extract(html, favor_precision=True)) * 0.9


def test_a_date_the_pruned_page_lost_is_read_from_the_page_as_it_came():
    para = "<p>" + "A long enough sentence of article text goes here. " * 20 + "</p>"
    footer = (f"<html><head><title>T</title></head><body><article>{para}<footer class='entry-footer'><time "
              "class='entry-date published' datetime='2019-05-03T10:00:00+00:00'>May 3, 2019</time></footer>"
              "</article></body></html>")
    script = (f"<html><head><title>T</title></head><body><article>{para}</article><script>window.__STATE__="
              '{"datePublished":"2018-07-09T10:00:00Z"}</script></body></html>')
    assert extract_page(footer, None, ExtractOptions())["date"] == "2019-05-03"
    assert extract_page(script, None, ExtractOptions())["date"] == "2018-07-09"


def test_timeout_kills_the_helper_and_the_next_page_still_works():
    helper = ExtractorProcess()
    try:
        # 300,000 nested divs: trafilatura needs minutes for this page; the helper gets 2 seconds.
        pathological = "<html><body>" + "<div><p>word " * 300_000 + "</body></html>"
        slow = helper.extract(pathological, None, ExtractOptions(), timeout=2)
        assert slow["reason"] == "extract_timeout"
        assert helper.proc is None  # killed, not left running
        ok = helper.extract(ARTICLE, None, ExtractOptions(), timeout=30)
        assert "Anemones" in ok["text"]
    finally:
        helper.close()


def test_a_helper_killed_mid_page_is_an_error_not_a_timeout():
    """The OOM killer or a crash in C: the page's reason must say so (it read as extract_timeout
    when the kernel had not yet marked the dead helper exited)."""
    import signal

    helper = ExtractorProcess()
    slow = "<html><body>" + "<div><p>word " * 300_000 + "</body></html>"
    try:
        for _ in range(3):
            if helper.proc is None:
                helper._start()
            pid = helper.proc.pid
            threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
            result = helper.extract(slow, None, ExtractOptions(), timeout=60)
            assert (result["reason"], result["detail"]) == ("extract_error", "helper process died")
    finally:
        helper.close()


def test_memory_blowup_is_an_error_and_the_helper_goes_on():
    helper = ExtractorProcess(memory_mb=50)
    try:
        big = "<html><body>" + "<p>some words here and there</p>" * 300_000 + "</body></html>"
        assert helper.extract(big, None, ExtractOptions(), timeout=60)["reason"] == "extract_error"
        ok = helper.extract(ARTICLE, None, ExtractOptions(), timeout=30)
        assert "Anemones" in ok["text"]
    finally:
        helper.close()


def test_stage_works_from_a_plain_thread(stage):
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=stage.process(page_table([ARTICLE, ""]))))
    thread.start()
    thread.join(120)
    assert out["r"].kept.num_rows == 1 and out["r"].rejected.num_rows == 1


def test_real_pages_extract(stage):
    if not (SHARED / "extraction").is_dir():
        pytest.skip("../shared/data/extraction not present")
    files = sorted((SHARED / "extraction").glob("*.html"))[:15]
    result = stage.process(page_table([f.read_text(encoding="utf-8", errors="replace") for f in files]))
    assert result.kept.num_rows >= 14
    assert all(len(t) > 200 for t in result.kept.column("text").to_pylist())


def test_timeout_holds_inside_a_spawned_pool_worker_through_the_shard_runner(tmp_path):
    """The production path: a spawn-context pool worker runs ``pipeline.run_stage_shard``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pyarrow.parquet as pq

    from pipeline_lib import pipeline, shards
    from pipeline_lib.config import parse_config
    from pipeline_lib.stage import StageResult, write_result

    cfg = parse_config({"run": {"data_root": str(tmp_path)}, "urlfilter": {"enabled": False},
                        "extract": {"timeout_seconds": 2}})
    run_dir = str(tmp_path / "run")
    crawl_dir = pipeline.stage_dir(run_dir, "crawl")
    fs = shards.filesystem(run_dir)
    name = shards.shard_name(0)
    pathological = "<html><body>" + "<div><p>word " * 300_000 + "</body></html>"
    table = page_table([pathological, ARTICLE])
    write_result(fs, crawl_dir, name, "00_crawl", table.num_rows, StageResult.keep_all(table), "test", [], 0.0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        summary = pool.submit(pipeline.run_stage_shard, pipeline.ConfigRef.of(cfg), run_dir, "extract", name).result(300)
    assert summary["rows_in"] == 2 and summary["kept"] == 1 and summary["rejected"] == 1
    out_dir = pipeline.stage_dir(run_dir, "extract")
    kept = pq.read_table(shards.data_path(out_dir, name)).to_pylist()
    rejected = pq.read_table(shards.rejected_path(out_dir, name)).to_pylist()
    assert kept[0]["id"] == "p1" and "Anemones" in kept[0]["text"]
    assert rejected[0]["id"] == "p0" and rejected[0]["reject_reason"] == "extract_timeout"
