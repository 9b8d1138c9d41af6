"""Free loopback ports chosen by the OS (bind to port 0, read the port, close)."""

from __future__ import annotations

import socket
from contextlib import ExitStack

__all__ = ["free_port", "free_ports"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind(host: str) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that was free a moment ago."""
    with _bind(host) as sock:
        return int(sock.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return `n` distinct free ports; all sockets stay bound until all are chosen."""
    if n < 0:
        raise ValueError("n must be >= 0")
    with ExitStack() as stack:
        socks = [stack.enter_context(_bind(host)) for _ in range(n)]
        return [int(s.getsockname()[1]) for s in socks]
