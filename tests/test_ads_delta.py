"""Conformance of the delta (incremental) ADS server, over real gRPC, and with a real Envoy.

As tests/test_ads_sotw.py: the real `AggregatedDiscoveryService` on a grpc.aio server
(127.0.0.1, port 0), a real grpc.aio client on DeltaAggregatedResources, real typed Envoy
resources published through `SnapshotCache.set_resources`. The rules come from Envoy's
xds_protocol document ("Incremental xDS") and ../shared/XDS-CHECKLIST.md, and the cases
follow go-control-plane's delta regressions: wildcard returns everything; a resource created
after it was requested is delivered; only requested resources are sent; unsubscribe then
resubscribe resends; removal is signalled; a plain ACK is never answered; a stale nonce is
handled as the protocol says. Every wait is bounded (WAIT, QUIET).

The last tests run a real Envoy on each protocol against the real control plane.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.status.v3 import csds_pb2
from google.protobuf.message import Message

from tests.harness import Backends, Envoy, free_ports, request, wait_until
from tests.harness import k8s
from tests.harness.controlplane import ControlPlane
from tests.test_ads_sotw import (
    MESSAGE_CLASS,
    SHORT,
    base,
    cla,
    cluster,
    listener,
    publish,
    resource_name,
    route_config,
    secret,
)
from tests.test_ads_sotw import Plane as SotwPlane
from tests.test_ads_sotw import StreamClient
from tests.test_ads_sotw import control_plane as sotw_control_plane
from tests.test_ads_sotw import run
from xds_ingress import envoy
from xds_ingress.cache import SnapshotCache, content_version
from xds_ingress.envoy.wire import split_version
from xds_ingress.envoy import types
from xds_ingress.server import ads as ads_module
from xds_ingress.server.csds import ClientStatusDiscoveryService
from xds_ingress.server.state import Observer, StreamState, TypeState
from xds_ingress.server.status import proxy_status

pytestmark = pytest.mark.timeout(60)

CDS, EDS, LDS, RDS, SDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE, types.SECRET
WAIT = 2.0  # the longest a test waits for a response that must come
QUIET = 0.3  # how long a test listens to conclude that nothing is sent


# -- reading responses --------------------------------------------------------------------

def decode(resp: discovery_pb2.DeltaDiscoveryResponse) -> dict[str, Message]:
    """The resources of a response by name. Fails on a name given twice (in resources and
    removed_resources together), a mismatched type URL, a resource named unlike its key, and a
    version that is not the content hash of the resource's bytes."""
    out: dict[str, Message] = {}
    for r in resp.resources:
        assert r.resource.type_url == resp.type_url, (r.resource.type_url, resp.type_url)
        msg = MESSAGE_CLASS[resp.type_url]()
        assert r.resource.Unpack(msg)
        assert resource_name(resp.type_url, msg) == r.name, (r.name, msg)
        # A route configuration's is computed from the digests of its virtual hosts (wire.split_version).
        want = split_version(r.resource.value, 2) if resp.type_url == RDS else content_version(r.resource.value)
        assert r.version == want, "a resource's version is its content hash"
        assert r.name not in out, f"{SHORT[resp.type_url]} response names {r.name!r} twice"
        out[r.name] = msg
    removed = list(resp.removed_resources)
    assert len(set(removed)) == len(removed), f"removed twice: {removed}"
    assert not set(removed) & out.keys(), f"both sent and removed: {set(removed) & out.keys()}"
    return out


def names(resp: discovery_pb2.DeltaDiscoveryResponse) -> set[str]:
    return set(decode(resp))


def removed(resp: discovery_pb2.DeltaDiscoveryResponse) -> set[str]:
    return set(resp.removed_resources)


def describe(resp: discovery_pb2.DeltaDiscoveryResponse) -> str:
    return (f"{SHORT.get(resp.type_url, resp.type_url)} nonce {resp.nonce} {sorted(names(resp))}"
            f" removed {sorted(removed(resp))}")


def route_targets(resp: discovery_pb2.DeltaDiscoveryResponse) -> set[str]:
    return {c for rc in decode(resp).values() for c in envoy.route_clusters({RDS: {"x": rc}})["x"]}


# -- a real gRPC client --------------------------------------------------------------------

