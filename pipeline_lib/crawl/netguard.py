"""Socket-level guards under requests: the connected peer is vetted, and a watchdog enforces deadlines.

Checking the address of a host name before the request is not enough: DNS can answer differently
a millisecond later (DNS rebinding). So every new connection is checked again on the *socket's*
peer address, right after TCP connect and before a byte of HTTP is sent. The same hook registers the
socket with a per-fetch watchdog that shuts it down at the deadline, which also bounds a server
that trickles its status line and headers (socket timeouts only bound the gap between bytes).

Connections are not reused (``Connection: close``), so every request passes through ``_new_conn``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class PrivatePeerError(OSError):
    """The socket connected to an address the crawl may not talk to."""


def is_public_ip(text: str) -> bool:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class FetchGuard:
    """Per-fetch context: which hosts may be private, the deadline, the sockets to cut at the deadline."""

    def __init__(self, allow_private_hosts: tuple[str, ...], deadline: float):
        self.allow_private_hosts = allow_private_hosts
        self.deadline = deadline
        self.sockets: list[socket.socket] = []
        self.refused_peer: str | None = None
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "FetchGuard":
        _local.guard = self
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        _local.guard = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in another thread
                except OSError:
                    pass

    def check_socket(self, host: str, sock: socket.socket) -> None:
        peer = sock.getpeername()[0]
        if host.lower().strip("[]") not in self.allow_private_hosts and not is_public_ip(peer):
            self.refused_peer = peer
            sock.close()
            raise PrivatePeerError(f"connected peer {peer} of {host} is not a public address")
        with self._lock:
            if self.expired:
                sock.close()
                raise TimeoutError("fetch deadline passed while connecting")
            self.sockets.append(sock)


class _GuardedMixin:
    def _new_conn(self):  # type: ignore[override]
        sock = super()._new_conn()
        guard: FetchGuard | None = getattr(_local, "guard", None)
        if guard is not None:
            guard.check_socket(self.host, sock)
        return sock


class _GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def guarded_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc from the environment
    adapter = GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
