"""URL blocklist stage: drop pages whose URL is blocklisted or looks adult, before any parsing.

Rules, in FineWeb's order, each with its own reason:

- ``blocklist_domain``: the host, or any parent of it down to its registered domain, is listed
  (so ``casino.example`` also blocks ``www.casino.example``). Registered domains come from
  tldextract's bundled public-suffix snapshot (no network).
- ``blocklist_url``: a ``host/path`` entry is a prefix of the URL's host and path, ending at a
  path boundary (``127.0.0.1/casino/`` blocks ``http://127.0.0.1:18642/casino/x.html``; ``a.b/dir``
  blocks ``a.b/dir`` and ``a.b/dir/x`` but not ``a.b/directory``). Scheme, port and ``www.`` are
  ignored on both sides; comparison is case-insensitive.
- ``url_banned_word``: a token of the URL (split on non-alphanumerics) is a hard banned word.
- ``url_soft_words``: at least ``soft_words_min`` different soft words are URL tokens.
- ``url_banned_subword``: a banned subword occurs in the URL reduced to its letters and digits.
- ``url_missing`` / ``url_invalid`` / ``url_bad_scheme``: no URL, no usable host or port, or not http(s).

Page rows are judged on ``url`` and, when present and set, on ``final_url`` too (a redirect may
land on a blocked site).

Blocklists are plain files (one entry a line, ``#`` comments) and/or a UT1-layout folder
(``<category>/domains`` and ``<category>/urls``). Everything is compiled into sets once, so a row
costs a URL split, a few set lookups and one regex search.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote

import pyarrow as pa
import tldextract

from pipeline_lib.config import PipelineConfig
from pipeline_lib.crawl.urls import ascii_host
from pipeline_lib.stage import Stage, StageResult

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# Characters after which a path prefix counts as a whole segment ("/dir" matches "/dir/x", "/dir?q").
_PATH_BOUNDARIES = "/?#;&"
_HOST_CACHE_SIZE = 100_000


def read_list(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a list file, stripped and lowercased."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip().lower()
            if line:
                out.append(line)
    return out


def bundled_list(name: str) -> list[str]:
    ref = resources.files("pipeline_lib") / "data" / "urlfilter" / name
    with resources.as_file(ref) as path:
        return read_list(path)


def _strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def split_entry(entry: str) -> tuple[str, str | None]:
    """A blocklist entry as (host, path prefix or None for a domain entry)."""
    entry = entry.strip().lower()
    if "://" in entry:
        entry = entry.split("://", 1)[1]
    host, slash, path = entry.partition("/")
    if host.startswith("[") and "]" in host:  # IPv6 literal, possibly with a port
        host = host[: host.index("]") + 1]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.strip(".").strip()
    if not host.isascii() and not host.startswith("["):
        # As the crawler stores hosts, so a Unicode entry and a crawled URL of one site compare equal.
        try:
            host = ascii_host(host)
        except UnicodeError:
            pass  # not a valid name: kept as is, and url_invalid decides later
    host = _strip_www(host.strip("."))
    return host, ("/" + (unquote(path) if "%" in path else path) if slash else None)



# A scheme with no "//" authority (javascript:, mailto:, data:); "host:8080/..." is a port, not one.
_OPAQUE_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:(?!//)(?!\d*(?:[/?#]|$))")


def _valid_host_port(netloc: str, host: str) -> bool:
    """What a crawler could have connected to: DNS-sized names, a port in range, closed IPv6 brackets."""
    if netloc.startswith("["):
        if "]" not in netloc:
            return False
        port = netloc.split("]", 1)[1].removeprefix(":")
    else:
        port = netloc.rsplit(":", 1)[1] if ":" in netloc else ""
    if port and (not port.isdigit() or int(port) > 65535):
        return False
    return len(host) <= 253 and all(len(label) <= 63 for label in host.split("."))


class Blocklist:
    """Domains and host+path prefixes, held as sets for O(1) lookups per candidate."""

    def __init__(self) -> None:
        self.domains: set[str] = set()
        self.url_prefixes: dict[str, set[str]] = {}

    def add(self, entry: str) -> None:
        host, path = split_entry(entry)
        if not host:
            return
        if path is None:
            self.domains.add(host)
        else:
            self.url_prefixes.setdefault(host, set()).add(path)

    def add_all(self, entries: Iterable[str]) -> None:
        for e in entries:
            self.add(e)

    def __len__(self) -> int:
        return len(self.domains) + sum(len(p) for p in self.url_prefixes.values())

    def url_blocked(self, host: str, path: str) -> bool:
        prefixes = self.url_prefixes.get(host)
        if not prefixes:
            return False
        if path in prefixes:
            return True
        # Every prefix of the path that ends at a boundary, with and without the boundary char.
        for i, ch in enumerate(path):
            if ch in _PATH_BOUNDARIES and (path[:i] in prefixes or path[: i + 1] in prefixes):
                return True
        return False


def load_ut1(root: str | Path, categories: Iterable[str], blocklist: Blocklist) -> dict[str, int]:
    """Load ``<root>/<category>/{domains,urls}``; returns entries per category. Missing files are skipped,
    a missing category folder is an error (a typo would otherwise silently block nothing)."""
    counts = {}
    for cat in categories:
        folder = Path(root) / cat
        if not folder.is_dir():
            raise FileNotFoundError(f"UT1 category folder not found: {folder}")
        before = len(blocklist)
        domains, urls = folder / "domains", folder / "urls"
        if domains.is_file():
            for d in read_list(domains):
                blocklist.domains.add(split_entry(d)[0])
        if urls.is_file():
            for u in read_list(urls):
                host, path = split_entry(u)
                if host:
                    blocklist.url_prefixes.setdefault(host, set()).add(path or "/")
        counts[cat] = len(blocklist) - before
    return counts


class UrlWordRules:
    """FineWeb's URL word heuristics: hard words, soft words (>= N distinct) and subwords."""

    def __init__(self, banned_words: Iterable[str], soft_words: Iterable[str], subwords: Iterable[str],
                 soft_words_min: int = 2):
        self.banned_words = frozenset(banned_words)
        self.soft_words = frozenset(soft_words)
        self.soft_words_min = soft_words_min
        subs = sorted({_NON_ALNUM.sub("", s) for s in subwords} - {""}, key=len, reverse=True)
        self.subword_re = re.compile("|".join(map(re.escape, subs))) if subs else None

    def check(self, url_lower: str) -> str | None:
        tokens = set(_NON_ALNUM.split(url_lower))
        if not self.banned_words.isdisjoint(tokens):
            return "url_banned_word"
        if len(self.soft_words & tokens) >= self.soft_words_min:
            return "url_soft_words"
        if self.subword_re is not None and self.subword_re.search(_NON_ALNUM.sub("", url_lower)):
            return "url_banned_subword"
        return None