class DeltaClient(StreamClient):
    """One DeltaAggregatedResources stream from a real grpc.aio client.

    It keeps, per type, what it holds (name -> version) as Envoy does: a response is applied
    when it is ACKed. `send` defaults to a spontaneous request (no nonce).
    """

    method = "DeltaAggregatedResources"
    describe = staticmethod(describe)

    def __init__(self, target: str, node_id: str, *, read: bool = True) -> None:
        self.held: dict[str, dict[str, str]] = {}
        self.subscribed: dict[str, set[str]] = {}
        super().__init__(target, node_id, read=read)

    def received(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        decode(resp)  # fails the reader (and so the next recv) on a malformed response
        assert resp.nonce

    async def send(self, type_url: str, subscribe: Iterable[str] = (), unsubscribe: Iterable[str] = (), *,
                   nonce: str = "", initial: dict[str, str] | None = None, error: str | None = None) -> None:
        subscribe, unsubscribe = list(subscribe), list(unsubscribe)
        subs = self.subscribed.setdefault(type_url, set())
        subs |= set(subscribe)
        subs -= set(unsubscribe)
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=subscribe, resource_names_unsubscribe=unsubscribe,
            response_nonce=nonce, initial_resource_versions=initial or {})
        self._stamp(req, error)
        await self.call.write(req)

    async def ack(self, resp: discovery_pb2.DeltaDiscoveryResponse, subscribe: Iterable[str] = (),
                  unsubscribe: Iterable[str] = ()) -> None:
        held = self.held.setdefault(resp.type_url, {})
        for r in resp.resources:
            held[r.name] = r.version
        for n in resp.removed_resources:
            held.pop(n, None)
        await self.send(resp.type_url, subscribe, unsubscribe, nonce=resp.nonce)

    async def nack(self, resp: discovery_pb2.DeltaDiscoveryResponse, message: str) -> None:
        await self.send(resp.type_url, nonce=resp.nonce, error=message)

    async def react(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        """What Envoy does: CDS and LDS (un)subscribe EDS and RDS for the clusters and listeners it
        then holds, on the ACK."""
        sub: set[str] = set()
        unsub: set[str] = set()
        if resp.type_url in (CDS, LDS):
            child = EDS if resp.type_url == CDS else RDS
            if child in self.subscribed:
                held = dict(self.held.get(resp.type_url, {}))
                for r in resp.resources:
                    held[r.name] = r.version
                for n in resp.removed_resources:
                    held.pop(n, None)
                # (In these tests every cluster but "static" uses EDS, and listener x uses route configuration x.)
                wanted = {n for n in held if n != "static"} if child == EDS else set(held)
                sub = wanted - self.subscribed[child]
                unsub = self.subscribed[child] - wanted
                if sub or unsub:
                    await self.send(child, sorted(sub), sorted(unsub))
        await self.ack(resp)


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def stream_opened(self, stream: StreamState) -> None:
        self.events.append(("opened", stream.protocol, ""))

    def stream_closed(self, stream: StreamState) -> None:
        self.events.append(("closed", stream.protocol, ""))

    def response_sent(self, stream: StreamState, ts: TypeState, resources: int, size: int) -> None:
        assert size > 0
        self.events.append(("response", stream.protocol, SHORT[ts.type_url]))

    def ack(self, stream: StreamState, ts: TypeState) -> None:
        self.events.append(("ack", stream.protocol, SHORT[ts.type_url]))

    def nack(self, stream: StreamState, ts: TypeState, message: str) -> None:
        self.events.append(("nack", stream.protocol, SHORT[ts.type_url]))


class Plane(SotwPlane):
    client_class = DeltaClient


control_plane = functools.partial(sotw_control_plane, plane_class=Plane)


async def subscribed(plane: Plane, node_id: str = "envoy-1", *, eds: Iterable[str] = ("a", "b"),
                     rds: Iterable[str] = ("http",), sds: Iterable[str] | None = None) -> DeltaClient:
    """A stream that has received and ACKed CDS, EDS, LDS, RDS (and SDS) for the current snapshot."""
    c = plane.connect(node_id)
    await c.send(CDS)
    await c.send(EDS, eds)
    await c.send(LDS)
    await c.send(RDS, rds)
    if sds is not None:
        await c.send(SDS, sds)
    for t in (CDS, EDS, LDS, RDS) + ((SDS,) if sds is not None else ()):
        await c.ack(await c.recv(t))
    await c.silent()
    return c


# -- the first snapshot ---------------------------------------------------------------------

def test_nothing_before_the_first_snapshot_then_pending_requests_are_answered() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            c = p.connect()
            await c.send(CDS)
            await c.send(EDS, ["a"])
            await c.send(LDS)
            await c.send(RDS, ["http"])
            await c.send(SDS, ["tls"])
            await c.silent()
            p.publish(*base())
            assert names(await c.recv(CDS)) == {"a", "b"}
            assert names(await c.recv(EDS)) == {"a"}
            assert names(await c.recv(LDS)) == {"http"}
            assert names(await c.recv(RDS)) == {"http"}
            assert names(await c.recv(SDS)) == {"tls"}
            await c.silent()
    run(scenario)


# -- wildcard returns everything ------------------------------------------------------------

def test_wildcard_returns_everything_legacy_and_explicit_and_follows_the_snapshot() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "b"))
            c = p.connect()
            await c.send(CDS)  # a first request naming nothing: the legacy wildcard
            cds = await c.recv(CDS)
            assert names(cds) == {"a", "b"} and not removed(cds)
            await c.send(LDS, ["*"])  # the explicit wildcard
            lds = await c.recv(LDS)
            assert names(lds) == {"http", "https"}
            await c.send(EDS, ["*"])  # explicit wildcard works for any type
            eds = await c.recv(EDS)
            assert names(eds) == {"a", "b"}
            for r in (cds, lds, eds):
                await c.ack(r)
            await c.silent()
            # A new cluster goes to the wildcard subscription alone: only what changed, not the set.
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "b"),
                      cluster("c"), cla("c", "10.0.2.1"))
            cds2 = await c.recv(CDS)
            assert names(cds2) == {"c"} and not removed(cds2)
            await c.ack(cds2)
            assert names(await c.recv(EDS)) == {"c"}
            # Naming a resource does not end the legacy wildcard (only unsubscribing "*" does).
            await c.ack(c.log[-1])
            await c.send(CDS, ["a"])
            assert names(await c.recv(CDS)) == {"a"}  # a subscribed name is answered, held or not
            await c.ack(c.log[-1])
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "b"),
                      cluster("c"), cla("c", "10.0.2.1"), cluster("d"))
            assert names(await c.recv(CDS)) == {"d"}
            await c.ack(c.log[-1])
            # Unsubscribing "*": the client keeps only what it named; nothing more is sent for the rest.
            await c.send(CDS, unsubscribe=["*"])
            await c.silent()
            p.publish(*base(a=cluster("a", timeout=9)), listener("https", "https", port=8443),
                      route_config("https", "b"), cluster("c", timeout=9), cla("c", "10.0.2.1"), cluster("e"))
            cds3 = await c.recv(CDS)
            assert names(cds3) == {"a"} and not removed(cds3)
            await c.ack(cds3)
            assert names(await c.recv(EDS)) == {"a"}  # a changed cluster gets its endpoints again
            await c.ack(c.log[-1])
            await c.silent()
    run(scenario)


