"""The crawl frontier: per-host FIFO queues, one request in flight per host, a delay between them.

Hosts are served round-robin so one big site cannot starve the others; the visited set holds
every URL ever queued (normalised), so a page linked a thousand times is fetched once. The state
is plain JSON so a checkpoint can be written beside each shard and read back on resume.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any

from pipeline_lib.crawl.urls import host_key


class Frontier:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.queues: OrderedDict[str, deque[tuple[str, int]]] = OrderedDict()
        self.visited: set[str] = set()
        self.next_time: dict[str, float] = {}
        self.busy: set[str] = set()

    def add(self, url: str, depth: int) -> bool:
        """Queue a (normalised) URL unless it was seen before; True when it was new."""
        if url in self.visited:
            return False
        self.visited.add(url)
        self.queues.setdefault(host_key(url), deque()).append((url, depth))
        return True

    def queued(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def pop_ready(self) -> tuple[str, str, int] | None:
        """(host, url, depth) of the next host whose delay has passed and that is not busy."""
        now = self.clock()
        for host in list(self.queues):
            q = self.queues[host]
            if not q:
                del self.queues[host]
                continue
            if host in self.busy or self.next_time.get(host, 0.0) > now:
                continue
            url, depth = q.popleft()
            self.queues.move_to_end(host)  # round-robin: this host goes to the back of the line
            self.busy.add(host)
            return host, url, depth
        return None

    def release(self, host: str, delay: float) -> None:
        self.busy.discard(host)
        self.next_time[host] = self.clock() + delay

    def postpone(self, host: str, delay: float) -> None:
        """``host`` was just asked (a redirect landed there): its next request waits ``delay``."""
        self.next_time[host] = max(self.next_time.get(host, 0.0), self.clock() + delay)

    def requeue(self, host: str, url: str, depth: int) -> None:
        """Put a popped URL back at the front of its host's queue (it stays visited)."""
        self.queues.setdefault(host, deque()).appendleft((url, depth))

    def seconds_until_ready(self) -> float | None:
        """How long until some idle host may be fetched; None when nothing is queued for idle hosts."""
        now = self.clock()
        waits = [max(0.0, self.next_time.get(h, 0.0) - now) for h, q in self.queues.items() if q and h not in self.busy]
        return min(waits) if waits else None

    def to_state(self, inflight: list[tuple[str, int]] = ()) -> dict[str, Any]:
        """JSON-able state; URLs in flight go back to the front of their queues."""
        queued = [[u, d] for u, d in inflight]
        for q in self.queues.values():
            queued.extend([u, d] for u, d in q)
        return {"queued": queued, "visited": sorted(self.visited)}

    @classmethod
    def from_state(cls, state: dict[str, Any], clock=time.monotonic) -> "Frontier":
        f = cls(clock)
        f.visited = set(state.get("visited", []))
        for url, depth in state.get("queued", []):
            f.queues.setdefault(host_key(url), deque()).append((url, int(depth)))
            f.visited.add(url)
        return f
