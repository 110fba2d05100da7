"""URL normalisation and crawl scope.

Normalising is what makes "one page is fetched once": ``HTTP://Example.com:80/a/./b/../c#x`` and
``http://example.com/a/c`` are the same page, so they must become the same string before the
visited set sees them.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

# Characters that never need percent-encoding in a path or query; re-quoting with these as "safe"
# turns %7E and ~ into the same thing without changing what the server sees.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
_PERCENT_UNRESERVED = re.compile(r"%(4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)", re.I)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 5.2.4, on whole segments.
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _decode_unreserved(s: str) -> str:
    # RFC 3986 6.2.2: unreserved characters are decoded, the other escapes are uppercased, so
    # %e4 and %E4 (the same byte) give the same URL.
    s = _PERCENT_UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), s)
    return _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), s)


def ascii_host(host: str) -> str:
    """A host name as it is stored and compared: lowercase ASCII, IDNA (punycode) for Unicode names
    (fullwidth letters and ideographic full stops fold). UnicodeError for a name IDNA refuses."""
    return host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) URL, or None when it is not a crawlable http(s) URL."""
    url = url.strip()
    if not url:
        return None
    try:
        if base is not None:
            url = urljoin(base, url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return None
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return None
        host = ascii_host(host)
        port = parts.port
    except (ValueError, UnicodeError):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = quote(_decode_unreserved(parts.path), safe=_PATH_SAFE) or "/"
    path = _remove_dot_segments(path)
    query = quote(_decode_unreserved(parts.query), safe=_QUERY_SAFE)
    # Userinfo is dropped on purpose: credentials never belong in a crawl frontier.
    return urlunsplit((scheme, netloc, path, query, ""))


def host_key(url: str) -> str:
    """scheme://host[:port]: the unit of politeness and of robots.txt."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def hostname(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class Scope:
    """Which discovered URLs a crawl may follow."""

    def __init__(self, mode: str, seeds: list[str], allowed_domains: list[str] = (),
                 include_patterns: list[str] = (), exclude_patterns: list[str] = ()):
        self.mode = mode
        self.seed_hosts = {hostname(s) for s in seeds}
        self.added_hosts: set[str] = set()  # hosts seeds redirected to; saved in the crawl state
        self._lock = threading.Lock()  # add_seed runs in fetch worker threads
        self.domains = [d.lower().lstrip(".") for d in allowed_domains]
        self.include = [re.compile(p) for p in include_patterns]
        self.exclude = [re.compile(p) for p in exclude_patterns]

    def add_seed(self, url: str) -> None:
        """A seed that redirected: its target's host counts as a seed host from now on."""
        self.add_hosts([hostname(url)])

    def add_hosts(self, hosts) -> None:
        with self._lock:
            for host in hosts:
                if host not in self.seed_hosts:
                    self.seed_hosts.add(host)
                    self.added_hosts.add(host)

    def extra_hosts(self) -> list[str]:
        """The hosts added by seed redirects, for the checkpoint (a resumed crawl restores them)."""
        with self._lock:
            return sorted(self.added_hosts)

    def allows(self, url: str) -> bool:
        host = hostname(url)
        if self.mode == "same_host" and host not in self.seed_hosts:
            return False
        if self.mode == "domains" and not any(host == d or host.endswith("." + d) for d in self.domains):
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)