def test_an_empty_wildcard_is_answered_so_that_the_client_can_initialize() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(cla("a", "10.0.0.1"))  # no cluster, no listener
            c = p.connect()
            await c.send(CDS)
            await c.send(LDS)
            for t in (CDS, LDS):
                r = await c.recv(t)
                assert not r.resources and not r.removed_resources
                await c.ack(r)
            await c.silent()
            assert p.stream().types[CDS].status() == "SYNCED"
    run(scenario)


# -- only requested resources; created after it was requested; removal --------------------------

def test_only_requested_resources_are_sent_and_one_created_later_is_delivered() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(EDS, ["a", "c"])
            e1 = await c.recv(EDS)
            # Only the requested names; the one that does not exist is said not to (removed_resources).
            assert names(e1) == {"a"} and removed(e1) == {"c"}
            await c.ack(e1)
            await c.silent()
            # Changes to what it did not ask for are not sent.
            p.publish(*base(b=cla("b", "10.0.1.2")))
            await c.silent()
            # c, created later, is delivered, alone.
            p.publish(*base(b=cla("b", "10.0.1.2")), cluster("c"), cla("c", "10.0.2.1"))
            e2 = await c.recv(EDS)
            assert names(e2) == {"c"} and not removed(e2)
            await c.ack(e2)
            # A grown subscription gets the newly named resource although it did not change.
            await c.send(EDS, ["b"])
            e3 = await c.recv(EDS)
            assert names(e3) == {"b"} and decode(e3)["b"] == cla("b", "10.0.1.2")
            await c.ack(e3)
            await c.silent()
            # RDS and SDS alike, with names that do not exist yet.
            await c.send(RDS, ["http", "later"])
            r1 = await c.recv(RDS)
            assert names(r1) == {"http"} and removed(r1) == {"later"}
            await c.ack(r1)
            await c.send(SDS, ["tls", "coming"])
            s1 = await c.recv(SDS)
            assert names(s1) == {"tls"} and removed(s1) == {"coming"}
            await c.ack(s1)
            await c.silent()
            p.publish(*base(b=cla("b", "10.0.1.2")), cluster("c"), cla("c", "10.0.2.1"), secret("coming"),
                      route_config("later", "a"))
            assert names(await c.recv(RDS)) == {"later"}
            assert names(await c.recv(SDS)) == {"coming"}
            await c.silent()
    run(scenario)


