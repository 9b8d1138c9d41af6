"""The connection limiter (xds_ingress/connection_limiter.py): the counter, reading what Envoy sends, and the
gRPC service over a real grpc.aio server and client, as Envoy's ext_proc filter speaks to it (one stream per
HTTP request, request headers first, the stream held until the request ends). What Envoy does with it is in
tests/test_e2e_nginx_connlimit.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from xds_ingress import cli
from xds_ingress.connection_limiter import (ConnectionLimiter, Counter, client_address, route_limit, serve)
from xds_ingress.envoy.edge_policies import (CLIENT_ADDRESS_ATTRIBUTE, CONNECTION_EXEMPT_HEADER,
                                             CONNECTION_LIMIT_HEADER, CONNECTION_ZONE_HEADER, EXT_PROC)

# --- the counter ---------------------------------------------------------------------------------


def test_counter_admits_up_to_the_limit_and_a_release_frees_a_slot() -> None:
    c = Counter()
    k = ("shop/web", "192.0.2.1")
    assert [c.acquire(k, 2) for _ in range(3)] == [True, True, False]
    assert c.acquire(("shop/web", "192.0.2.2"), 2) is True  # another client
    assert c.acquire(("shop/other", "192.0.2.1"), 2) is True  # another zone
    c.release(k)
    assert c.count(k) == 1 and c.acquire(k, 2) is True
    for _ in range(2):
        c.release(k)
    assert c.count(k) == 0 and len(c) == 2  # a key at 0 is forgotten
    c.release(k)  # one release too many: harmless, never negative
    assert c.count(k) == 0 and (c.admitted, c.refused) == (5, 1)


def test_counter_holds_at_most_max_keys_and_lets_the_rest_through_uncounted() -> None:
    c = Counter(max_keys=3)
    for i in range(3):
        assert c.acquire(("z", f"10.0.0.{i}"), 1) is True
    assert c.acquire(("z", "10.0.0.9"), 1) is None and len(c) == 3 and c.uncounted == 1
    assert c.acquire(("z", "10.0.0.0"), 1) is False  # a known key is still limited
    c.release(("z", "10.0.0.0"))
    assert c.acquire(("z", "10.0.0.9"), 1) is True  # room again


# --- what Envoy sends ----------------------------------------------------------------------------

def _headers(address: str | None) -> pb.ProcessingRequest:
    req = pb.ProcessingRequest()
    req.request_headers.end_of_stream = True
    if address is not None:
        req.attributes[EXT_PROC].fields[CLIENT_ADDRESS_ATTRIBUTE].string_value = address
    return req


@pytest.mark.parametrize("text,want", [("192.0.2.1:4321", "192.0.2.1"), ("[2001:db8::1]:443", "2001:db8::1"),
                                       ("[::ffff:192.0.2.1]:80", "192.0.2.1"), ("192.0.2.1", "192.0.2.1")])
def test_client_address_from_source_address(text: str, want: str) -> None:
    assert str(client_address(_headers(text))) == want


@pytest.mark.parametrize("text", ["", "pipe:/run/x.sock", "example.com:80", "[nonsense]:1"])
def test_no_client_address_is_none(text: str) -> None:
    assert client_address(_headers(text)) is None
    assert client_address(_headers(None)) is None


def _md(limit: str = "2", zone: str = "shop/web", exempt: str | None = None) -> tuple:
    md = ((CONNECTION_LIMIT_HEADER, limit), (CONNECTION_ZONE_HEADER, zone))
    return md + (((CONNECTION_EXEMPT_HEADER, exempt),) if exempt is not None else ())


def test_route_limit_from_metadata() -> None:
    r = route_limit(_md(exempt="10.0.0.0/8,2001:db8::/32"))
    assert (r.limit, r.zone, [str(n) for n in r.exempt]) == (2, "shop/web", ["10.0.0.0/8", "2001:db8::/32"])
    for bad in (_md(limit="0"), _md(limit="-1"), _md(limit="x"), _md(limit="100001"), _md(exempt="10.0.0.0/8,x"),
                (), None):
        assert route_limit(bad) is None  # unreadable: the request goes through uncounted


# --- the service over real gRPC ------------------------------------------------------------------

Scenario = Callable[[pb_grpc.ExternalProcessorStub, ConnectionLimiter], Awaitable[None]]


def _run(scenario: Scenario) -> None:
    async def main() -> None:
        limiter = ConnectionLimiter()
        stop = asyncio.Event()
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve("127.0.0.1:0", stop=stop, started=port.set_result, limiter=limiter))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{await asyncio.wait_for(port, 10)}") as channel:
                await asyncio.wait_for(scenario(pb_grpc.ExternalProcessorStub(channel), limiter), 30)
        finally:
            stop.set()
            await asyncio.wait_for(server, 10)
    asyncio.run(main())


async def _open(stub, address: str = "192.0.2.1:1000", md: tuple = _md()):
    """A stream as Envoy opens one: the request headers, then (admitted) nothing until the request ends."""
    call = stub.Process(metadata=md)
    await call.write(_headers(address))
    return call, await call.read()


async def _released(limiter: ConnectionLimiter, key: tuple[str, str], count: int) -> None:
    for _ in range(400):  # bounded: the server sees the stream end a moment after the client
        if limiter.counter.count(key) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} holds {limiter.counter.count(key)}, not {count}")


KEY = ("shop/web", "192.0.2.1")


def test_a_stream_over_the_limit_gets_503_and_a_stream_that_ends_frees_its_slot() -> None:
    async def scenario(stub, limiter: ConnectionLimiter) -> None:
        (a, ra), (b, rb) = await _open(stub), await _open(stub)
        assert ra.HasField("request_headers") and rb.HasField("request_headers")
        c, rc = await _open(stub)
        assert rc.immediate_response.status.code == 503 and b"in progress" in rc.immediate_response.body
        assert await c.code() == grpc.StatusCode.OK and limiter.counter.count(KEY) == 2
        # Another client and another zone have counts of their own.
        _, other = await _open(stub, address="192.0.2.2:1")
        _, zone = await _open(stub, md=_md(zone="shop/other"))
        assert other.HasField("request_headers") and zone.HasField("request_headers")
        # The end of the request: Envoy half-closes the stream.
        await a.done_writing()
        assert await a.code() == grpc.StatusCode.OK
        await _released(limiter, KEY, 1)
        d, rd = await _open(stub)
        assert rd.HasField("request_headers")
        # A reset (the client went away, Envoy reset the stream): released too.
        b.cancel()
        d.cancel()
        await _released(limiter, KEY, 0)
        assert len(limiter.counter) == 2  # the other client's and the other zone's streams are still open
    _run(scenario)


def test_response_trailers_are_answered_and_the_slot_is_held_until_the_end() -> None:
    async def scenario(stub, limiter: ConnectionLimiter) -> None:
        call, _ = await _open(stub, md=_md(limit="1"))
        trailers = pb.ProcessingRequest()
        trailers.response_trailers.SetInParent()
        await call.write(trailers)
        assert (await call.read()).HasField("response_trailers")
        assert limiter.counter.count(KEY) == 1
        await call.done_writing()
        await _released(limiter, KEY, 0)
    _run(scenario)


def test_exempt_clients_and_unreadable_requests_are_not_counted() -> None:
    async def scenario(stub, limiter: ConnectionLimiter) -> None:
        lan = _md(limit="1", exempt="10.0.0.0/8, 2001:db8::/32")
        for addr in ("10.1.2.3:5", "10.1.2.3:6", "[2001:db8::7]:1"):
            _, r = await _open(stub, address=addr, md=lan)
            assert r.HasField("request_headers")
        for md in (_md(limit="0"), ()):
            _, r = await _open(stub, md=md)
            assert r.HasField("request_headers")
        _, r = await _open(stub, address="", md=_md(limit="1"))
        assert r.HasField("request_headers")
        assert len(limiter.counter) == 0
        _, r = await _open(stub, address="192.0.2.1:1", md=lan)  # not in the exempt ranges: counted
        assert r.HasField("request_headers") and limiter.counter.count(("shop/web", "192.0.2.1")) == 1
    _run(scenario)


def test_the_command_line_refuses_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["connection-limiter", "--listen", "nowhere"]) == 2
    assert "--listen" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["serve", "--connection-limit-service", "a b:1"])