class UrlFilter:
    """The matching logic, independent of Arrow: ``reason(url)`` is None for an allowed URL."""

    def __init__(self, blocklist: Blocklist, word_rules: UrlWordRules | None):
        self.blocklist = blocklist
        self.word_rules = word_rules
        self._extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        # Per-host answers: crawls revisit hosts, and the domain walk depends on the host only.
        self._host_cache: dict[str, bool] = {}

    def domain_candidates(self, host: str) -> list[str]:
        """The host and its parents down to the registered domain (two labels when none is known)."""
        if _is_ip(host) or "." not in host:
            return [host]
        labels = host.split(".")
        registered = self._extract(host).top_domain_under_public_suffix
        floor = registered.count(".") + 1 if registered else 2
        return [".".join(labels[i:]) for i in range(0, max(1, len(labels) - floor + 1))]

    def host_blocked(self, host: str) -> bool:
        if not self.blocklist.domains:
            return False
        hit = self._host_cache.get(host)
        if hit is None:
            if len(self._host_cache) >= _HOST_CACHE_SIZE:
                self._host_cache.clear()
            hit = any(c in self.blocklist.domains for c in self.domain_candidates(host))
            self._host_cache[host] = hit
        return hit

    def reason(self, url: Any) -> str | None:
        if not isinstance(url, str) or not url.strip():
            return "url_missing"
        url_lower = url.strip().lower()
        if "://" in url_lower:
            if url_lower.split("://", 1)[0] not in ("http", "https"):
                return "url_bad_scheme"
        elif _OPAQUE_SCHEME.match(url_lower):  # javascript:, mailto:, data: ... (not host:port)
            return "url_bad_scheme"
        rest = url_lower.split("://", 1)[1] if "://" in url_lower else url_lower
        if rest.startswith("//"):
            rest = rest[2:]
        end = len(rest)
        for sep in "/?#":
            i = rest.find(sep)
            if i != -1 and i < end:
                end = i
        netloc, path = rest[:end], rest[end:]
        netloc = netloc.rsplit("@", 1)[-1]
        host, _ = split_entry(netloc)
        if not host or any(c.isspace() for c in host) or not _valid_host_port(netloc, host):
            return "url_invalid"
        if self.host_blocked(host):
            return "blocklist_domain"
        path = path.split("#", 1)[0] or "/"
        if path[0] == "?":
            path = "/" + path
        if "%" in path:  # /%63asino/ is /casino/, as blocklist entries are (decoded alike)
            path = unquote(path)
        if self.blocklist.url_blocked(host, path):
            return "blocklist_url"
        if self.word_rules is not None:
            # Percent-escapes decoded first (WARC and document URLs come as written: /%70orn/).
            return self.word_rules.check(unquote(url_lower).lower() if "%" in url_lower else url_lower)
        return None