def test_removal_is_signalled_for_wildcard_and_named_subscriptions() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "b"))
            c = await subscribed(p, rds=("http", "https"), sds=["tls"])
            # The https listener, its route configuration and the secret go away (this client keeps
            # its subscriptions: the removals are for names it still asks for).
            p.publish(cluster("a"), cluster("b"), cla("a", "10.0.0.1"), cla("b", "10.0.1.1"), listener("http", "http"),
                      route_config("http", "a"), secret("other"))
            for t, gone in ((LDS, "https"), (RDS, "https"), (SDS, "tls")):
                r = await c.recv(t)
                assert removed(r) == {gone} and not names(r), describe(r)
                await c.ack(r)
            await c.silent()
            assert c.held[LDS].keys() == {"http"} and c.held[SDS] == {}
            # A removed cluster, nowhere named by routes: removed from CDS, then its endpoints from EDS.
            p.publish(cluster("a"), cla("a", "10.0.0.1"), listener("http", "http"), route_config("http", "a"),
                      secret("other"))
            cds = await c.recv(CDS)
            assert removed(cds) == {"b"} and not names(cds)
            eds = await c.recv(EDS)
            assert removed(eds) == {"b"} and not names(eds)
            await c.ack(cds)
            await c.ack(eds)
            await c.silent()
            # Removed once: it is not said again.
            p.publish(cluster("a", timeout=3), cla("a", "10.0.0.1"), listener("http", "http"),
                      route_config("http", "a"), secret("other"))
            assert names(await c.recv(CDS)) == {"a"} and not c.log[-1].removed_resources
    run(scenario)


# -- unsubscribe, resubscribe --------------------------------------------------------------

def test_unsubscribe_then_resubscribe_resends_and_unsubscribed_changes_are_not_sent() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(EDS, ["a", "b"])
            e1 = await c.recv(EDS)
            await c.ack(e1, unsubscribe=["b"])  # unsubscribing needs no response
            await c.silent()
            p.publish(*base(b=cla("b", "10.0.1.9")))
            await c.silent()
            # Subscribed again: sent again, although the client was sent b before.
            await c.send(EDS, ["b"])
            e2 = await c.recv(EDS)
            assert names(e2) == {"b"}
            await c.ack(e2)
            # Subscribing to what it holds, unchanged: sent all the same (it may have forgotten it).
            await c.send(EDS, ["a"])
            assert names(await c.recv(EDS)) == {"a"}
            await c.ack(c.log[-1])
            # Unsubscribing from a name never subscribed is harmless.
            await c.send(EDS, unsubscribe=["nothing"])
            await c.silent()
            assert p.stream().types[EDS].names == {"a", "b"}
    run(scenario)


def test_unsubscribing_a_name_the_wildcard_covers_is_answered_with_its_state() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS, ["*", "a", "ghost"])
            first = await c.recv(CDS)
            assert names(first) == {"a", "b"} and removed(first) == {"ghost"}
            await c.ack(first)
            # Still covered by the wildcard: a exists and is sent again, ghost does not and is removed.
            await c.send(CDS, unsubscribe=["a", "ghost"])
            r = await c.recv(CDS)
            assert names(r) == {"a"} and removed(r) == {"ghost"}
            await c.ack(r)
            await c.silent()
    run(scenario)


# -- ACKs, NACKs, nonces -----------------------------------------------------------------------

def test_a_plain_ack_is_never_answered() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p, sds=["tls"])
            for r in list(c.log):  # the same ACKs once more
                await c.ack(r)
            await c.silent()
            # and an unrelated snapshot change is not answered either
            p.publish(*base(), secret("unused"))
            await c.silent()
            stream = p.stream()
            assert {SHORT[t]: ts.responses for t, ts in stream.types.items()} == dict.fromkeys(
                ["CDS", "EDS", "LDS", "RDS", "SDS"], 1)
            assert {ts.status() for ts in stream.types.values()} == {"SYNCED"}
    run(scenario)


