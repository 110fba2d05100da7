"""robots.txt, fetched once per host and cached (RFC 9309 semantics).

- 2xx: parsed with protego and honoured for our user agent.
- 4xx (missing, forbidden), or a redirect loop / more than ``max_redirects`` hops: no restrictions.
- 5xx, 429 or unreachable: the whole host is disallowed for ``unavailable_ttl`` seconds, then asked
  again, up to ``unavailable_retries`` more times; the standard asks crawlers to assume "complete
  disallow" while the server is failing. ``retry_in`` tells the crawler how long to hold the host's
  pages while asks remain; after the last one they are rejected (``robots_unavailable``).
"""

from __future__ import annotations

import threading
import time

from protego import Protego

from pipeline_lib.crawl.fetcher import Fetcher
from pipeline_lib.crawl.urls import host_key

MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309: parse at least the first 500 KiB


def product_token(user_agent: str) -> str:
    """``MyBot`` of ``MyBot/1.2 (+https://example.org/bot)``."""
    token = user_agent.strip().split("/", 1)[0].split(None, 1)
    return token[0] if token else user_agent


class _Entry:
    __slots__ = ("parser", "unavailable_until", "detail", "failures")

    def __init__(self, parser: Protego | None, unavailable_until: float = 0.0, detail: str = "", failures: int = 0):
        self.parser, self.unavailable_until, self.detail = parser, unavailable_until, detail
        self.failures = failures  # robots.txt fetches in a row that failed (5xx or unreachable)


class RobotsCache:
    def __init__(self, fetcher: Fetcher, user_agent: str, unavailable_ttl: float = 60.0,
                 unavailable_retries: int = 0, clock=time.monotonic):
        self.fetcher = fetcher
        # Groups match the product token (RFC 9309 2.2.1), not the whole header: its "(+https://
        # example.org/bot)" comment made a group for "example" apply to us.
        self.user_agent = product_token(user_agent)
        self.unavailable_ttl = unavailable_ttl
        self.unavailable_retries = unavailable_retries
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches = 0

    def _entry(self, key: str) -> _Entry:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one robots.txt request per host even with concurrent workers
            entry = self._entries.get(key)
            if entry is None or (entry.parser is None and self.clock() >= entry.unavailable_until):
                failures = entry.failures if entry is not None else 0
                entry = self._load(key)
                if entry.parser is None:
                    entry.failures = failures + 1
                self._entries[key] = entry
            return entry

    def _load(self, key: str) -> _Entry:
        self.fetches += 1
        # A larger file is cut at 500 KiB and its start honoured (before, it allowed everything).
        result = self.fetcher.fetch(key + "/robots.txt", accept_any_type=True, truncate_at=MAX_ROBOTS_BYTES)
        if result.status is not None and 200 <= result.status < 300 and result.html is not None:
            # A UTF-8 BOM hid the first User-agent line from protego, and with it the group's rules.
            return _Entry(Protego.parse(result.html.removeprefix("\ufeff")))
        if result.status is not None and 400 <= result.status < 500 and result.status != 429:
            return _Entry(Protego.parse(""))
        if result.reason == "redirect_loop" or (result.reason == "too_many_redirects"
                                                 and self.fetcher.s.max_redirects >= 5):
            # RFC 9309 2.3.1.2: past (at least) five redirects robots.txt may be taken as unavailable,
            # i.e. a 4xx: no rules. Under a lower crawl.max_redirects the file may be one hop further:
            # the host is held as failing instead.
            return _Entry(Protego.parse(""))
        # 5xx, unreachable, or 429 (the host asks us to slow down: like a 5xx, as Google treats it)
        detail = f"robots.txt {result.status or result.reason}"
        return _Entry(None, self.clock() + self.unavailable_ttl, detail)

    def problem(self, url: str) -> str | None:
        """None when robots.txt lets us fetch ``url``, else a reject reason."""
        entry = self._entry(host_key(url))
        if entry.parser is None:
            return "robots_unavailable"
        if not entry.parser.can_fetch(url, self.user_agent):
            return "robots_disallowed"
        return None

    def retry_in(self, url: str) -> float | None:
        """Seconds until the robots.txt of ``url``'s host, which is failing, is asked again, while
        asks remain; None when the host is not on hold or its last ask failed too (reject its pages)."""
        entry = self._cached(host_key(url))
        if entry.parser is not None or entry.failures > self.unavailable_retries:
            return None
        return max(0.0, entry.unavailable_until - self.clock())

    def _cached(self, key: str) -> _Entry:
        """The entry ``problem`` just used, not asked again even when its hold has run out."""
        entry = self._entries.get(key)
        return entry if entry is not None else self._entry(key)

    def crawl_delay(self, url: str) -> float:
        entry = self._cached(host_key(url))
        if entry.parser is None:
            return 0.0
        delay = entry.parser.crawl_delay(self.user_agent)
        if delay is None:
            rate = entry.parser.request_rate(self.user_agent)
            if rate is not None and rate.requests:
                delay = rate.seconds / rate.requests
        return float(delay or 0.0)
