"""The crawl loop: frontier -> workers -> page shards, checkpointed after every shard.

Concurrency is across hosts (a thread pool of ``concurrency`` workers, never two requests to one
host at once). The main thread owns the frontier, the link extraction and the shard writing, so
the frontier needs no locks and a checkpoint is a consistent snapshot.

Resume protocol (files under ``<out_dir>/_crawl_state/``):
  1. write shard N's data files, 2. write ``part-N.json`` (frontier + visited, with the URLs still
  in flight put back in the queue), 3. write shard N's manifest (the "done" marker),
  4. delete the previous state file. A resumed crawl loads the state of the newest shard that has
  a manifest, so a kill at any point refetches only pages that were never written.
When the crawl ends, ``done.json`` records it; a rerun with the same crawl config does nothing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import pyarrow as pa
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from pipeline_lib import shards
from pipeline_lib.config import ConfigError, CrawlConfig, PipelineConfig
from pipeline_lib.crawl.fetcher import FetchResult, Fetcher, FetchSettings, address_problem
from pipeline_lib.crawl.frontier import Frontier
from pipeline_lib.crawl.ingest import WARC_FIRST_SHARD
from pipeline_lib.crawl.robots import RobotsCache
from pipeline_lib.crawl.urls import Scope, host_key, normalize_url
from pipeline_lib.schema import PAGE_REJECT_SCHEMA, PAGE_SCHEMA, doc_id
from pipeline_lib.stage import StageResult, write_result

STAGE = "00_crawl"
STATE_DIR = "_crawl_state"
DONE_FILE = "done.json"


@dataclass
class Outcome:
    url: str
    depth: int
    result: FetchResult
    fetched_at: datetime
    host_delay: float
    fetched: bool  # False when no request for the page itself was made (robots, address)
    deferred: bool = False  # its host's robots.txt is failing and will be asked again: page back in the queue


def settings_from(c: CrawlConfig) -> FetchSettings:
    return FetchSettings(
        user_agent=c.user_agent, connect_timeout=c.connect_timeout, read_timeout=c.read_timeout,
        total_timeout=c.total_timeout, max_body_bytes=c.max_body_bytes, max_redirects=c.max_redirects,
        max_retries=c.max_retries, max_retry_wait=c.max_retry_wait,
        allow_private_hosts=tuple(private_host_name(h) for h in c.allow_private_hosts))


def private_host_name(host: str) -> str:
    """An ``--allow-private`` value as crawled URLs spell their host: "[::1]" is "::1", "localhost."
    is "localhost" (they were refused as private_address, written either way)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".") or host


def extract_links(html: str, base_url: str) -> list[str]:
    tree = HTMLParser(html)
    for meta in tree.css("meta[name]"):
        if (meta.attributes.get("name") or "").lower() == "robots":
            directives = {d.strip() for d in (meta.attributes.get("content") or "").lower().split(",")}
            if directives & {"nofollow", "none"}:  # "none" is noindex, nofollow
                return []
    base_tag = tree.css_first("base[href]")
    if base_tag is not None:
        base_url = normalize_url(base_tag.attributes.get("href") or "", base_url) or base_url
    links = []
    for a in tree.css("a[href]"):
        if "nofollow" in (a.attributes.get("rel") or "").lower():
            continue
        url = normalize_url(a.attributes.get("href") or "", base_url)
        if url:
            links.append(url)
    return links


