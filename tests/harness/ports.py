"""Free loopback ports for listeners that are bound later by another process (Envoy, from xDS).

Binding to port 0 hands out a port of the kernel's ephemeral range, the range it also takes the
local ports of outgoing connections from. A port chosen that way, closed, and bound a moment later
by Envoy (its listener ports arrive over xDS, so they must be known in advance) can be taken in
between by any outgoing connection of the test run; Envoy then rejects the listener ("cannot bind:
Address already in use") and the test waits in vain for an ACK. That happened under full test runs.
So ports come from below the ephemeral range, which the kernel never hands out by itself: drawn at
random, each checked by binding it (the OS says whether it is free), all held until all are chosen.
Where the range leaves no room below it, port 0 is used as before.
"""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from pathlib import Path

__all__ = ["free_port", "free_ports"]

_LOW = 20_000  # above the well-known and the usual registered service ports
_ATTEMPTS = 200


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


_RNG = random.Random()
_START = _ephemeral_start()


def _bind(host: str, port: int) -> socket.socket | None:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        if port == 0:
            raise
        return None
    except BaseException:
        sock.close()
        raise
    return sock


def _reserve(host: str, taken: set[int]) -> socket.socket:
    if _START - _LOW >= 1_000:
        for _ in range(_ATTEMPTS):
            port = _RNG.randrange(_LOW, _START)
            if port in taken:
                continue
            sock = _bind(host, port)
            if sock is not None:
                return sock
    sock = _bind(host, 0)
    assert sock is not None
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that was free a moment ago (outside the ephemeral range when possible)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return `n` distinct free ports; all sockets stay bound until all are chosen."""
    if n < 0:
        raise ValueError("n must be >= 0")
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(n):
            sock = stack.enter_context(_reserve(host, set(ports)))
            ports.append(int(sock.getsockname()[1]))
        return ports
