"""A rate limit service for tests: envoy.service.ratelimit.v3.RateLimitService on grpc.aio, in a thread.

It answers the way the reference service (envoyproxy/ratelimit) does for one rule, "every descriptor
`limit` times per minute": it counts each distinct descriptor (domain and entries) and answers
OVER_LIMIT from hit `limit + 1` on, with the limit and what remains, so Envoy can write the
x-ratelimit-* headers. It records every request it was asked, for tests to assert on.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import duration_pb2

__all__ = ["RateLimitServer", "RateLimitRequest"]

Descriptor = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RateLimitRequest:
    domain: str
    descriptors: tuple[Descriptor, ...]


class RateLimitServer:
    """Serve on 127.0.0.1:`port` (chosen by the OS) until stopped; a context manager."""

    def __init__(self, limit: int = 3) -> None:
        self.limit = limit
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[RateLimitRequest] = []
        self._hits: Counter[tuple[str, Descriptor]] = Counter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self) -> list[RateLimitRequest]:
        """Every ShouldRateLimit request so far, in order."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget the requests and the counts."""
        with self._lock:
            self._requests.clear()
            self._hits.clear()

    async def ShouldRateLimit(self, request: rls_pb2.RateLimitRequest, context) -> rls_pb2.RateLimitResponse:  # noqa: N802
        descriptors = tuple(tuple((e.key, e.value) for e in d.entries) for d in request.descriptors)
        resp = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)
        with self._lock:
            self._requests.append(RateLimitRequest(domain=request.domain, descriptors=descriptors))
            for d in descriptors:
                self._hits[(request.domain, d)] += request.hits_addend or 1
                hits = self._hits[(request.domain, d)]
                over = hits > self.limit
                status = resp.statuses.add(
                    code=rls_pb2.RateLimitResponse.OVER_LIMIT if over else rls_pb2.RateLimitResponse.OK,
                    limit_remaining=max(self.limit - hits, 0))
                status.current_limit.requests_per_unit = self.limit
                status.current_limit.unit = rls_pb2.RateLimitResponse.RateLimit.MINUTE
                status.duration_until_reset.CopyFrom(duration_pb2.Duration(seconds=60))
                if over:
                    resp.overall_code = rls_pb2.RateLimitResponse.OVER_LIMIT
        return resp

    def start(self, timeout: float = 10.0) -> RateLimitServer:
        self._thread = threading.Thread(target=self._run, name="rate-limit-service", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the rate limit service did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        outer = self

        class Servicer(rls_pb2_grpc.RateLimitServiceServicer):
            async def ShouldRateLimit(self, request, context):  # noqa: N802
                return await outer.ShouldRateLimit(request, context)

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = grpc.aio.server()
            try:
                rls_pb2_grpc.add_RateLimitServiceServicer_to_server(Servicer(), server)
                self.port = server.add_insecure_port("127.0.0.1:0")
                await server.start()
            except BaseException as exc:  # noqa: BLE001
                self._error = exc
                self._started.set()
                return
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await server.stop(0)

        asyncio.run(main())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (idempotent)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed in between
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> RateLimitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
