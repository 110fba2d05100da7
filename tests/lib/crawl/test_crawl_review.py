"""Crawler review fixes: resume keeps seed-redirect hosts, %-escape case, duplicate redirects, bad seeds,
a brief robots.txt outage."""

from __future__ import annotations

import glob
import gzip
import threading
import time
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from pipeline_lib import shards
from pipeline_lib.config import ConfigError, parse_config
from pipeline_lib.crawl import run_crawl
from pipeline_lib.crawl.urls import normalize_url


class Killed(Exception):
    pass


class _Site(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []  # (Host header, raw path)
        self.stamps: list[tuple[float, str, str]] = []  # (monotonic time, Host header, raw path)
        self.links: dict[int, list[str]] = {}  # extra links on /p/N
        self.robots_failures = 0  # answer robots.txt with 503 this many times
        self.robots_body: bytes | None = None  # else robots.txt is this, 200 text/plain
        self.busy_answers = 0  # answer /busy with 503 this many times, then a page
        self.robots_delay = 0.0  # seconds robots.txt takes to answer

    @property
    def port(self) -> int:
        return self.server_address[1]

    def paths(self) -> list[str]:
        with self.lock:
            return [p for _h, p in self.log]


PAGE = b"<html><body><p>" + b"hello encoded world " * 500 + b"</p></body></html>"
_raw = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
ENCODED = {  # bodies some servers send: gzip in two members (as gzip(1) concatenates), deflate without its header
    "/enc/multi": ("gzip", gzip.compress(PAGE[:4000]) + gzip.compress(PAGE[4000:])),
    "/enc/raw": ("deflate", _raw.compress(PAGE) + _raw.flush()),
    "/enc/zlib": ("deflate", zlib.compress(PAGE)),
    "/enc/trailing": ("gzip", gzip.compress(PAGE) + b"\x00" * 16),
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _html(self, body: str) -> None:
        data = f"<html><body>{body}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, location: str | None = None) -> None:
        self.send_response(code)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        site: _Site = self.server
        host = self.headers.get("Host", "")
        with site.lock:
            site.log.append((host, self.path))
            site.stamps.append((time.monotonic(), host, self.path))
        if self.path == "/robots.txt" and site.robots_delay:
            time.sleep(site.robots_delay)
        if host.startswith("localhost") and self.path == "/to-slow":
            return self._status(301, f"http://127.0.0.1:{site.port}/slow-page")
        if self.path == "/slow-page":
            time.sleep(0.6)
            return self._html("<p>slow but in time</p>")
        if self.path == "/robots.txt":
            with site.lock:
                fail = site.robots_failures > 0
                site.robots_failures -= fail
            if site.robots_body is not None and not fail:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(site.robots_body)))
                self.end_headers()
                self.wfile.write(site.robots_body)
                return None
            return self._status(503 if fail else 404)
        if host.startswith("localhost") and self.path == "/":
            return self._status(301, f"http://127.0.0.1:{site.port}/p/0")
        if self.path == "/alias":
            return self._status(301, "/p/1")
        if self.path.startswith("/p/"):
            n = int(self.path[3:])
            links = "".join(f"<a href='{h}'>x</a>" for h in site.links.get(n, []))
            return self._html(f"<h1>Page {n}</h1><p>{'word ' * 30}{n}</p>{links}<a href='/p/{n + 1}'>next</a>")
        if self.path.startswith("/x/"):
            return self._html(f"<p>{self.path}</p>")
        if self.path.startswith("/busy"):
            with site.lock:
                busy = site.busy_answers > 0
                site.busy_answers -= busy
            if busy:
                self.send_response(503)
                if self.path == "/busy-long":
                    self.send_header("Retry-After", "40")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._html("<p>not busy now</p>")
        if self.path.startswith("/slow-hop/"):
            time.sleep(0.5)
            return self._status(302, f"/slow-hop/{int(self.path.rsplit('/', 1)[1]) + 1}")
        if self.path == "/utf8-location":
            self.send_response(301)
            self._headers_buffer.append("Location: /caf\u00e9/men\u00fc\r\n".encode("utf-8"))  # raw UTF-8 bytes
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path == "/caf%C3%A9/men%C3%BC":
            return self._html("<p>caf\u00e9 men\u00fc</p>")
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            self.send_response(code)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"<p>part</p>" if code != 304 else b"")
            return None
        if self.path in ENCODED:
            encoding, data = ENCODED[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        self._status(404)


@contextmanager
def _site():
    site = _Site()
    t = threading.Thread(target=site.serve_forever, daemon=True)
    t.start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()


def _cfg(seed: str, **over):
    crawl = {"seeds": [seed], "max_pages": 8, "max_depth": 100, "concurrency": 1, "pages_per_shard": 2,
             "connect_timeout": 2.0, "read_timeout": 2.0, "total_timeout": 5.0, "max_retries": 0,
             "allow_private_hosts": ["127.0.0.1", "localhost"]}
    crawl.update(over)
    return parse_config({"crawl": crawl})


def _kept(out_dir: str) -> list[dict]:
    return [r for f in sorted(glob.glob(f"{out_dir}/part-?????.parquet")) for r in pq.read_table(f).to_pylist()]


def _rejected(out_dir: str) -> list[dict]:
    return [r for f in sorted(glob.glob(f"{out_dir}/_rejected/part-*.parquet")) for r in pq.read_table(f).to_pylist()]


# ---- 1. resume keeps the hosts seeds redirected to ---------------------------------------------
def test_resumed_crawl_keeps_seed_redirect_host(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    fs = shards.filesystem(out_dir)
    with _site() as site:
        cfg = _cfg(f"http://localhost:{site.port}/")

        def kill(event):
            if event["shard"] == "part-00000":
                raise Killed()

        with pytest.raises(Killed):
            run_crawl(cfg, fs, out_dir, kill)
        summary = run_crawl(cfg, fs, out_dir)
    assert summary["reasons"].get("out_of_scope", 0) == 0, summary
    assert summary["pages"] == 8, summary
    finals = [r["final_url"] for r in _kept(out_dir)]
    assert len(set(finals)) == len(finals) == 8


# ---- 2. percent-escapes are case-normalised ----------------------------------------------------
def test_percent_escape_case_is_normalised():
    assert normalize_url("http://a.com/%e4%b8%ad") == normalize_url("http://a.com/%E4%B8%AD") == "http://a.com/%E4%B8%AD"
    assert normalize_url("http://a.com/p?q=%c3%a9") == "http://a.com/p?q=%C3%A9"
    assert normalize_url("http://a.com/a%2fb") == "http://a.com/a%2Fb"
    assert normalize_url("http://a.com/%7euser") == "http://a.com/~user"


def test_percent_escape_variants_fetched_once(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.links[0] = ["/x/%e4%b8%ad", "/x/%E4%B8%AD"]
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=4, max_depth=1),
                            shards.filesystem(out_dir), out_dir)
        xs = [p for p in site.paths() if p.startswith("/x/")]
    assert len(xs) == 1, xs
    assert summary["pages"] == 3  # /p/0, /x/%E4%B8%AD, /p/1


# ---- 3. a redirect to a page already fetched or queued is not a second document ----------------
@pytest.mark.parametrize("links", [["/p/1", "/alias"], ["/alias", "/p/1"]], ids=["target_first", "alias_first"])
def test_redirect_to_known_page_is_duplicate(tmp_path, links):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.links[0] = links
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=5, max_depth=1),
                            shards.filesystem(out_dir), out_dir)
        p1 = site.paths().count("/p/1")
    kept = _kept(out_dir)
    finals = [r["final_url"] for r in kept]
    assert len(finals) == len(set(finals)), finals
    assert p1 == 1
    assert summary["reasons"] == {"duplicate_redirect": 1}, summary
    assert summary["pages"] == 2  # /p/0 and /p/1 (depth 1); /alias is the rejected duplicate
    dup = [r for r in _rejected(out_dir) if r["reject_reason"] == "duplicate_redirect"]
    assert [r["url"] for r in dup] == [f"http://127.0.0.1:{site.port}/alias"]


