"""The crawler's parts: URL normalisation, scope, charsets, frontier, address guard, robots modes."""

from __future__ import annotations

import codecs
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.crawl import run_crawl
from pipeline_lib.crawl.encoding import decode_html
from pipeline_lib.crawl.fetcher import Fetcher, FetchSettings, address_problem, parse_retry_after
from pipeline_lib.crawl.frontier import Frontier
from pipeline_lib.crawl.urls import Scope, normalize_url
from tests.lib.crawl.trap_site import serve_traps


@pytest.mark.parametrize("raw,expected", [
    ("HTTP://Example.COM:80/a/./b/../c#frag", "http://example.com/a/c"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("http://example.com/%7Euser/a%2fb", "http://example.com/~user/a%2Fb"),
    ("http://user:secret@example.com/", "http://example.com/"),
    ("http://example.com/a b?q=1 2", "http://example.com/a%20b?q=1%202"),
    ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ("mailto:someone@example.com", None),
    ("javascript:alert(1)", None),
    ("ftp://example.com/file", None),
    ("http://", None),
])
def test_normalize_url(raw, expected):
    assert normalize_url(raw) == expected


def test_relative_links_resolve_against_the_page():
    assert normalize_url("../x/./y", "http://h.example/a/b/c.html") == "http://h.example/a/x/y"
    assert normalize_url("//other.example/p", "https://h.example/") == "https://other.example/p"


@given(st.text(alphabet="abc/.%7E-_?=#", max_size=30))
def test_normalisation_is_idempotent(path):
    once = normalize_url("http://h.example/" + path)
    assert once is None or normalize_url(once) == once


def test_scope_rules():
    same = Scope("same_host", ["http://a.example/"])
    assert same.allows("http://a.example/x") and not same.allows("http://b.a.example/x")
    domains = Scope("domains", [], allowed_domains=["a.example"], exclude_patterns=[r"/private/"])
    assert domains.allows("https://www.a.example/") and not domains.allows("https://nota.example/")
    assert not domains.allows("https://a.example/private/1")
    only_blog = Scope("any", [], include_patterns=[r"/blog/"])
    assert only_blog.allows("http://x.example/blog/1") and not only_blog.allows("http://x.example/shop")


def test_charset_order_and_browser_aliases():
    latin = "naïve “quotes”".encode("cp1252")
    assert decode_html(latin, "text/html; charset=iso-8859-1") == ("naïve “quotes”", "cp1252")
    meta = '<meta http-equiv="Content-Type" content="text/html; charset=euc-jp"><p>日本</p>'.encode("euc-jp")
    assert "日本" in decode_html(meta, "text/html")[0]
    bom = codecs.BOM_UTF8 + "é".encode()
    assert decode_html(bom, "text/html; charset=iso-8859-1")[0] == "é"
    lying = "Привет, мир! Это страница.".encode("utf-8")
    assert decode_html(lying, "text/html; charset=nonsense-charset")[0] == "Привет, мир! Это страница."
    # A byte windows-1252 leaves undefined is a C1 control, as in browsers: before, it voided the
    # declaration and detection read the whole page as mac-latin2 ("cafť").
    stray = ("<meta charset=iso-8859-1><p>" + "Le café à côté de l'église. " * 30).encode("cp1252") + b"\x81</p>"
    text, codec = decode_html(stray, "text/html")
    assert codec == "cp1252" and "Le café à côté de l'église." in text and text.endswith("\x81</p>")
    # ... but a UTF-8 page behind the common default "charset=ISO-8859-1" header stays UTF-8 ("с" is D1 81).
    russian = '<meta charset="utf-8"><p>Москва — столица России.</p>'.encode()
    assert decode_html(russian, "text/html; charset=ISO-8859-1") == (russian.decode(), "utf-8")


def test_utf8_with_a_few_bad_bytes_stays_utf8():
    """One stray byte made the declaration "wrong" and detection read the whole page as cp932."""
    fr = "<p>Le café à côté de l'église, où l'on mange des crêpes.</p>\n" * 20
    ru = "<p>Москва - столица России, крупнейший город страны.</p>\n" * 20
    for body, content_type in [(fr.encode() + b"\xa0</p>", "text/html; charset=utf-8"),
                               (b'<meta charset="utf-8">' + fr.encode() + b"\xff", "text/html"),
                               (ru.encode() + b"\xd0", "text/html"),  # undeclared, a character cut short
                               (ru.encode()[:500] + b"\xff" + ru.encode()[500:], "text/html; charset=utf-8")]:
        text, codec = decode_html(body, content_type)
        assert codec == "utf-8" and text.count("\ufffd") == 1
        assert text.replace("\ufffd", "") in (body.decode("utf-8", "ignore"),)
    # Mostly bad bytes is a wrong declaration, left to detection (not read as UTF-8 full of U+FFFD).
    latin = ("<p>" + "Le café à côté de l'église. " * 30).encode("cp1252")
    text, codec = decode_html(latin, "text/html; charset=utf-8")
    assert codec != "utf-8" and "\ufffd" not in text


@pytest.mark.parametrize("head,label", [
    (b'<!-- old: <meta charset="iso-8859-5"> --><meta charset="utf-8">', "utf-8"),
    (b'<meta name="description" content="we use charset=koi8-r"><meta charset="utf-8">', "utf-8"),
    (b'<meta http-equiv="Content-Type" content="text/html; charset=euc-jp">', "euc-jp"),
    (b"<META HTTP-EQUIV='content-type' CONTENT='text/html;charset=Shift_JIS'>", "Shift_JIS"),
    (b'<meta charset=windows-1251 />', "windows-1251"),
    (b'<meta content="text/html; charset=koi8-r">', None),  # no http-equiv: not a declaration
    (b"<!-- <meta charset=koi8-r>", None),  # an unclosed comment hides the rest
    (b"<p>charset=utf-8</p>", None),
])
def test_meta_charset_as_a_browser_prescan_finds_it(head, label):
    from pipeline_lib.crawl.encoding import charset_from_meta

    assert charset_from_meta(head) == label


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("url,reason", [
    ("http://10.0.0.1/", "private_address"),
    ("http://169.254.169.254/latest/meta-data/", "private_address"),  # cloud metadata
    ("http://100.64.0.1/", "private_address"),  # carrier-grade NAT
    ("http://[::1]/", "private_address"),
    ("http://[::ffff:127.0.0.1]/", "private_address"),
    ("http://0.0.0.0/", "private_address"),
    ("http://8.8.8.8/", None),
    ("file:///etc/passwd", "unsupported_scheme"),
])
def test_address_rules(url, reason):
    assert address_problem(url, ()) == reason


def test_allow_list_is_exact():
    assert address_problem("http://127.0.0.1:1/", ("127.0.0.1",)) is None
    assert address_problem("http://localhost:1/", ("127.0.0.1",)) == "private_address"


def test_socket_guard_refuses_private_peer_even_after_the_name_check():
    # Skip the name check (as if DNS changed its answer after it): the socket-level guard still refuses.
    with serve_traps() as (site, _second):
        fetcher = Fetcher(FetchSettings(allow_private_hosts=()))
        result = fetcher._fetch_one(site.base + "/", site.base + "/", accept_any_type=False)
        # https: the peer is checked right after TCP connect, before any TLS handshake or request.
        tls_url = site.base.replace("http://", "https://") + "/"
        tls_result = fetcher._fetch_one(tls_url, tls_url, accept_any_type=False)
        fetcher.close()
        assert result.reason == "private_address" and tls_result.reason == "private_address"
        assert site.paths() == []


def test_frontier_round_robin_dedup_and_state():
    f = Frontier()
    for u in ["http://a.example/1", "http://a.example/2", "http://b.example/1", "http://a.example/1"]:
        f.add(u, 0)
    assert f.queued() == 3
    first = f.pop_ready()
    second = f.pop_ready()
    assert {first[0], second[0]} == {"http://a.example", "http://b.example"}
    assert f.pop_ready() is None  # both hosts busy: one request in flight per host
    f.release(first[0], delay=60.0)
    assert f.pop_ready() is None  # politeness delay
    state = f.to_state(inflight=[(second[1], 0)])
    g = Frontier.from_state(state)
    assert g.visited == f.visited and g.queued() == 2
    assert not g.add("http://a.example/2", 1)


def _robots_crawl(tmp_path, mode: str, max_pages: int = 4):
    with serve_traps() as (site, _second):
        site.robots_mode = mode
        cfg = parse_config({"crawl": {"seeds": [site.base + "/calendar/2024/1"], "max_pages": max_pages,
                                      "max_depth": 100, "max_retries": 1, "connect_timeout": 1.0,
                                      "read_timeout": 1.0, "total_timeout": 2.0, "robots_unavailable_retries": 0,
                                      "allow_private_hosts": ["127.0.0.1"]}})
        out = str(tmp_path / mode)
        summary = run_crawl(cfg, shards.filesystem(out), out)
        return summary, site.log


def test_robots_5xx_disallows_the_host(tmp_path):
    summary, log = _robots_crawl(tmp_path, "500")
    assert [e["path"] for e in log] == ["/robots.txt", "/robots.txt"]  # one retry, then no page requests
    assert summary["reasons"] == {"robots_unavailable": 1} and summary["pages"] == 0


def test_robots_unavailable_seconds_is_how_long_a_5xx_robots_holds_the_host(tmp_path):
    def robots_requests(ttl: float) -> int:
        with serve_traps() as (site, _second):
            site.robots_mode = "500"
            cfg = parse_config({"crawl": {"seeds": [site.base + "/calendar/2024/1", site.base + "/calendar/2024/2"],
                                          "max_retries": 0, "concurrency": 1, "robots_unavailable_seconds": ttl,
                                          "robots_unavailable_retries": 0, "allow_private_hosts": ["127.0.0.1"]}})
            out = str(tmp_path / f"ttl-{ttl}")
            summary = run_crawl(cfg, shards.filesystem(out), out)
            assert summary["reasons"] == {"robots_unavailable": 2} and summary["pages"] == 0
            return [e["path"] for e in site.log].count("/robots.txt")

    assert robots_requests(60.0) == 1  # the second seed waits out the hold without asking again
    assert robots_requests(0.0) >= 2  # no hold: the host's robots.txt is asked again for the second seed


def test_pages_wait_for_a_failing_robots_txt_and_are_fetched_once_it_recovers(tmp_path):
    with serve_traps() as (site, _second):
        site.robots_mode = "500-once"  # the server heals after its first answer
        cfg = parse_config({"crawl": {"seeds": [site.base + "/calendar/2024/1", site.base + "/calendar/2024/2"],
                                      "max_retries": 0, "concurrency": 1, "max_depth": 0,
                                      "robots_unavailable_seconds": 0.5, "robots_unavailable_retries": 2,
                                      "allow_private_hosts": ["127.0.0.1"]}})
        out = str(tmp_path / "recovers")
        summary = run_crawl(cfg, shards.filesystem(out), out)
        paths = [e["path"] for e in site.log]
    # Asked, failed, held 0.5 s, asked again (now 200): both pages fetched, none lost to the outage.
    assert paths == ["/robots.txt", "/robots.txt", "/calendar/2024/1", "/calendar/2024/2"]
    assert summary["pages"] == 2 and summary["rejected"] == 0


def test_pages_of_a_host_whose_robots_txt_keeps_failing_are_rejected_after_the_last_ask(tmp_path):
    with serve_traps() as (site, _second):
        site.robots_mode = "500"
        cfg = parse_config({"crawl": {"seeds": [site.base + "/calendar/2024/1", site.base + "/calendar/2024/2"],
                                      "max_retries": 0, "concurrency": 1, "robots_unavailable_seconds": 0.3,
                                      "robots_unavailable_retries": 2, "allow_private_hosts": ["127.0.0.1"]}})
        out = str(tmp_path / "keeps-failing")
        t0 = time.monotonic()
        summary = run_crawl(cfg, shards.filesystem(out), out)
        took = time.monotonic() - t0
        paths = [e["path"] for e in site.log]
    assert paths == ["/robots.txt"] * 3  # the first ask and 2 more, each after a 0.3 s hold; no page request
    assert summary["reasons"] == {"robots_unavailable": 2} and summary["pages"] == 0
    assert took >= 0.6  # the holds were waited out, not skipped


def test_a_redirect_onto_a_host_whose_robots_txt_fails_waits_too(tmp_path):
    with serve_traps() as (site, second):
        second.robots_mode = "500-once"
        cfg = parse_config({"crawl": {"seeds": [site.base + "/escape"], "max_retries": 0, "concurrency": 1,
                                      "max_depth": 0, "max_pages": 1, "robots_unavailable_seconds": 0.3,
                                      "robots_unavailable_retries": 2,
                                      "allow_private_hosts": ["127.0.0.1", "127.0.0.2"]}})
        out = str(tmp_path / "redirected")
        summary = run_crawl(cfg, shards.filesystem(out), out)
        second_paths = [e["path"] for e in second.log]
    # The seed's redirect target asked for robots.txt, failed, waited, asked again, then was fetched;
    # the waiting did not eat the one-page budget.
    assert second_paths[:2] == ["/robots.txt", "/robots.txt"] and len(second_paths) == 3
    assert summary["pages"] == 1 and summary["rejected"] == 0


def test_a_hold_of_zero_seconds_still_asks_robots_txt_once_per_page(tmp_path):
    from types import SimpleNamespace

    from pipeline_lib.crawl.robots import RobotsCache

    asked = []

    class Failing:
        def fetch(self, url, accept_any_type=False, truncate_at=None):
            asked.append(url)
            return SimpleNamespace(status=503, html=None, reason="http_503")

    robots = RobotsCache(Failing(), "ua", unavailable_ttl=0.0, unavailable_retries=2)
    url = "https://a.example/x"
    # What the crawler asks for one page: the problem, the delay, how long to hold it.
    assert robots.problem(url) == "robots_unavailable"
    robots.crawl_delay(url)
    assert robots.retry_in(url) == 0.0 and len(asked) == 1


def test_robots_404_allows_everything(tmp_path):
    summary, log = _robots_crawl(tmp_path, "404")
    assert summary["pages"] == 4
    assert [e["path"] for e in log].count("/robots.txt") == 1


def test_robots_crawl_delay_is_honoured(tmp_path):
    summary, log = _robots_crawl(tmp_path, "delay", max_pages=3)
    times = [e["t"] for e in log if e["path"].startswith("/calendar/")]
    assert summary["pages"] == 3 and len(times) == 3
    # The server's own clock: Crawl-delay: 1 spaced the page requests at least a second apart.
    assert all(b - a >= 0.95 for a, b in zip(times, times[1:]))


def test_politeness_delay_per_host_with_two_hosts(tmp_path):
    with serve_traps() as (site_a, _), serve_traps() as (site_b, _):
        cfg = parse_config({"crawl": {
            "seeds": [site_a.base + "/calendar/2024/1", site_b.base + "/calendar/2030/1"], "max_pages": 8,
            "max_depth": 100, "delay_seconds": 0.3, "concurrency": 2, "allow_private_hosts": ["127.0.0.1"]}})
        out = str(tmp_path / "two-hosts")
        summary = run_crawl(cfg, shards.filesystem(out), out)
        logs = [[e["t"] for e in site.log if e["path"].startswith("/calendar/")] for site in (site_a, site_b)]
    assert summary["pages"] == 8
    assert [len(times) for times in logs] == [4, 4]  # round-robin: the budget is shared fairly
    for times in logs:  # the server's own clock: never two requests to one host closer than the delay
        assert all(b - a >= 0.29 for a, b in zip(times, times[1:]))


def test_charset_labels_that_name_no_text_codec_are_ignored():
    from pipeline_lib.crawl.encoding import decode_html

    assert decode_html("<p>café</p>".encode(), "text/html; charset=hex") == ("<p>café</p>", "utf-8")
    assert decode_html(b"<meta charset=base64><p>hi</p>", None)[0] == "<meta charset=base64><p>hi</p>"


@pytest.mark.parametrize("group,allowed", [("example", False), ("invalid", False), ("crawl2model", True),
                                           ("CRAWL2MODEL", True), ("otherbot", False)])
def test_robots_groups_match_the_product_token_not_the_whole_user_agent(group, allowed):
    from types import SimpleNamespace

    from pipeline_lib.crawl.robots import RobotsCache, product_token

    text = f"User-agent: *\nDisallow: /\n\nUser-agent: {group}\nAllow: /\n"

    class Serving:
        def fetch(self, url, accept_any_type=False, truncate_at=None):
            return SimpleNamespace(status=200, html=text, reason=None)

    robots = RobotsCache(Serving(), "crawl2model/0.1 (+https://example.invalid/crawl2model)")
    assert (robots.problem("https://a.example/page") is None) is allowed
    assert product_token("MyBot/1.2 (+https://x.org)") == "MyBot" and product_token("  ") == "  "


@pytest.mark.parametrize("content,follows", [("none", False), ("noindex, nofollow", False), ("NOFOLLOW", False),
                                             ("noindex", True), ("all", True), ("nofollowing-is-not-a-directive", True)])
def test_meta_robots_none_means_nofollow(content, follows):
    from pipeline_lib.crawl.crawler import extract_links

    html = f'<meta name="robots" content="{content}"><a href="/next">n</a>'
    assert (extract_links(html, "https://a.example/") == ["https://a.example/next"]) is follows


@pytest.mark.parametrize("spelled,url", [("[::1]", "http://[::1]:8080/"), ("::1", "http://[::1]/"),
                                         ("localhost.", "http://localhost:8080/"), ("LocalHost", "http://localhost/")])
def test_allow_private_values_are_spelled_as_crawled_hosts(spelled, url):
    from pipeline_lib.crawl.crawler import settings_from

    settings = settings_from(parse_config({"crawl": {"allow_private_hosts": [spelled]}}).crawl)
    assert address_problem(url, settings.allow_private_hosts) is None
    assert address_problem("http://127.0.0.2/", settings.allow_private_hosts) == "private_address"


@pytest.mark.parametrize("status,reason,max_redirects,allowed", [
    (404, "http_404", 5, True), (403, "http_403", 5, True),
    (429, "http_429", 5, False),  # "slow down": held like a 5xx (it allowed every Disallowed path)
    (503, "http_503", 5, False),
    # RFC 9309 2.3.1.2: after five redirects or more, "unavailable" (no rules); not after fewer
    (301, "redirect_loop", 5, True), (302, "too_many_redirects", 5, True), (302, "too_many_redirects", 1, False),
])
def test_robots_txt_answers_and_what_they_allow(status, reason, max_redirects, allowed):
    from types import SimpleNamespace

    from pipeline_lib.crawl.robots import RobotsCache

    class Answering:
        s = SimpleNamespace(max_redirects=max_redirects)

        def fetch(self, url, accept_any_type=False, truncate_at=None):
            return SimpleNamespace(status=status, html=None, reason=reason)

    robots = RobotsCache(Answering(), "crawl2model/0.1", unavailable_ttl=60.0)
    assert robots.problem("https://a.example/private/x") == (None if allowed else "robots_unavailable")