def test_nack_is_recorded_and_the_rejected_resource_is_not_resent_until_it_changes() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with control_plane(observer=recorder) as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS)
            good = await c.recv(CDS)
            await c.ack(good)
            p.publish(*base(a=cluster("a", timeout=7)))
            bad = await c.recv(CDS)
            assert names(bad) == {"a"}
            await c.nack(bad, "cluster a: connect_timeout is bad")
            await c.silent()
            ts = p.stream().types[CDS]
            assert ts.status() == "NACKED" and ts.nacks == 1
            assert ts.nack_message == "cluster a: connect_timeout is bad" and ts.nack_version == bad.system_version_info
            assert ts.acked_version == good.system_version_info
            assert ts.acked["a"].version == next(r.version for r in good.resources if r.name == "a")
            # What the client still runs (CSDS): the accepted a, with the error next to it.
            csds = ClientStatusDiscoveryService(p.ads).status(csds_pb2.ClientStatusRequest())
            states = {g.name: g for g in csds.config[0].generic_xds_configs if g.type_url == CDS}
            assert states["a"].config_status == csds_pb2.ConfigStatus.ERROR
            assert states["a"].error_state.details == "cluster a: connect_timeout is bad"
            assert states["b"].config_status == csds_pb2.ConfigStatus.SYNCED
            # The same content again, or another change, sends no CDS.
            assert not publish(p.cache, *base(a=cluster("a", timeout=7)))
            p.publish(*base(a=cluster("a", timeout=7)), secret("unrelated"))
            await c.silent()
            # b changing is sent alone: the rejected a is not sent again.
            p.publish(*base(a=cluster("a", timeout=7), b=cluster("b", timeout=3)))
            b = await c.recv(CDS)
            assert names(b) == {"b"}
            await c.ack(b)
            # A real change of a is sent.
            p.publish(*base(a=cluster("a", timeout=8), b=cluster("b", timeout=3)))
            fixed = await c.recv(CDS)
            assert names(fixed) == {"a"} and decode(fixed)["a"].connect_timeout.seconds == 8  # type: ignore[attr-defined]
            await c.ack(fixed)
            await c.silent()
            assert ts.status() == "SYNCED" and ts.acked_version == fixed.system_version_info
        assert ("nack", "delta", "CDS") in recorder.events and ("ack", "delta", "CDS") in recorder.events
        assert recorder.events[0] == ("opened", "delta", "") and recorder.events[-1] == ("closed", "delta", "")
    run(scenario)


def test_a_stale_nonce_is_no_ack_or_nack_but_its_subscription_changes_count() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(EDS, ["a"])
            e1 = await c.recv(EDS)
            await c.ack(e1)
            p.publish(*base(a=cla("a", "10.0.0.9")))
            e2 = await c.recv(EDS)
            # Answers to e1 (superseded by e2): no NACK recorded, no ACK of e2 ...
            await c.nack(e1, "old news")
            await c.send(EDS, ["b"], nonce=e1.nonce)  # ... but the subscription to b counts
            await c.silent()  # e2 is still in flight: one response per type
            ts = p.stream().types[EDS]
            assert ts.nacks == 0 and ts.status() == "STALE" and ts.in_flight and "b" in ts.names
            await c.ack(e2)
            e3 = await c.recv(EDS)
            assert names(e3) == {"b"}
            await c.ack(e3)
            await c.silent()
            assert ts.status() == "SYNCED" and ts.acks == 3
            # A nonce that was never sent (another stream's) changes nothing either.
            await c.send(EDS, nonce="no-such-nonce", error="not yours")
            await c.silent()
            assert ts.nacks == 0
    run(scenario)


def test_versions_are_content_hashes_and_nonces_are_per_type() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS)
            await c.send(EDS, ["a", "b"])
            await c.send(LDS)
            got = [await c.recv(t) for t in (CDS, EDS, LDS)]
            assert len({r.nonce for r in got}) == 3
            # system_version_info is the version of the set the client then holds: the state-of-the-world
            # version of the same resources.
            snap = p.cache.snapshot
            assert [r.system_version_info for r in got] == [snap.version(t) for t in (CDS, EDS, LDS)]
            # decode() checked each resource's version against the hash of its bytes.
            sotw = p.connect_sotw("envoy-sotw")
            await sotw.send(CDS, [])
            assert (await sotw.recv(CDS)).version_info == got[0].system_version_info
    run(scenario)


# -- reconnect: initial_resource_versions ------------------------------------------------------

