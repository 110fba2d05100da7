"""A process-wide no-egress guard: any connection or name lookup off this machine is refused and logged.

The pipeline is meant to run with no network except the crawler's own fetches; a library that
quietly phones home (a public-suffix list refresh, a tokenizer download, telemetry) would break
that promise on an air-gapped cluster. ``install`` wraps ``socket.socket.connect``/``connect_ex``/
``sendto`` and ``socket.getaddrinfo``/``gethostbyname``: loopback is allowed (the embedded Prefect
server, the bundled sample site), everything else raises ``EgressBlocked`` and, when a log path is
given, appends one JSON line (pid, target, the calling frames) so a test can assert none was tried.

Set ``CRAWL2MODEL_NO_EGRESS=1`` (and optionally ``CRAWL2MODEL_EGRESS_LOG=/path``) and call
``install_from_env()`` early, e.g. from a ``sitecustomize`` module, so spawned worker processes
inherit the guard through their environment.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import traceback
from typing import Any

ENV_ENABLE = "CRAWL2MODEL_NO_EGRESS"
ENV_LOG = "CRAWL2MODEL_EGRESS_LOG"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}

_installed: dict[str, Any] = {}
_log_lock = threading.Lock()


class EgressBlocked(ConnectionRefusedError):
    """A connection or lookup to a host off this machine, refused by the no-egress guard."""


def is_loopback_host(host: Any) -> bool:
    """True for loopback names and addresses (and None/'' which mean 'this machine')."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0].lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _address_host(family: int, address: Any) -> Any:
    if family == getattr(socket, "AF_UNIX", None) or isinstance(address, (str, bytes)):
        return None  # a Unix socket path never leaves the machine
    if isinstance(address, tuple) and address:
        return address[0]
    return address


def _record(kind: str, target: Any) -> None:
    path = _installed.get("log")
    entry = {"pid": os.getpid(), "kind": kind, "target": repr(target),
             "stack": [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack(limit=14)[:-3]]}
    if path:
        with _log_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def _refuse(kind: str, target: Any) -> None:
    _record(kind, target)
    if _installed.get("block", True):
        raise EgressBlocked(f"no-egress guard: {kind} to {target!r} refused (only loopback is allowed)")


def install(log_path: str | None = None, block: bool = True) -> None:
    """Wrap the socket module once per process; later calls only update the log path / mode."""
    _installed.update(log=log_path, block=block)
    if _installed.get("done"):
        return
    _installed["done"] = True
    if log_path:  # one line per guarded process, so a test can see that workers were covered too
        with _log_lock, open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"pid": os.getpid(), "kind": "installed", "argv": list(getattr(__import__("sys"), "argv", []))}) + "\n")
    sock_cls = socket.socket
    orig_connect, orig_connect_ex, orig_sendto = sock_cls.connect, sock_cls.connect_ex, sock_cls.sendto
    orig_getaddrinfo, orig_gethostbyname = socket.getaddrinfo, socket.gethostbyname

    def connect(self, address):
        host = _address_host(self.family, address)
        if not is_loopback_host(host):
            _refuse("connect", address)
        return orig_connect(self, address)

    def connect_ex(self, address):
        host = _address_host(self.family, address)
        if not is_loopback_host(host):
            _refuse("connect", address)
        return orig_connect_ex(self, address)

    def sendto(self, data, *args):
        address = args[-1]
        host = _address_host(self.family, address)
        if not is_loopback_host(host):
            _refuse("sendto", address)
        return orig_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if not is_loopback_host(host):
            _refuse("getaddrinfo", host)
        return orig_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host):
        if not is_loopback_host(host):
            _refuse("gethostbyname", host)
        return orig_gethostbyname(host)

    sock_cls.connect, sock_cls.connect_ex, sock_cls.sendto = connect, connect_ex, sendto
    socket.getaddrinfo, socket.gethostbyname = getaddrinfo, gethostbyname


def install_from_env() -> bool:
    """Install when ``CRAWL2MODEL_NO_EGRESS`` is set to a true value; returns whether it did."""
    if os.environ.get(ENV_ENABLE, "").lower() not in ("1", "true", "yes", "on"):
        return False
    install(os.environ.get(ENV_LOG) or None, block=True)
    return True


def read_attempts(log_path: str) -> list[dict[str, Any]]:
    if not os.path.exists(log_path):
        return []
    with open(log_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