class Crawler:
    def __init__(self, cfg: PipelineConfig, fs, out_dir: str, progress: Callable[[dict], None] | None = None):
        self.cfg = cfg
        self.c = cfg.crawl
        self.fs, self.out_dir, self.progress = fs, out_dir, progress
        self.config_hash = cfg.section_hash("crawl")
        self.fetcher = Fetcher(settings_from(self.c))
        self.robots = RobotsCache(self.fetcher, self.c.user_agent, unavailable_ttl=self.c.robots_unavailable_seconds,
                                  unavailable_retries=self.c.robots_unavailable_retries)
        seeds = []
        for raw in self.c.seeds:
            url = normalize_url(raw)
            if url is None:  # CrawlConfig checks seeds too; a crawl never silently drops one
                raise ConfigError(f"crawl.seeds: {raw!r} is not an http(s) URL with a host")
            seeds.append(url)
        self.scope = Scope(self.c.scope, seeds, self.c.allowed_domains, self.c.include_patterns, self.c.exclude_patterns)
        self.seeds = seeds
        self.kept: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.shards_written: list[str] = []
        self.pages_written = 0
        self.rejected_written = 0
        self.fetched = 0
        self.next_shard = 0
        self.frontier = Frontier()
        self.buffer_started = time.perf_counter()

    # ---- state -----------------------------------------------------------------------------
    def _state_path(self, leaf: str) -> str:
        return shards.join(self.out_dir, STATE_DIR, leaf)

    def load(self) -> dict | None:
        """Restore the frontier from the newest complete shard; returns done.json if finished."""
        done_path = self._state_path(DONE_FILE)
        done = json.loads(shards.read_bytes(self.fs, done_path)) if shards.exists(self.fs, done_path) else None
        if done is None and "warc" not in self.cfg.source.kind:
            # Leftovers of a write that was killed. Beside WARC ingest (crawl+warc) the ingest jobs may
            # be writing here right now: pipeline.source_jobs cleaned the folder before they started.
            shards.remove_temp_files(self.fs, self.out_dir)
        # Only the crawl's own shards: WARC ingest may share the folder from WARC_FIRST_SHARD on.
        names = [n for n in shards.list_shards(self.fs, self.out_dir) if int(n.split("-", 1)[1]) < WARC_FIRST_SHARD]
        if not names:
            for seed in self.seeds:
                self.frontier.add(seed, 0)
            return done
        last = names[-1]
        state_path = self._state_path(last + ".json")
        if not shards.exists(self.fs, state_path):
            raise shards.ShardError(f"{state_path}: crawl state missing for shard {last}; cannot resume safely")
        state = json.loads(shards.read_bytes(self.fs, state_path))
        self.frontier = Frontier.from_state(state["frontier"])
        self.scope.add_hosts(state.get("seed_redirect_hosts", []))  # hosts seeds redirected to
        for seed in self.seeds:  # seeds added since the last run join the queue; known ones are no-ops
            self.frontier.add(seed, 0)
        self.fetched = int(state["fetched"])
        self.next_shard = int(last.rsplit("-", 1)[1]) + 1
        if self._deepen(names, state.get("max_depth")) + self._retry_now_allowed(names, state):
            done = None  # new pages to fetch: the crawl is not finished
        return done

    def _retry_now_allowed(self, names: list[str], state: dict) -> int:
        """A rerun that allows a private host (--allow-private) the last run did not: the URLs of
        that host it refused as private_address (a localhost seed, typically) stay visited, so the
        rerun fetched nothing. They are queued again, once: only for hosts newly allowed (the state
        records the allowed hosts), and not a URL with a later row or one already queued."""
        allowed = {private_host_name(h) for h in self.c.allow_private_hosts}
        allowed -= set(state.get("allow_private_hosts", []))  # a state from before this knew none
        if not allowed:
            return 0
        manifests = [(name, shards.load_manifest(self.fs, self.out_dir, name) or {}) for name in names]
        if not any(m.get("counters", {}).get("rejected.private_address") for _, m in manifests):
            return 0
        refused: dict[str, int] = {}  # in shard order: a later row of the same URL settles it
        for name, manifest in manifests:
            for which in ("kept", "rejected"):
                if which not in manifest.get("files", {}):
                    continue
                columns = ["url", "depth"] + (["reject_reason"] if which == "rejected" else [])
                table = shards.read_verified(self.fs, self.out_dir, name, which=which, columns=columns)
                reasons = table.column("reject_reason").to_pylist() if which == "rejected" else [None] * table.num_rows
                for url, depth, reason in zip(table.column("url").to_pylist(), table.column("depth").to_pylist(),
                                              reasons):
                    if reason == "private_address":
                        refused[url] = depth or 0
                    else:
                        refused.pop(url, None)
        queued = {url for queue in self.frontier.queues.values() for url, _ in queue}
        again = [(url, depth) for url, depth in refused.items()
                 if (urlsplit(url).hostname or "").lower() in allowed and url not in queued]
        for url, depth in again:
            self.frontier.requeue(host_key(url), url, depth)
        return len(again)

    def _deepen(self, names: list[str], old_max_depth: int | None) -> int:
        """A rerun with a larger max_depth: the links of the pages at the old limit were never
        queued (and those pages are never fetched again), so they are read back from the shards
        and queued now. Returns how many links joined the queue."""
        if old_max_depth is None or old_max_depth >= self.c.max_depth:  # None: a state from before this
            return 0
        added = 0
        for name in names:
            table = shards.read_verified(self.fs, self.out_dir, name, columns=["final_url", "html", "depth"])
            for i, depth in enumerate(table.column("depth").to_pylist()):
                if depth != old_max_depth:
                    continue
                html, final_url = table.column("html")[i].as_py(), table.column("final_url")[i].as_py()
                added += sum(self.frontier.add(link, depth + 1)
                             for link in extract_links(html or "", final_url) if self.scope.allows(link))
        return added

    def _write_state(self, name: str, inflight: list[tuple[str, int]]) -> None:
        state = {"shard": name, "fetched": self.fetched - len(inflight), "config_hash": self.config_hash,
                 "max_depth": self.c.max_depth,
                 "allow_private_hosts": sorted({private_host_name(h) for h in self.c.allow_private_hosts}),
                 "frontier": self.frontier.to_state(inflight), "seed_redirect_hosts": self.scope.extra_hosts()}
        shards.write_bytes_atomic(self.fs, self._state_path(name + ".json"), json.dumps(state).encode())

    def _drop_old_states(self, keep: str) -> None:
        """Only the newest shard's state is needed; older ones (a kill may leave two) go."""
        state_dir = self.fs._strip_protocol(shards.join(self.out_dir, STATE_DIR))
        for path in self.fs.ls(state_dir, detail=False):
            leaf = path.rsplit("/", 1)[-1]
            if leaf.startswith("part-") and leaf.endswith(".json") and leaf != keep:
                self.fs.rm(path)

    # ---- shards ----------------------------------------------------------------------------
    def flush(self, inflight: list[tuple[str, int]]) -> None:
        if not self.kept and not self.rejected:
            return
        name = shards.shard_name(self.next_shard)
        kept = pa.Table.from_pylist(self.kept, schema=PAGE_SCHEMA)
        rejected = pa.Table.from_pylist(self.rejected, schema=PAGE_REJECT_SCHEMA)
        result = StageResult(kept, rejected)
        # State before the manifest: the manifest (written last by write_result) vouches for both.
        self._write_state(name, inflight)
        write_result(self.fs, self.out_dir, name, STAGE, kept.num_rows + rejected.num_rows, result,
                     self.config_hash, [], time.perf_counter() - self.buffer_started,
                     extra={"source": "crawl", "crawl_state": shards.join(STATE_DIR, name + ".json"),
                            # a running total, not a per-shard counter: counters are summed over shards
                            "fetched_total": self.fetched - len(inflight)})
        self._drop_old_states(keep=name + ".json")
        self.shards_written.append(name)
        self.pages_written += kept.num_rows
        self.rejected_written += rejected.num_rows
        self.next_shard += 1
        self.kept, self.rejected = [], []
        self.buffer_started = time.perf_counter()
        if self.progress:
            self.progress({"shard": name, "pages": self.pages_written, "rejected": self.rejected_written,
                           "fetched": self.fetched - len(inflight), "queued": self.frontier.queued()})

    def _record(self, o: Outcome) -> None:
        r = o.result
        if r.ok:
            self.kept.append({"id": doc_id(o.url), "url": o.url, "final_url": r.final_url, "status": r.status,
                              "content_type": r.content_type, "html": r.html, "fetched_at": o.fetched_at,
                              "depth": o.depth, "source": "crawl",
                              "headers": json.dumps(r.headers, sort_keys=True, ensure_ascii=False)})
        else:
            self.reasons[r.reason] += 1
            self.rejected.append({"id": doc_id(o.url), "url": o.url, "status": r.status, "depth": o.depth,
                                  "fetched_at": o.fetched_at, "source": "crawl", "reject_reason": r.reason,
                                  "detail": r.detail[:500]})

    # ---- fetching --------------------------------------------------------------------------
    def _hop_check(self, origin: str, depth: int, hop: str) -> str | None:
        """Vets every hop of a fetch against robots.txt, and every redirect against the scope.

        A seed's redirect is followed wherever it lands (example.com -> www.example.com is how
        many sites answer): its host joins the seeds' hosts, as if it had been the seed. Any
        other redirect out of scope is refused before a request is made.
        """
        if hop != origin and not self.scope.allows(hop):
            if depth > 0:
                return "out_of_scope"
            self.scope.add_seed(hop)
        problem = self.robots.problem(hop)
        if problem is None and hop != origin and hop in self.frontier.visited:
            # Landing on a page that is (or will be) fetched under its own URL: one copy only.
            return "duplicate_redirect"
        return problem

    def _work(self, url: str, depth: int) -> Outcome:
        now = datetime.now(timezone.utc)
        try:
            problem = address_problem(url, self.fetcher.s.allow_private_hosts) or self.robots.problem(url)
            delay = max(self.c.delay_seconds, min(self.robots.crawl_delay(url), self.c.max_crawl_delay))
            if problem == "robots_unavailable" and (hold := self.robots.retry_in(url)) is not None:
                return Outcome(url, depth, FetchResult(url, url, reason=problem), now, hold, fetched=False,
                               deferred=True)
            if problem:
                return Outcome(url, depth, FetchResult(url, url, reason=problem), now, 0.0, fetched=False)
            result = self.fetcher.fetch(url, check=lambda hop: self._hop_check(url, depth, hop), min_retry_wait=delay)
            if result.reason == "robots_unavailable" and (hold := self.robots.retry_in(result.final_url)) is not None:
                # A redirect onto a host whose robots.txt is failing (http -> https, a seed -> www):
                # the page waits like that host's own pages, and is asked for again later.
                return Outcome(url, depth, result, now, max(hold, delay), fetched=False, deferred=True)
            if result.retry_after and result.status in (429, 503):
                # A Retry-After longer than we wait for this page still holds its host (capped like
                # a Crawl-delay): its other pages were asked for at the plain delay and all got 429.
                delay = max(delay, min(result.retry_after, max(self.c.max_crawl_delay, self.c.max_retry_wait)))
        except Exception as e:  # a bug or an exotic failure is one rejected page, not a dead crawl
            result = FetchResult(url, url, reason="fetch_error", detail=f"{type(e).__name__}: {e}"[:500])
            delay = self.c.delay_seconds
        return Outcome(url, depth, result, now, delay, fetched=True)

    def _landing_delay(self, outcome: Outcome) -> tuple[str, float] | None:
        """The host a redirect landed on and its politeness delay: that host was asked too."""
        final = outcome.result.final_url
        # status None: no answer came from there (a hop refused before its request, a timeout)
        if not outcome.fetched or outcome.result.status is None or not final or final == outcome.url:
            return None
        try:
            host = host_key(final)
            if host == host_key(outcome.url):
                return None
            return host, max(self.c.delay_seconds, min(self.robots.crawl_delay(final), self.c.max_crawl_delay))
        except Exception:
            return None

    def _links(self, outcome: Outcome) -> list[str]:
        try:
            return extract_links(outcome.result.html, outcome.result.final_url)
        except Exception:  # an unparsable page still counts as fetched; it just leads nowhere
            return []

    def run(self) -> dict[str, Any]:
        pool = ThreadPoolExecutor(self.c.concurrency, thread_name_prefix="crawl")
        inflight: dict = {}
        try:
            while True:
                while len(inflight) < self.c.concurrency and self.fetched < self.c.max_pages:
                    item = self.frontier.pop_ready()
                    if item is None:
                        break
                    host, url, depth = item
                    self.fetched += 1
                    inflight[pool.submit(self._work, url, depth)] = (host, url, depth)
                if not inflight:
                    wait_s = self.frontier.seconds_until_ready()
                    if wait_s is None or self.fetched >= self.c.max_pages:
                        break
                    time.sleep(min(wait_s, 1.0))
                    continue
                can_start_more = len(inflight) < self.c.concurrency and self.fetched < self.c.max_pages
                wait_s = self.frontier.seconds_until_ready() if can_start_more else None
                finished, _ = wait(list(inflight), timeout=wait_s, return_when=FIRST_COMPLETED)
                for fut in finished:
                    host, url, depth = inflight.pop(fut)
                    outcome = fut.result()
                    self.frontier.release(host, outcome.host_delay)
                    landed = self._landing_delay(outcome)
                    if landed is not None:  # http -> https, apex -> www: the other host waits its delay too
                        self.frontier.postpone(*landed)
                    if not outcome.fetched:
                        self.fetched -= 1  # the page budget counts requests, not refusals
                    if outcome.deferred:  # waits, first in its host's queue, for robots.txt to be asked again
                        self.frontier.requeue(host, url, depth)
                        continue
                    r = outcome.result
                    if r.ok and r.final_url != url and r.final_url in self.frontier.visited:
                        # Two fetches raced to the same page (a redirect and a link, or two
                        # redirects): the copy under the URL of its own is the one kept.
                        outcome.result = FetchResult(url, r.final_url, status=r.status, reason="duplicate_redirect",
                                                     detail=f"redirected to {r.final_url}, already queued or fetched",
                                                     attempts=r.attempts)
                    self._record(outcome)
                    if outcome.result.ok:  # a later link to where a redirect landed is not fetched again
                        self.frontier.visited.add(outcome.result.final_url)
                    if outcome.result.ok and depth < self.c.max_depth:
                        for link in self._links(outcome):
                            if self.scope.allows(link):
                                self.frontier.add(link, depth + 1)
                    if len(self.kept) + len(self.rejected) >= self.c.pages_per_shard:
                        self.flush([(u, d) for _h, u, d in inflight.values()])
            self.flush([])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.fetcher.close()
        return self.summary(skipped=False)

    def summary(self, skipped: bool) -> dict[str, Any]:
        return summarize(self.fs, self.out_dir, skipped)