def build_url_filter(cfg: PipelineConfig) -> tuple[UrlFilter, dict[str, int]]:
    """A UrlFilter from the ``urlfilter`` config section, plus how many entries came from where."""
    section = cfg.urlfilter
    blocklist = Blocklist()
    sizes: dict[str, int] = {}
    for f in section.blocklist_files:
        before = len(blocklist)
        blocklist.add_all(read_list(cfg.resolve_path(f)))
        sizes[f"file:{f}"] = len(blocklist) - before
    if section.ut1_dir:
        for cat, n in load_ut1(cfg.resolve_path(section.ut1_dir), section.ut1_categories, blocklist).items():
            sizes[f"ut1:{cat}"] = n
    rules = None
    if section.url_word_rules:
        def words(path: str | None, default: str) -> list[str]:
            return read_list(cfg.resolve_path(path)) if path else bundled_list(default)

        rules = UrlWordRules(words(section.banned_words_file, "banned_words.txt"),
                             words(section.soft_words_file, "soft_words.txt"),
                             words(section.banned_subwords_file, "banned_subwords.txt"),
                             section.soft_words_min)
    return UrlFilter(blocklist, rules), sizes


class UrlFilterStage(Stage):
    name = "urlfilter"
    section = "urlfilter"

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg)
        self.filter, self.sizes = build_url_filter(cfg)

    @classmethod
    def input_files(cls, cfg: PipelineConfig) -> list[str]:
        """The block lists and word lists the config names (the bundled ones come with the code)."""
        section = cfg.urlfilter
        files = [cfg.resolve_path(f) for f in section.blocklist_files]
        if section.ut1_dir:
            root = Path(cfg.resolve_path(section.ut1_dir))
            files += [str(root / cat / name) for cat in section.ut1_categories for name in ("domains", "urls")
                      if (root / cat / name).is_file()]
        if section.url_word_rules:
            files += [cfg.resolve_path(f) for f in (section.banned_words_file, section.soft_words_file,
                                                    section.banned_subwords_file) if f]
        return files

    def process(self, table: pa.Table) -> StageResult:
        if not self.cfg.urlfilter.enabled:
            return StageResult.keep_all(table)
        if "url" not in table.column_names:
            return StageResult.split(table, ["url_missing"] * table.num_rows)
        reason = self.filter.reason
        reasons = [reason(u) for u in table.column("url").to_pylist()]
        if "final_url" in table.column_names:
            # A redirect can land on a blocked site: the page we hold is the final URL's.
            for i, final in enumerate(table.column("final_url").to_pylist()):
                if reasons[i] is None and final:
                    reasons[i] = reason(final)
        return StageResult.split(table, reasons)

    def manifest_extra(self) -> dict[str, Any]:
        return {"blocklist_entries": self.sizes}