def test_reconnect_with_initial_resource_versions_resends_nothing_the_client_has() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        publish(cache, *base())
        async with control_plane(cache) as p:
            c = await subscribed(p, sds=["tls"])
            held = {t: dict(v) for t, v in c.held.items()}
            await c.close()
            p.clients.remove(c)
            # A new stream: every subscription again, with the versions held.
            d = p.connect("envoy-1b")
            await d.send(CDS, initial=held[CDS])
            await d.send(EDS, ["a", "b"], initial=held[EDS])
            await d.send(LDS, initial=held[LDS])
            await d.send(RDS, ["http"], initial=held[RDS])
            await d.send(SDS, ["tls"], initial=held[SDS])
            await d.silent()
            stream = p.stream("envoy-1b")
            assert all(ts.responses == 0 and ts.status() == "SYNCED" for ts in stream.types.values())
            # The stream is in a normal state: a change is sent, alone.
            p.publish(*base(a=cla("a", "10.0.0.5")))
            e = await d.recv(EDS)
            assert names(e) == {"a"}
            await d.ack(e)
            # Held at an older version, or held and gone: the current one, or its removal.
            f = p.connect("envoy-1c")
            await f.send(CDS, initial={"a": "old-version", "b": held[CDS]["b"], "gone": "v1"})
            r = await f.recv(CDS)
            assert names(r) == {"a"} and removed(r) == {"gone"}
            await f.ack(r)
            await f.silent()
            # A named subscription ignores held names it does not ask for.
            g = p.connect("envoy-1d")
            await g.send(EDS, ["a"], initial={"a": "old", "zzz": "v"})
            r = await g.recv(EDS)
            assert names(r) == {"a"} and not removed(r)
        # A restarted control plane (a new cache too) with the same content: nothing to send.
        restarted = SnapshotCache()
        publish(restarted, *base())
        async with control_plane(restarted) as q:
            h = q.connect("envoy-1")
            await h.send(CDS, initial=held[CDS])
            await h.send(EDS, ["a", "b"], initial=held[EDS])
            await h.send(LDS, initial=held[LDS])
            await h.send(RDS, ["http"], initial=held[RDS])
            await h.silent()
    run(scenario)


# -- push order, make before break ---------------------------------------------------------------

def test_one_change_is_pushed_in_the_order_cds_eds_lds_rds_sds() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p, sds=["tls"])
            p.publish(*base(a=cluster("a", timeout=6), cla_a=cla("a", "10.0.0.7"),
                            http=listener("http", "http", port=8081), rc=route_config("http", "a", prefix="/v2"),
                            tls=secret("tls", b"rotated")))
            seen = await c.settle()
            assert [SHORT[r.type_url] for r in seen] == ["CDS", "EDS", "LDS", "RDS", "SDS"]
            assert all(len(r.resources) == 1 for r in seen)
    run(scenario)


def test_make_before_break_when_a_route_moves_from_cluster_a_to_new_cluster_c() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            p.publish(cluster("b"), cla("b", "10.0.1.1"), listener("http", "http"), route_config("http", "c"),
                      cluster("c"), cla("c", "10.0.2.1"), secret("tls"), secret("other"))
            seen = await c.settle()
            trace = [describe(r) for r in seen]
            moved = next(i for i, r in enumerate(seen) if r.type_url == RDS and route_targets(r) == {"c"})
            before, after = seen[:moved], seen[moved + 1:]
            assert any(r.type_url == CDS and "c" in names(r) for r in before), trace
            assert any(r.type_url == EDS and "c" in names(r) for r in before), trace
            # a is not removed before the route stops naming it ...
            assert not any("a" in removed(r) for r in before), trace
            # ... and then it is, endpoints too.
            assert any(r.type_url == CDS and removed(r) == {"a"} for r in after), trace
            assert c.held[CDS].keys() == {"b", "c"} and c.subscribed[EDS] == {"b", "c"}
            await c.silent()
    run(scenario)


def test_a_nacked_route_keeps_the_clusters_it_replaced() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            p.publish(cluster("b"), cla("b", "10.0.1.1"), listener("http", "http"), route_config("http", "b"),
                      secret("tls"), secret("other"))
            rds = await c.recv(RDS)  # b was delivered with its endpoints before: the route moves at once
            assert route_targets(rds) == {"b"}
            await c.nack(rds, "route rejected")
            await c.silent()  # Envoy keeps its old routes, which still name a: a stays
            assert p.stream().types[RDS].status() == "NACKED"
            p.publish(cluster("b"), cla("b", "10.0.1.1"), listener("http", "http"),
                      route_config("http", "b", prefix="/ok"), secret("tls"), secret("other"))
            await c.ack(await c.recv(RDS))
            cds = await c.recv(CDS)
            assert removed(cds) == {"a"} and not names(cds)
    run(scenario)


def test_a_gated_route_is_sent_at_the_gate_timeout_without_another_wake_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ads_module, "RDS_GATE_TIMEOUT_S", 0.6)

    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            p.publish(*base(rc=route_config("http", "c")), cluster("c"), cla("c", "10.0.2.1"))
            await c.ack(await c.recv(CDS))  # an Envoy that never asks for c's endpoints
            await c.silent(0.3)
            rds = await c.recv(RDS, timeout=1.5)
            assert route_targets(rds) == {"c"}
    run(scenario)