def summarize(fs, out_dir: str, skipped: bool) -> dict[str, Any]:
    names = shards.list_shards(fs, out_dir)
    pages = rejected = 0
    reasons: Counter[str] = Counter()
    for name in names:
        m = shards.load_manifest(fs, out_dir, name)
        pages += m["counters"].get("kept", 0)
        rejected += m["counters"].get("rejected", 0)
        for k, v in m["counters"].items():
            if k.startswith("rejected."):
                reasons[k.split(".", 1)[1]] += v
    return {"shards": len(names), "pages": pages, "rejected": rejected, "reasons": dict(sorted(reasons.items())),
            "skipped": skipped}


def run_crawl(cfg: PipelineConfig, fs, out_dir: str, progress: Callable[[dict], None] | None = None) -> dict:
    crawler = Crawler(cfg, fs, out_dir, progress)
    done = crawler.load()
    if done is not None and done.get("config_hash") == crawler.config_hash:
        crawler.fetcher.close()
        return crawler.summary(skipped=True)
    summary = crawler.run()
    marker = {"done": True, "config_hash": crawler.config_hash, "shards": summary["shards"],
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    shards.write_bytes_atomic(fs, crawler._state_path(DONE_FILE), json.dumps(marker, sort_keys=True).encode())
    return summary
