"""One hardened HTTP fetch: safe addresses, bounded time, bounded size, manual redirects, retries.

Why each guard exists:
- Every hop (the first request and every redirect) is resolved and checked, so a public page
  cannot bounce the crawler into 127.0.0.1 or a cloud metadata address.
- Connect/read timeouts bound each socket operation; the total deadline bounds the whole fetch,
  so a server trickling one byte at a time cannot hold a worker.
- The size cap counts decompressed bytes and decompresses with a bounded output size, so a gzip
  bomb is cut off after ``max_body_bytes``, never inflated in memory.
- Only 429 and 5xx are retried (they can succeed later); a 4xx is the page's final answer.
"""

from __future__ import annotations

import email.utils
import socket
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import requests

from pipeline_lib.crawl.encoding import decode_html
from pipeline_lib.crawl.netguard import FetchGuard, guarded_session, is_public_ip
from pipeline_lib.crawl.urls import normalize_url

HTML_TYPES = ("text/html", "application/xhtml+xml")
CHUNK = 16 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})


@dataclass
class FetchResult:
    url: str
    final_url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""
    html: str | None = None
    reason: str | None = None  # None = a usable HTML page
    detail: str = ""
    attempts: int = 0
    retry_after: float | None = None  # what the server asked for on the last 429/503

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str = "crawl2model/0.1"
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_body_bytes: int = 5_000_000
    max_redirects: int = 5
    max_retries: int = 2
    max_retry_wait: float = 30.0
    backoff_base: float = 0.5
    allow_private_hosts: tuple[str, ...] = ()
    accept_types: tuple[str, ...] = HTML_TYPES