# ---- 4. seeds that are not http(s) URLs are a config error ---------------------------------------
@pytest.mark.parametrize("seed", ["example.com", "ftp://x.org/", "http://", "https:///path", "http://a.com:99999/"])
def test_bad_seed_is_config_error(seed):
    with pytest.raises(ConfigError, match="seed"):
        parse_config({"crawl": {"seeds": ["https://ok.example/", seed]}})
    try:
        parse_config({"crawl": {"seeds": [seed]}})
    except ConfigError as e:
        assert repr(seed) in str(e) or seed in str(e)


@pytest.mark.parametrize("seed", ["{sample_site}", "{sample_site}/", "{sample_site}/docs/a.html", "HTTPS://Example.COM"])
def test_good_seeds_accepted(seed):
    assert parse_config({"crawl": {"seeds": [seed]}}).crawl.seeds == [seed]


# ---- 5. robots.txt that protego alone would misread ---------------------------------------------
@pytest.mark.parametrize("robots,over", [
    # a UTF-8 BOM hid the first User-agent line, and with it the group's Disallow
    (b"\xef\xbb\xbfUser-agent: *\nDisallow: /p/1\n", {}),
    # a robots.txt over max_body_bytes was "too large" and allowed everything; its first 500 KiB count
    (b"User-agent: *\nDisallow: /p/1\n" + b"# padding padding padding padding\n" * 20_000, {"max_body_bytes": 100_000}),
    (b"User-agent: *\nDisallow: /p/1\n" + b"# padding padding padding padding\n" * 20_000, {}),
], ids=["bom", "over_max_body_bytes", "over_500_kib"])
def test_robots_rules_hold_for_a_bom_and_a_large_file(tmp_path, robots, over):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.robots_body = robots
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=4, max_depth=3, **over),
                            shards.filesystem(out_dir), out_dir)
        paths = site.paths()
    assert paths == ["/robots.txt", "/p/0"], paths  # /p/1 disallowed, so /p/2 is never seen either
    assert summary["reasons"] == {"robots_disallowed": 1}


