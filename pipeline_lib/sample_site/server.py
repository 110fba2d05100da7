"""Serve the bundled sample site on 127.0.0.1 for the length of a crawl.

Usage::

    with serve_sample_site(port=0) as base_url:   # "http://127.0.0.1:41234/"
        crawl(seeds=[base_url])
        print(base_url.requested_paths.snapshot())

Run by hand to browse it: ``python -m pipeline_lib.sample_site.server --port 18642``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import socketserver
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

PAGES_DIR = Path(__file__).resolve().parent / "pages"
HOST = "127.0.0.1"
PORT_CONFIG_KEY = "crawl.sample_site.port"

# Explicit charsets: without them a client has to sniff, and a crawler test should not depend on that.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


class RequestLog:
    """Request paths in arrival order; handler threads append while a test reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: list[str] = []

    def append(self, path: str) -> None:
        with self._lock:
            self._paths.append(path)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def clear(self) -> None:
        with self._lock:
            self._paths.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._paths

    def __repr__(self) -> str:
        return f"RequestLog({self.snapshot()!r})"


class SampleSiteURL(str):
    """The base URL (a plain ``str`` for callers) that also carries the running site's request log."""

    requested_paths: RequestLog
    port: int
    pages_dir: Path

    def __new__(cls, url: str, requested_paths: RequestLog, port: int, pages_dir: Path) -> "SampleSiteURL":
        obj = super().__new__(cls, url)
        obj.requested_paths = requested_paths
        obj.port = port
        obj.pages_dir = pages_dir
        return obj


class _SampleSiteHandler(SimpleHTTPRequestHandler):
    server: "_SampleSiteServer"

    def send_head(self):  # type: ignore[override]
        # Every GET and HEAD passes through here, including the ones that end in 404.
        self.server.request_log.append(self.path)
        return super().send_head()

    def list_directory(self, path):  # type: ignore[override]
        # A real site does not expose folder listings; a crawler following them would see files
        # (like /private/) that no page links to.
        self.send_error(404, "Not Found")
        return None

    def guess_type(self, path) -> str:  # type: ignore[override]
        return _CONTENT_TYPES.get(Path(str(path)).suffix.lower()) or super().guess_type(path)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by the base class
        pass  # quiet: a crawl of the demo site should not flood stderr


class _SampleSiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, pages_dir: Path, request_log: RequestLog):
        self.request_log = request_log
        handler = functools.partial(_SampleSiteHandler, directory=str(pages_dir))
        super().__init__((HOST, port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on a machine
        # without DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.server_address[1]


@contextmanager
def serve_sample_site(port: int = 0, pages_dir: Path | str | None = None) -> Iterator[SampleSiteURL]:
    """Serve ``pages_dir`` (the bundled pages by default) on 127.0.0.1:``port`` (0 = any free port).

    Yields the base URL with a trailing slash; ``base_url.requested_paths`` records every request
    path. The server is shut down and its socket closed when the block exits.
    """
    folder = Path(pages_dir) if pages_dir is not None else PAGES_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"sample site folder not found: {folder}")
    log = RequestLog()
    try:
        server = _SampleSiteServer(port, folder, log)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise OSError(e.errno, f"sample site cannot listen on {HOST}:{port}: port {port} is already in use; "
                                   f"set {PORT_CONFIG_KEY} to a free port, or 0 for any free port") from e
        raise
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"sample-site-{server.server_port}", daemon=True)
    thread.start()
    try:
        yield SampleSiteURL(f"http://{HOST}:{server.server_port}/", log, server.server_port, folder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the bundled sample site until Ctrl-C.")
    parser.add_argument("--port", type=int, default=18642)
    args = parser.parse_args(argv)
    with serve_sample_site(args.port) as base_url:
        print(f"serving {PAGES_DIR} at {base_url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
