"""The crawler against a real trap site: every claim is checked against the server's request log."""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa
import pytest

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.crawl import run_crawl
from tests.lib.crawl.trap_site import BIG_PAGE_BYTES, GZIP_TEXT, LATIN1_TEXT, SJIS_TEXT, serve_traps
from tests.lib.shard_support import read_stage

MAX_PAGES = 30


def _cfg(seed: str, **over):
    crawl = {"seeds": [seed], "max_pages": MAX_PAGES, "max_depth": 100, "delay_seconds": 0.0, "concurrency": 2,
             "connect_timeout": 1.0, "read_timeout": 1.0, "total_timeout": 1.5, "max_body_bytes": 1_000_000,
             "max_redirects": 5, "max_retries": 1, "max_retry_wait": 3.0, "pages_per_shard": 7,
             "allow_private_hosts": ["127.0.0.1"]}
    crawl.update(over)
    return parse_config({"crawl": crawl})


@pytest.fixture(scope="module")
def trap_crawl(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("crawl") / "00_crawl")
    with serve_traps() as (site, second):
        fs = shards.filesystem(out_dir)
        summary = run_crawl(_cfg(site.base + "/"), fs, out_dir)
        yield {"site": site, "second": second, "summary": summary, "fs": fs, "out_dir": out_dir,
               "kept": read_stage(fs, out_dir, "kept"), "rejected": read_stage(fs, out_dir, "rejected")}


def _reason_of(rejected: pa.Table, path_suffix: str) -> str:
    rows = [r for r in rejected.to_pylist() if r["url"].endswith(path_suffix)]
    assert len(rows) == 1, f"{path_suffix}: {rows}"
    return rows[0]["reject_reason"]


def test_no_request_to_disallowed_paths_or_other_addresses(trap_crawl):
    paths = trap_crawl["site"].paths()
    assert not [p for p in paths if p.startswith("/private") or p.startswith("/hidden")]
    assert trap_crawl["second"].paths() == []  # 127.0.0.2 is private and not in allow_private_hosts
    assert paths.count("/robots.txt") == 1
    assert "/nofollow" not in paths


def test_page_budget_bounds_the_infinite_calendar(trap_crawl):
    paths = [p for p in trap_crawl["site"].paths() if p != "/robots.txt"]
    # Retries (429, 500) and redirect hops repeat or add paths; distinct page URLs stay in budget.
    page_requests = {p for p in paths if not p.startswith("/loop/b")}
    assert len(page_requests) <= MAX_PAGES
    assert any(p.startswith("/calendar/") for p in paths)
    summary = trap_crawl["summary"]
    assert summary["pages"] + summary["rejected"] == trap_crawl["kept"].num_rows + trap_crawl["rejected"].num_rows
    assert summary["shards"] >= 2 and summary["skipped"] is False


def test_each_page_is_fetched_once_despite_url_variants(trap_crawl):
    paths = trap_crawl["site"].paths()
    assert paths.count("/latin1") == 1
    counts = Counter(p for p in paths if p.startswith("/calendar/"))
    assert max(counts.values()) == 1


def test_traps_end_with_their_reasons(trap_crawl):
    rejected = trap_crawl["rejected"]
    expected = {"/loop/a": "redirect_loop", "/slow": "timeout", "/slow-headers": "timeout", "/big": "too_large", "/bomb": "too_large",
                "/binary": "binary_content", "/image.png": "non_html", "/missing": "http_404",
                "/error500": "http_500", "/escape": "private_address", "/private/secret": "robots_disallowed",
                "/hidden-page": "robots_disallowed", "/to-private": "robots_disallowed"}
    got = {suffix: _reason_of(rejected, suffix) for suffix in expected}
    assert got == expected
    assert set(rejected.column("reject_reason").to_pylist()) <= set(expected.values())


def test_a_redirect_out_of_scope_is_not_followed_even_to_an_allowed_address(tmp_path):
    # Both addresses may be fetched, but the crawl's scope is the seed's host (and, to keep it
    # short, "/" and "/escape"): the redirect of the linked /escape to the second site is refused
    # before any request reaches it.
    both = ["127.0.0.1", "127.0.0.2"]
    with serve_traps() as (site, second):
        out_dir = str(tmp_path / "linked" / "00_crawl")
        fs = shards.filesystem(out_dir)
        run_crawl(_cfg(site.base + "/", allow_private_hosts=both, include_patterns=[r"^http://[^/]+/(escape)?$"]),
                  fs, out_dir)
        assert "/escape" in site.paths()
        assert second.paths() == []
        assert _reason_of(read_stage(fs, out_dir, "rejected"), "/escape") == "out_of_scope"

        # A seed's own redirect is followed wherever it lands (example.com -> www.example.com),
        # so the same redirect from a seed reaches the second site.
        out_seed = str(tmp_path / "seed" / "00_crawl")
        run_crawl(_cfg(site.base + "/escape", allow_private_hosts=both), shards.filesystem(out_seed), out_seed)
        assert second.paths() == ["/robots.txt", "/stolen"]


def test_retries_only_what_can_succeed(trap_crawl):
    paths = trap_crawl["site"].paths()
    assert paths.count("/ratelimited") == 2  # 429 + Retry-After, then success
    assert paths.count("/error500") == 2  # max_retries=1
    assert paths.count("/missing") == 1  # 404 is final
    log = trap_crawl["site"].log
    t429 = [e["t"] for e in log if e["path"] == "/ratelimited"]
    assert t429[1] - t429[0] >= 0.95  # the server's own clock: Retry-After: 1 was honoured
    kept_urls = trap_crawl["kept"].column("url").to_pylist()
    assert any(u.endswith("/ratelimited") for u in kept_urls)


def test_trickling_servers_are_cut_off(trap_crawl):
    # Each trickle would take 40 s; the server itself saw the crawler hang up before the end.
    site = trap_crawl["site"]
    for _ in range(100):  # the server notices on its next write, at most one trickle interval later
        if set(site.trickle_state.values()) == {"client_hung_up"}:
            break
        time.sleep(0.05)
    assert site.trickle_state == {"/slow": "client_hung_up", "/slow-headers": "client_hung_up"}


def test_size_caps_stop_reading(trap_crawl):
    # The server could not push the whole 20 MB page: the crawler hung up after its cap.
    assert trap_crawl["site"].big_bytes_sent < BIG_PAGE_BYTES // 2


def test_charsets_decode_to_correct_unicode(trap_crawl):
    pages = {r["url"].rsplit("/", 1)[1]: r for r in trap_crawl["kept"].to_pylist()}
    assert LATIN1_TEXT in pages["latin1"]["html"]
    assert SJIS_TEXT in pages["sjis"]["html"]
    assert GZIP_TEXT in pages["gzipped"]["html"]
    assert pages["latin1"]["source"] == "crawl" and pages["latin1"]["status"] == 200


def test_manifests_are_valid_and_count_rows(trap_crawl):
    fs, out_dir = trap_crawl["fs"], trap_crawl["out_dir"]
    assert shards.verify_stage_dir(fs, out_dir) == []
    for name in shards.list_shards(fs, out_dir):
        m = shards.load_manifest(fs, out_dir, name)
        c = m["counters"]
        assert m["stage"] == "00_crawl"
        assert c["rows_in"] == c["kept"] + c["rejected"]


def test_user_agent_is_sent(trap_crawl):
    assert all(e["ua"].startswith("crawl2model/") for e in trap_crawl["site"].log)