def test_gzip_of_several_members_and_raw_deflate_bodies_are_read_whole(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.links[0] = list(ENCODED)
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=10, max_depth=1),
                            shards.filesystem(out_dir), out_dir)
    pages = {r["url"].split("/", 3)[3]: r["html"] for r in _kept(out_dir)}
    assert summary["rejected"] == 0, summary
    for path in ENCODED:  # a second member was silently dropped (half the page); raw deflate was bad_encoding
        assert pages[path.lstrip("/")] == PAGE.decode(), path


def test_not_modified_and_partial_content_are_no_pages(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.links[0] = ["/status/304", "/status/206", "/status/203"]
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=10, max_depth=1),
                            shards.filesystem(out_dir), out_dir)
    assert summary["reasons"] == {"http_304": 1, "http_206": 1}  # a 304 was kept as a page without html
    assert all(r["html"] for r in _kept(out_dir))


def test_a_raw_utf8_location_is_followed_as_utf8(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.links[0] = ["/utf8-location"]
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=3, max_depth=1),
                            shards.filesystem(out_dir), out_dir)
        paths = site.paths()
    assert "/caf%C3%A9/men%C3%BC" in paths  # was /caf%C3%83%C2%A9/men%C3%83%C2%BC: a 404
    assert summary["rejected"] == 0 and summary["pages"] == 3


