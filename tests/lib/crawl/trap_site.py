"""A real HTTP server full of crawler traps, with its own request log.

Tests assert what the *server* saw (paths, hosts, bytes sent), never what the crawler claims.
Run by hand: ``python tests/lib/crawl/trap_site.py`` and browse http://127.0.0.1:PORT/.
"""

from __future__ import annotations

import gzip
import random
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

BIG_PAGE_BYTES = 20 * 1024 * 1024
BOMB_INFLATED_BYTES = 32 * 1024 * 1024
TRICKLE_INTERVAL = 0.2  # seconds between bytes of /slow
TRICKLE_BYTES = 200  # /slow would take 40 s to finish

ROBOTS = "User-agent: *\nDisallow: /private/\nDisallow: /hidden\n"
LATIN1_TEXT = "Café crème, façade, naïve"
SJIS_TEXT = "日本語のページです"
GZIP_TEXT = "compressed – but honest"


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    # 32 MiB of spaces compress to ~32 KiB: a crawler that inflates it blindly eats the memory.
    return gzip.compress(b" " * BOMB_INFLATED_BYTES, compresslevel=9)


def _page(title: str, body: str, charset: str = "utf-8") -> bytes:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>".encode(charset)


class TrapServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], other_base: str = ""):
        super().__init__(address, TrapHandler)
        self.lock = threading.Lock()
        self.log: list[dict] = []
        self.other_base = other_base  # where /escape redirects (a second, non-allowed address)
        self.rate_limited_hits = 0
        self.big_bytes_sent = 0
        self.trickle_state: dict[str, str] = {}  # path -> sending / client_hung_up / finished
        self.robots_mode = "ok"  # "ok", "404", "500", "500-once" (then "ok"), or "delay" (Crawl-delay: 1)

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def paths(self) -> list[str]:
        with self.lock:
            return [e["path"] for e in self.log]


class TrapHandler(BaseHTTPRequestHandler):
    server: TrapServer
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - a routing table of traps
        s = self.server
        with s.lock:
            s.log.append({"path": self.path, "host": self.headers.get("Host", ""),
                          "ua": self.headers.get("User-Agent", ""), "t": time.monotonic()})
        path = self.path
        try:
            if path == "/robots.txt":
                if s.robots_mode == "404":
                    return self._send(404, b"no robots here", "text/plain")
                if s.robots_mode in ("500", "500-once"):
                    if s.robots_mode == "500-once":
                        s.robots_mode = "ok"
                    return self._send(500, b"robots broke", "text/plain")
                extra = "Crawl-delay: 1\n" if s.robots_mode == "delay" else ""
                return self._send(200, (ROBOTS + extra).encode(), "text/plain")
            if path == "/":
                links = ["/calendar/2024/1", "/loop/a", "/slow", "/slow-headers", "/ratelimited", "/error500", "/big", "/bomb",
                         "/binary", "/private/secret", "/hidden-page", "/latin1", "/sjis", "/escape", "/image.png",
                         "/missing", "/to-private", "/gzipped", "/a/../latin1", "/latin1#section",
                         s.base.upper() + "/latin1", "mailto:x@example.com",
                         "http://example.invalid/outside"]
                body = "".join(f'<a href="{u}">{u}</a> ' for u in links) + '<a rel="nofollow" href="/nofollow">n</a>'
                return self._send(200, _page("home", body))
            if path.startswith("/calendar/"):
                _, _, year, month = path.split("/")[:4]
                n = int(year) * 12 + int(month) - 1
                nxt, prv = n + 1, n - 1
                body = (f'<a href="/calendar/{nxt // 12}/{nxt % 12 + 1}">next</a>'
                        f'<a href="/calendar/{prv // 12}/{prv % 12 + 1}">prev</a>')
                return self._send(200, _page(f"calendar {year}-{month}", body))
            if path == "/loop/a":
                return self._send(302, headers={"Location": "/loop/b"})
            if path == "/loop/b":
                return self._send(302, headers={"Location": "/loop/a"})
            if path == "/to-private":
                return self._send(301, headers={"Location": "/private/secret"})
            if path == "/escape":
                return self._send(302, headers={"Location": s.other_base + "/stolen"})
            if path == "/slow":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(TRICKLE_BYTES))
                self.end_headers()
                return self._trickle(path, b"x" * TRICKLE_BYTES)
            if path == "/slow-headers":
                # Status line and headers one byte at a time: socket read timeouts never fire.
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n" + b"X-Pad: " + b"p" * TRICKLE_BYTES + b"\r\n\r\n"
                return self._trickle(path, head + _page("late", "too late"))
            if path == "/ratelimited":
                with s.lock:
                    s.rate_limited_hits += 1
                    first = s.rate_limited_hits == 1
                if first:
                    return self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
                return self._send(200, _page("patience", "<p>worth the wait</p>"))
            if path == "/error500":
                return self._send(500, b"boom", "text/plain")
            if path == "/big":
                # No Content-Length: the crawler must cut it off while streaming.
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                chunk = b"<p>" + b"a" * 65530 + b"</p>"
                sent = 0
                while sent < BIG_PAGE_BYTES:
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    with s.lock:
                        s.big_bytes_sent += len(chunk)
                return
            if path == "/bomb":
                bomb = gzip_bomb()
                return self._send(200, bomb, "text/html", {"Content-Encoding": "gzip"})
            if path == "/gzipped":
                return self._send(200, gzip.compress(_page("gz", f"<p>{GZIP_TEXT}</p>")), "text/html; charset=utf-8",
                                  {"Content-Encoding": "gzip"})
            if path == "/binary":
                return self._send(200, random.Random(7).randbytes(50_000), "text/html")
            if path == "/latin1":
                return self._send(200, _page("latin1", f"<p>{LATIN1_TEXT}</p>", "latin-1"),
                                  "text/html; charset=ISO-8859-1")
            if path == "/sjis":
                head = '<!doctype html><html><head><meta charset="Shift_JIS"><title>sjis</title></head>'
                return self._send(200, (head + f"<body><p>{SJIS_TEXT}</p></body></html>").encode("shift_jis"),
                                  "text/html")
            if path == "/image.png":
                return self._send(200, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png")
            if path.startswith("/private/") or path.startswith("/hidden"):
                return self._send(200, _page("secret", "<p>you should not be here</p>"))
            if path == "/stolen":
                return self._send(200, _page("stolen", "<p>internal data</p>"))
            return self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            return  # the crawler hung up, as it should on traps

    def _trickle(self, path: str, data: bytes) -> None:
        s = self.server
        with s.lock:
            s.trickle_state[path] = "sending"
        try:
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(TRICKLE_INTERVAL)
        except (BrokenPipeError, ConnectionResetError):
            with s.lock:
                s.trickle_state[path] = "client_hung_up"
            return
        with s.lock:
            s.trickle_state[path] = "finished"


@contextmanager
def serve_traps() -> Iterator[tuple[TrapServer, TrapServer]]:
    """(main site on 127.0.0.1, second site on 127.0.0.2), both really listening."""
    gzip_bomb()  # built before serving, so building it cannot look like a slow server
    other = TrapServer(("127.0.0.2", 0))
    main = TrapServer(("127.0.0.1", 0), other_base=other.base)
    threads = [threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for srv in (main, other)]
    for t in threads:
        t.start()
    try:
        yield main, other
    finally:
        for srv in (main, other):
            srv.shutdown()
            srv.server_close()


if __name__ == "__main__":
    with serve_traps() as (site, second):
        print(f"trap site on {site.base}/ (second address {second.base})")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
