"""A traffic prober, run as its own process (so that it shares no GIL with the control plane).

`python -m bench.prober PORT HOST PATH`: sends requests over one keep-alive connection, one
about every millisecond, and prints `<CLOCK_MONOTONIC seconds> <x-backend or status>` each time
the answer differs from the previous one (and once at the start). CLOCK_MONOTONIC is one clock
for every process of the machine, so the parent compares these times with its own. Stops when
stdin closes.
"""

from __future__ import annotations

import sys
import threading
import time

from tests.harness.http import Client


def main() -> int:
    port, host, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    client = Client(port, host=host, timeout=2.0)
    last = None
    while not stop.is_set():
        try:
            r = client.request(path)
            seen = r.headers.get("x-backend") or str(r.status)
        except OSError as exc:
            seen = type(exc).__name__
        if seen != last:
            print(f"{time.monotonic():.6f} {seen}", flush=True)
            last = seen
        time.sleep(0.001)
    return 0


if __name__ == "__main__":
    sys.exit(main())
