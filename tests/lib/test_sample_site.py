"""The bundled sample site: a real server on 127.0.0.1, fetched with requests, parsed with selectolax."""

from __future__ import annotations

import socket
from collections import deque
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
import requests
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from pipeline_lib.sample_site import PAGES_DIR, serve_sample_site

ROBOTS_DISALLOWED_PREFIX = "/private/"


@pytest.fixture(scope="module")
def site():
    with serve_sample_site(0) as base_url:
        yield base_url


def _same_site_links(base_url: str, page_url: str, html: str) -> list[str]:
    host = urlsplit(base_url).netloc
    links = []
    for node in HTMLParser(html).css("a[href]"):
        url, _ = urldefrag(urljoin(page_url, node.attributes.get("href") or ""))
        if urlsplit(url).netloc == host:
            links.append(url)
    return links


def _crawl_everything(base_url: str) -> set[str]:
    """Breadth-first over every same-host link, robots.txt ignored: which paths are linked at all."""
    seen, queue = {base_url}, deque([base_url])
    with requests.Session() as session:
        while queue:
            url = queue.popleft()
            resp = session.get(url, timeout=10)
            assert resp.status_code == 200, f"broken link to {url}"
            for link in _same_site_links(base_url, url, resp.text):
                if link not in seen:
                    seen.add(link)
                    queue.append(link)
    return {urlsplit(u).path for u in seen}


def _page_paths() -> set[str]:
    paths = set()
    for f in PAGES_DIR.rglob("*.html"):
        rel = f.relative_to(PAGES_DIR).as_posix()
        paths.add("/" + (rel[: -len("index.html")] if rel.endswith("index.html") else rel))
    return paths


def test_base_url_is_loopback_with_trailing_slash(site):
    parts = urlsplit(site)
    assert parts.scheme == "http" and parts.hostname == "127.0.0.1"
    assert parts.port == site.port and site.port > 0
    assert site.endswith("/")


def test_index_and_an_article_are_served_as_utf8_html(site):
    index = requests.get(site, timeout=10)
    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert HTMLParser(index.text).css_first("title").text().startswith("Home")

    article = requests.get(site + "garden/tomatoes.html", timeout=10)
    assert article.status_code == 200
    assert "six hours of direct sun" in HTMLParser(article.text).css_first("article").text()


def test_unknown_paths_and_folder_listings_are_404(site):
    assert requests.get(site + "no/such/page.html", timeout=10).status_code == 404
    # /private/ has no index.html: a listing would reveal the disallowed page.
    assert requests.get(site + "private/", timeout=10).status_code == 404


def test_robots_txt_disallows_private(site):
    resp = requests.get(site + "robots.txt", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    lines = [line.strip() for line in resp.text.splitlines()]
    assert "User-agent: *" in lines
    assert f"Disallow: {ROBOTS_DISALLOWED_PREFIX}" in lines


def test_every_page_is_reachable_from_index(site):
    linked = _crawl_everything(site)
    on_disk = _page_paths()
    assert on_disk - linked == set(), "pages no link leads to"
    assert linked - on_disk == set(), "links to pages that do not exist"
    # The robots-disallowed page is linked, so a crawler that ignores robots.txt would find it.
    assert ROBOTS_DISALLOWED_PREFIX + "secret.html" in linked
    assert len(on_disk) >= 40


def test_every_page_is_utf8_with_charset_and_title():
    pages = sorted(PAGES_DIR.rglob("*.html"))
    assert pages
    for f in pages:
        text = f.read_bytes().decode("utf-8")  # raises on invalid UTF-8
        tree = HTMLParser(text)
        assert tree.css_first('meta[charset="utf-8"]') is not None, f
        title = tree.css_first("title")
        assert title is not None and title.text().strip(), f


def test_request_log_records_paths_in_order():
    with serve_sample_site(0) as base_url:
        assert len(base_url.requested_paths) == 0
        requests.get(base_url, timeout=10)
        requests.get(base_url + "kitchen/flatbread.html", timeout=10)
        requests.get(base_url + "missing.html", timeout=10)
        requests.head(base_url + "robots.txt", timeout=10)
        assert base_url.requested_paths.snapshot() == ["/", "/kitchen/flatbread.html", "/missing.html", "/robots.txt"]
        assert "/kitchen/flatbread.html" in base_url.requested_paths


def test_server_stops_on_exit():
    with serve_sample_site(0) as base_url:
        port = base_url.port
        assert requests.get(base_url, timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_busy_fixed_port_names_the_port_and_the_config_key():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(OSError, match=rf"port {port} is already in use.*crawl\.sample_site\.port"):
            with serve_sample_site(port):
                pass


def test_fixed_port_is_used_when_free():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve_sample_site(port) as base_url:
        assert base_url == f"http://127.0.0.1:{port}/"
        assert requests.get(base_url + "robots.txt", timeout=10).status_code == 200