def test_the_total_deadline_covers_a_page_and_its_redirects(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.links[0] = ["/slow-hop/0"]
        started = time.monotonic()
        summary = run_crawl(_cfg(f"http://127.0.0.1:{site.port}/p/0", max_pages=3, max_depth=1, total_timeout=1.6,
                                 max_redirects=10), shards.filesystem(out_dir), out_dir)
        hops = [p for p in site.paths() if p.startswith("/slow-hop/")]
    # Each hop took 0.5 s, within the per-request deadline: 11 hops (5.5 s) were one fetch before.
    assert summary["reasons"] == {"timeout": 1}, summary
    assert 3 <= len(hops) <= 5, hops
    assert time.monotonic() - started < 5


def test_a_retry_waits_at_least_the_hosts_politeness_delay():
    from pipeline_lib.crawl.fetcher import Fetcher, FetchSettings

    slept: list[float] = []
    with _site() as site:
        site.busy_answers = 2
        fetcher = Fetcher(FetchSettings(allow_private_hosts=("127.0.0.1",), max_retries=3, backoff_base=0.5),
                          sleep=slept.append)
        result = fetcher.fetch(f"http://127.0.0.1:{site.port}/busy", min_retry_wait=2.0)
    assert result.ok and result.attempts == 3
    assert slept == [2.0, 2.0]  # the backoff alone was 0.5 s, then 1 s, under a Crawl-delay of 2 s
    # A delay longer than max_retry_wait (a Crawl-delay of 45 s is allowed) still retries.
    slept.clear()
    with _site() as site:
        site.busy_answers = 2
        fetcher = Fetcher(FetchSettings(allow_private_hosts=("127.0.0.1",), max_retries=3, max_retry_wait=30.0),
                          sleep=slept.append)
        result = fetcher.fetch(f"http://127.0.0.1:{site.port}/busy", min_retry_wait=45.0)
    assert result.ok and slept == [45.0, 45.0]  # it gave up at once, "Retry-After 45s exceeds max_retry_wait"


def test_a_retry_after_beyond_max_retry_wait_holds_the_host(tmp_path):
    from pipeline_lib.crawl.crawler import Crawler

    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.busy_answers = 1
        cfg = _cfg(f"http://127.0.0.1:{site.port}/busy-long", max_retry_wait=5.0, max_crawl_delay=30.0)
        crawler = Crawler(cfg, shards.filesystem(out_dir), out_dir)
        outcome = crawler._work(f"http://127.0.0.1:{site.port}/busy-long", 0)
        crawler.fetcher.close()
    assert outcome.result.reason == "http_503"  # this page is given up (Retry-After 40 > max_retry_wait 5) ...
    assert outcome.host_delay == 30.0  # ... but its host waits (capped like a Crawl-delay), not the 0 s delay


def test_a_redirect_landing_on_another_host_delays_that_host_too():
    from pipeline_lib.crawl.frontier import Frontier

    now = [100.0]
    frontier = Frontier(clock=lambda: now[0])
    frontier.postpone("https://b.example", 2.0)
    frontier.postpone("https://b.example", 0.5)  # never earlier than a wait already set
    assert frontier.next_time["https://b.example"] == 102.0


def test_a_rerun_with_a_larger_max_depth_goes_deeper(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        seed = f"http://127.0.0.1:{site.port}/p/0"
        first = run_crawl(_cfg(seed, max_depth=1), shards.filesystem(out_dir), out_dir)
        before = len(site.paths())
        deeper = run_crawl(_cfg(seed, max_depth=3), shards.filesystem(out_dir), out_dir)
        second = site.paths()[before:]
        again = run_crawl(_cfg(seed, max_depth=3), shards.filesystem(out_dir), out_dir)
    assert first["pages"] == 2
    # It sent no request and said "not skipped": /p/1's links were never queued, and /p/1 is visited.
    assert [p for p in second if p != "/robots.txt"] == ["/p/2", "/p/3"]
    assert deeper["pages"] == 4 and again["skipped"] is True
    assert sorted(r["url"].rsplit("/", 1)[1] for r in _kept(out_dir)) == ["0", "1", "2", "3"]


def test_the_landing_hosts_robots_txt_does_not_eat_the_pages_deadline(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        site.robots_delay = 1.2  # asked for twice: the seed's host, then the host its redirect lands on
        summary = run_crawl(_cfg(f"http://localhost:{site.port}/to-slow", max_pages=1, total_timeout=1.6),
                            shards.filesystem(out_dir), out_dir)
    assert summary["pages"] == 1 and summary["rejected"] == 0, summary  # 1.2 s robots + 0.6 s page: was a timeout


def test_a_redirect_landing_on_another_host_makes_that_host_wait_its_delay(tmp_path):
    """localhost/ redirects to 127.0.0.1/p/0 (another host): the next request to 127.0.0.1 came at
    once, since only the host asked for, localhost, was marked as just visited."""
    out_dir = str(tmp_path / "00_crawl")
    with _site() as site:
        run_crawl(_cfg(f"http://localhost:{site.port}/", max_pages=3, max_depth=2, delay_seconds=1.0),
                  shards.filesystem(out_dir), out_dir)
        pages = [(t, p) for t, h, p in site.stamps if h.startswith("127.0.0.1") and p.startswith("/p/")]
    assert [p for _t, p in pages][:2] == ["/p/0", "/p/1"]
    assert pages[1][0] - pages[0][0] >= 0.95