class _Abort(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def address_problem(url: str, allow_private_hosts: tuple[str, ...] | list[str]) -> str | None:
    """None when the URL's host may be fetched, else a reject reason.

    Checked after DNS resolution: a public name that resolves to 10.0.0.1 is as private as the IP.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "unsupported_scheme"
    host = (parts.hostname or "").lower()
    if not host:
        return "invalid_url"
    if host in allow_private_hosts:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return "dns_error"
    if not all(is_public_ip(info[4][0]) for info in infos):
        return "private_address"
    return None


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _socket_of(resp: requests.Response):
    conn = getattr(resp.raw, "_connection", None)
    return getattr(conn, "sock", None)


def _decompressor(encoding: str):
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, auto-detected
    raise _Abort("unsupported_encoding", encoding)


class Fetcher:
    def __init__(self, settings: FetchSettings, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.s = settings
        self.session = session or guarded_session()
        self.sleep = sleep

    def close(self) -> None:
        self.session.close()

    def fetch(self, url: str, check: Callable[[str], str | None] | None = None,
              accept_any_type: bool = False, truncate_at: int | None = None,
              min_retry_wait: float = 0.0) -> FetchResult:
        """Fetch with retries on 429/5xx. ``check(url)`` vets every hop (robots, scope).
        ``truncate_at``: keep the first that many bytes of a longer body (robots.txt) instead of
        rejecting it as ``too_large``. ``min_retry_wait``: the host's politeness delay, which a
        retry's backoff never undercuts."""
        result = FetchResult(url=url, final_url=url)
        for attempt in range(self.s.max_retries + 1):
            result = self._fetch_redirects(url, check, accept_any_type, truncate_at)
            result.attempts = attempt + 1
            if result.status not in RETRY_STATUSES or attempt == self.s.max_retries:
                break
            wait = result.retry_after
            if wait is not None and wait > self.s.max_retry_wait:
                result.detail = f"Retry-After {wait:.0f}s exceeds max_retry_wait"
                break
            if wait is None:
                wait = self.s.backoff_base * (2 ** attempt)
            # The host's delay is a floor, not a Retry-After: it never makes us give up the page.
            self.sleep(max(wait, min_retry_wait))
        return result

    def _fetch_redirects(self, url: str, check, accept_any_type: bool, truncate_at: int | None = None) -> FetchResult:
        seen = {url}
        current = url
        deadline = time.monotonic() + self.s.total_timeout  # one deadline for the page, redirects included
        for _hop in range(self.s.max_redirects + 1):
            vetted = time.monotonic()
            problem = address_problem(current, self.s.allow_private_hosts) or (check(current) if check else None)
            # Vetting may fetch the landing host's robots.txt: its time is not the page's.
            deadline += time.monotonic() - vetted
            if problem:
                return FetchResult(url=url, final_url=current, reason=problem, detail=f"refused {current}")
            if time.monotonic() >= deadline:
                return FetchResult(url=url, final_url=current, reason="timeout",
                                   detail=f"total deadline of {self.s.total_timeout}s reached after redirects")
            result = self._fetch_one(url, current, accept_any_type, truncate_at, deadline)
            if result.status == 304:  # we never ask conditionally: "not modified" is no page
                result.reason = result.reason or "http_304"
            if result.status is None or not (300 <= result.status < 400) or result.status == 304:
                return result
            location = result.headers.get("location") or result.headers.get("Location")
            if location and not location.isascii():
                # http.client reads header bytes as Latin-1: a raw UTF-8 Location (as requests'
                # own redirect code assumes) would be percent-encoded twice.
                try:
                    location = location.encode("latin-1").decode("utf-8")
                except (UnicodeEncodeError, UnicodeDecodeError):
                    pass
            target = normalize_url(location, current) if location else None
            if target is None:
                result.reason, result.detail = "bad_redirect", f"Location {location!r}"
                return result
            if target in seen:
                result.reason, result.detail = "redirect_loop", f"{current} -> {target}"
                return result
            seen.add(target)
            current = target
        return FetchResult(url=url, final_url=current, reason="too_many_redirects",
                           detail=f"more than {self.s.max_redirects} redirects")

    def _fetch_one(self, url: str, current: str, accept_any_type: bool,
                   truncate_at: int | None = None, deadline: float | None = None) -> FetchResult:
        s = self.s
        result = FetchResult(url=url, final_url=current)
        deadline = deadline if deadline is not None else time.monotonic() + s.total_timeout
        left = max(0.001, deadline - time.monotonic())
        # Connection: close, so every request opens a socket the guard vets and can cut.
        headers = {"User-Agent": s.user_agent, "Accept-Encoding": "gzip, deflate", "Connection": "close",
                   "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
        with FetchGuard(s.allow_private_hosts, deadline) as guard:
            try:
                resp = self.session.get(current, headers=headers, stream=True, allow_redirects=False,
                                        timeout=(min(s.connect_timeout, left), min(s.read_timeout, left)))
            except requests.exceptions.RequestException as e:
                if guard.refused_peer:
                    result.reason, result.detail = "private_address", f"connected to {guard.refused_peer}"
                elif guard.expired or isinstance(e, requests.exceptions.Timeout):
                    result.reason, result.detail = "timeout", str(e)[:200]
                else:
                    result.reason, result.detail = "connection_error", str(e)[:200]
                return result
            return self._handle(resp, result, deadline, guard, accept_any_type, truncate_at)

    def _handle(self, resp: requests.Response, result: FetchResult, deadline: float, guard: FetchGuard,
                accept_any_type: bool, truncate_at: int | None = None) -> FetchResult:
        s = self.s
        with resp:
            result.status = resp.status_code
            result.headers = {k.lower(): v for k, v in resp.headers.items()}
            result.content_type = resp.headers.get("content-type", "")
            if 300 <= resp.status_code < 400:
                return result
            # 206: part of a page (we never send Range), not a page
            if resp.status_code >= 400 or resp.status_code < 200 or resp.status_code == 206:
                result.reason = f"http_{resp.status_code}"
                result.retry_after = parse_retry_after(resp.headers.get("retry-after"))
                return result
            mime = result.content_type.split(";", 1)[0].strip().lower()
            if not accept_any_type and mime and mime not in s.accept_types:
                result.reason, result.detail = "non_html", mime
                return result
            length = resp.headers.get("content-length", "")
            if length.isdigit() and not resp.headers.get("content-encoding") and int(length) > s.max_body_bytes \
                    and truncate_at is None:
                result.reason, result.detail = "too_large", f"Content-Length {length}"
                return result
            try:
                body = self._read_body(resp, deadline, truncate_at)
                if guard.expired:  # the watchdog cut the socket: what we have is a fragment
                    raise _Abort("timeout", "total deadline exceeded while reading the body")
            except _Abort as e:
                result.reason, result.detail = e.reason, e.detail
                return result
            except Exception as e:  # urllib3 protocol errors, resets, decoding of a cut stream
                kind = "timeout" if guard.expired or "timed out" in str(e).lower() else "connection_error"
                result.reason, result.detail = kind, f"{type(e).__name__}: {e}"[:200]
                return result
        if accept_any_type:
            result.html = body.decode("utf-8", errors="replace")
            return result
        if not body.strip():
            result.reason, result.detail = "empty_body", ""
            return result
        if looks_binary(body):
            result.reason, result.detail = "binary_content", "control bytes in a text/html body"
            return result
        result.html, _ = decode_html(body, result.content_type)
        return result

    def _read_body(self, resp: requests.Response, deadline: float, truncate_at: int | None = None) -> bytes:
        cap = truncate_at or self.s.max_body_bytes
        encoding = resp.headers.get("content-encoding", "")
        decomp = _decompressor(encoding)
        gzipped = decomp is not None and encoding.strip().lower() in ("gzip", "x-gzip")
        raw_deflate_ok = decomp is not None and not gzipped  # "deflate" sent without its zlib header
        sock = _socket_of(resp)
        out = bytearray()
        ended = False  # the compressed stream ended: only another gzip member may follow
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Abort("timeout", "total deadline exceeded while reading the body")
            if sock is not None:
                # Each recv may wait at most until the deadline: a trickle cannot stretch it.
                sock.settimeout(min(self.s.read_timeout, remaining))
            try:
                chunk = resp.raw.read1(CHUNK, decode_content=False)
            except (socket.timeout, TimeoutError) as e:
                raise _Abort("timeout", str(e)[:200]) from None
            except Exception as e:  # urllib3 wraps socket timeouts in its own errors
                if "timed out" in str(e).lower():
                    raise _Abort("timeout", str(e)[:200]) from None
                raise
            if not chunk:
                break
            if decomp is None:
                out += chunk
            else:
                data = chunk
                while data:
                    if ended:  # a gzip body of several members (as gzip(1) reads them); else trailing bytes
                        if not (gzipped and data[:2] == b"\x1f\x8b"):
                            return self._capped(out, cap, truncate_at)
                        decomp, ended = _decompressor(encoding), False
                    try:
                        # Bounded output per call: at most cap+1 bytes are ever inflated.
                        out += decomp.decompress(data, cap + 1 - len(out))
                        while decomp.unconsumed_tail and len(out) <= cap:
                            out += decomp.decompress(decomp.unconsumed_tail, cap + 1 - len(out))
                    except zlib.error as e:
                        if raw_deflate_ok and not out:
                            decomp, raw_deflate_ok = zlib.decompressobj(-zlib.MAX_WBITS), False
                            continue  # the same data again, as raw deflate
                        raise _Abort("bad_encoding", str(e)[:200]) from None
                    raw_deflate_ok = False
                    if len(out) > cap:
                        break
                    data, ended = (decomp.unused_data, True) if decomp.eof else (b"", False)
            if len(out) > cap:
                return self._capped(out, cap, truncate_at)
        return bytes(out)

    @staticmethod
    def _capped(out: bytearray, cap: int, truncate_at: int | None) -> bytes:
        if len(out) <= cap:
            return bytes(out)
        if truncate_at:
            return bytes(out[:cap])
        raise _Abort("too_large", f"more than {cap} bytes")


_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13))


def looks_binary(body: bytes) -> bool:
    head = body[:4096]
    if not head or head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 text is full of NULs
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))  # C-speed count
    return controls / len(head) > 0.05