def test_changes_during_an_unacked_response_coalesce_into_one_with_the_latest() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS)
            first = await c.recv(CDS)
            for timeout in (6, 7, 8):
                p.publish(*base(a=cluster("a", timeout=timeout)))
            await c.silent()  # one response in flight per type
            await c.ack(first)
            latest = await c.recv(CDS)
            assert names(latest) == {"a"} and decode(latest)["a"].connect_timeout.seconds == 8  # type: ignore
            await c.ack(latest)
            await c.silent()
            assert p.stream().types[CDS].responses == 2
    run(scenario)


def test_a_changed_cluster_gets_its_unchanged_endpoints_again() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            held = next(r for r in c.log if r.type_url == EDS)
            p.publish(*base(a=cluster("a", timeout=11)))
            cds = await c.recv(CDS)
            await c.react(cds)
            eds = await c.recv(EDS)
            assert names(eds) == {"a"} and decode(eds)["a"] == decode(held)["a"]
            await c.ack(eds)
            await c.silent()
    run(scenario)


# -- both protocols, one cache; state for the operator -------------------------------------------

def test_sotw_and_delta_streams_share_the_cache_and_show_in_status_and_csds() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            d = await subscribed(p, "delta-envoy")
            s = p.connect_sotw("sotw-envoy")
            await s.send(CDS, [])
            await s.ack(await s.recv(CDS))
            p.publish(*base(a=cla("a", "10.0.0.3")))
            e = await d.recv(EDS)
            assert names(e) == {"a"}
            await d.ack(e)
            await d.silent()
            await s.silent()  # the state-of-the-world client asked only for clusters
            status = proxy_status(p.stream("delta-envoy"))
            assert status["protocol"] == "delta"
            assert {t: v["status"] for t, v in status["types"].items()} == {
                "clusters": "SYNCED", "endpoints": "SYNCED", "listeners": "SYNCED", "routes": "SYNCED",
                "secrets": "NOT_SENT"}
            assert status["types"]["clusters"]["subscription"] == ["*"]
            assert status["types"]["endpoints"]["subscription"] == ["a", "b"]
            assert proxy_status(p.stream("sotw-envoy"))["protocol"] == "sotw"
            csds = ClientStatusDiscoveryService(p.ads).status(csds_pb2.ClientStatusRequest())
            delta_cfg = next(cfg for cfg in csds.config if cfg.node.id == "delta-envoy")
            got = {(SHORT[g.type_url], g.name): g for g in delta_cfg.generic_xds_configs}
            assert set(got) == {("CDS", "a"), ("CDS", "b"), ("EDS", "a"), ("EDS", "b"), ("LDS", "http"),
                                ("RDS", "http")}
            assert {g.config_status for g in got.values()} == {csds_pb2.ConfigStatus.SYNCED}
            eds = cluster_pb2.Cluster()  # the content is what was sent, byte for byte
            assert got[("CDS", "a")].xds_config.Unpack(eds) and eds == cluster("a")
    run(scenario)


def test_a_single_endpoint_change_costs_far_fewer_bytes_over_delta() -> None:
    async def scenario() -> None:
        many = [m for i in range(50) for m in (cluster(f"s{i}"), cla(f"s{i}", f"10.1.{i}.1", f"10.1.{i}.2"))]
        async with control_plane() as p:
            p.publish(*base(), *many)
            d = p.connect("delta")
            s = p.connect_sotw("sotw")
            all_eds = ["a", "b"] + [f"s{i}" for i in range(50)]
            await d.send(EDS, all_eds)
            await s.send(EDS, all_eds)
            await d.ack(await d.recv(EDS))
            await s.ack(await s.recv(EDS))
            p.publish(*base(), *many, cla("s7", "10.1.7.1", "10.1.7.3"))
            dr, sr = await d.recv(EDS), await s.recv(EDS)
            assert names(dr) == {"s7"}
            assert dr.ByteSize() * 10 < sr.ByteSize(), (dr.ByteSize(), sr.ByteSize())
    run(scenario)


def test_streams_in_step_share_the_snapshots_mappings_instead_of_copies() -> None:
    """What a stream holds costs it no copy while it holds exactly the snapshot's resources of a
    type (the memory of 1,000 Envoys), and equal subscriptions are one set."""
    async def scenario() -> None:
        many = [m for i in range(40) for m in (cluster(f"s{i}"), cla(f"s{i}", f"10.1.{i}.1"))]
        async with control_plane() as p:
            p.publish(*base(), *many)
            eds_names = ["a", "b"] + [f"s{i}" for i in range(40)]
            one = await subscribed(p, "one", eds=eds_names)
            two = await subscribed(p, "two", eds=eds_names)
            s1, s2 = p.stream("one"), p.stream("two")

            def shared(stream: StreamState) -> bool:
                snap = p.cache.snapshot
                return all(stream.types[t].sent is snap.of_type(t) and stream.types[t].acked is snap.of_type(t)
                           for t in (CDS, EDS, LDS, RDS))
            assert shared(s1) and shared(s2)
            assert s1.types[EDS].names is s2.types[EDS].names
            p.publish(*base(), *many, cla("s7", "10.1.7.9"))
            for c in (one, two):
                r = await c.recv(EDS)
                assert names(r) == {"s7"}
                await c.ack(r)
            await one.silent()
            assert shared(s1) and shared(s2)
            # A stream that holds something else has its own copy; the other still shares.
            await one.send(EDS, unsubscribe=["s3"])
            await one.silent()
            assert s1.types[EDS].sent is not p.cache.snapshot.of_type(EDS) and "s3" not in s1.types[EDS].sent
            assert shared(s2)
            p.publish(*base(), *many, cla("s7", "10.1.7.9"), cla("s8", "10.1.8.9"))
            assert names(await one.recv(EDS)) == {"s8"}
            assert names(await two.recv(EDS)) == {"s8"}
            await two.ack(two.log[-1])
            await one.ack(one.log[-1])
            await two.silent()
            assert shared(s2) and "s3" not in s1.types[EDS].sent
    run(scenario)


def test_unknown_type_urls_are_ignored_and_the_stream_goes_on() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect("envoy-u")
            unknown = "type.googleapis.com/example.v1.Unknown"
            await c.send(unknown, ["x"])
            await c.send(unknown, ["x"], nonce="1", error="what is this")
            await c.silent()
            await c.send(CDS)
            await c.ack(await c.recv(CDS))
            await c.silent()
            assert p.stream("envoy-u").types.keys() == {CDS}
    run(scenario)


# -- a real Envoy --------------------------------------------------------------------------------

@pytest.mark.envoy
@pytest.mark.parametrize("xds_protocol", ["delta", "sotw"])
def test_real_envoy_routes_and_follows_an_endpoint_change(tmp_path: Path, xds_protocol: str) -> None:
    """Routing works, an EndpointSlice change reaches traffic, and (delta) a NACK shows in the stream."""
    http_port, https_port = free_ports(2)
    with Backends(["a", "b"]) as be, \
            ControlPlane(tmp_path / "manifests", http_port=http_port, https_port=https_port) as cp, \
            Envoy(cp.bootstrap(node_id=f"envoy-{xds_protocol}", xds_protocol=xds_protocol), tmp_path / "envoy"):
        def objects(port: int) -> list[dict]:
            return [k8s.ingress_class(), k8s.service("web"), k8s.endpoint_slice("web-1", "web", port),
                    k8s.ingress("site", k8s.rule("site.example.com", k8s.path("/", "web")))]
        cp.write("objects.yaml", objects(be.port("a")))
        cp.wait_synced()
        assert request(http_port, "/", host="site.example.com").headers.get("x-backend") == "a"
        stream = cp.call(lambda: next(iter(cp.app.ads.streams.values())))
        assert stream.protocol == xds_protocol
        # The endpoint moves to backend b: over delta, only that ClusterLoadAssignment is sent.
        eds_before = cp.call(lambda: stream.types[EDS].responses)
        cp.write("objects.yaml", objects(be.port("b")))
        cp.wait_synced()
        wait_until(lambda: request(http_port, "/", host="site.example.com").headers.get("x-backend") == "b",
                   timeout=5, message="the endpoint change did not reach traffic")
        assert cp.call(lambda: stream.types[EDS].responses) == eds_before + 1
        assert cp.call(lambda: {t: ts.status() for t, ts in stream.types.items()}) == {
            t: "SYNCED" for t in stream.types}
        if xds_protocol == "delta":
            cp.inject_rejected_cluster("default/web/80")
            ts = stream.types[CDS]
            wait_until(lambda: cp.call(lambda: ts.status()) == "NACKED", timeout=10,
                       message="Envoy did not NACK the rejected cluster over delta")
            assert "positive duration" in cp.call(lambda: ts.nack_message)
            # Envoy keeps serving what it had; the next good snapshot syncs again.
            assert request(http_port, "/", host="site.example.com").headers.get("x-backend") == "b"
            cp.call(cp.app.controller.rebuild)
            cp.wait_synced()
            assert cp.call(lambda: ts.status()) == "SYNCED"
