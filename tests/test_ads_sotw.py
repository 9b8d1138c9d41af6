"""Conformance of the state-of-the-world ADS server, over real gRPC.

Each test starts the real `AggregatedDiscoveryService` on a grpc.aio server (127.0.0.1, port
0) and talks to it with a real grpc.aio client (the generated ADS stub), publishing real
typed Envoy resources through `SnapshotCache.set_resources`. The rules come from Envoy's
xds_protocol document and ../shared/XDS-CHECKLIST.md. Every wait is bounded: a response is
awaited for at most WAIT seconds, and "nothing is sent" means nothing arrived in QUIET
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from xds_ingress import envoy
from xds_ingress.cache import SnapshotCache
from xds_ingress.envoy import types
from xds_ingress.server import ads as ads_module
from xds_ingress.server.ads import AggregatedDiscoveryService

pytestmark = pytest.mark.timeout(30)

CDS, EDS, LDS, RDS, SDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE, types.SECRET
SHORT = {CDS: "CDS", EDS: "EDS", LDS: "LDS", RDS: "RDS", SDS: "SDS"}
WAIT = 2.0  # the longest a test waits for a response that must come
QUIET = 0.3  # how long a test listens to conclude that nothing is sent

MESSAGE_CLASS: dict[str, type[Message]] = {
    CDS: cluster_pb2.Cluster,
    EDS: endpoint_pb2.ClusterLoadAssignment,
    LDS: listener_pb2.Listener,
    RDS: route_pb2.RouteConfiguration,
    SDS: secret_pb2.Secret,
}
TYPE_OF = {cls: t for t, cls in MESSAGE_CLASS.items()}


# -- resources: real typed Envoy messages -------------------------------------------------

def ads_source() -> config_source_pb2.ConfigSource:
    src = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    src.ads.SetInParent()
    return src


def cluster(name: str, *, timeout: int = 5, pad: int = 0, eds: bool = True) -> cluster_pb2.Cluster:
    """An EDS cluster (endpoints under its own name), or with eds=False a STATIC one with inline endpoints."""
    c = cluster_pb2.Cluster(name=name, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN)
    c.connect_timeout.seconds = timeout
    if eds:
        c.type = cluster_pb2.Cluster.EDS
        c.eds_cluster_config.eds_config.CopyFrom(ads_source())
        c.eds_cluster_config.service_name = name
    else:
        c.type = cluster_pb2.Cluster.STATIC
        c.load_assignment.CopyFrom(cla(name, "127.0.0.1"))
    if pad:
        c.metadata.filter_metadata["test"].update({"pad": "x" * pad})
    return c


def cla(name: str, *addresses: str, port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    locality = msg.endpoints.add()
    for a in addresses:
        lb = locality.lb_endpoints.add()
        lb.endpoint.address.socket_address.address = a
        lb.endpoint.address.socket_address.port_value = port
    return msg


def listener(name: str, route_config: str, *, port: int = 8080) -> listener_pb2.Listener:
    msg = listener_pb2.Listener(name=name)
    msg.address.socket_address.address = "0.0.0.0"
    msg.address.socket_address.port_value = port
    msg.address.socket_address.protocol = address_pb2.SocketAddress.TCP
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    hcm.rds.route_config_name = route_config
    hcm.rds.config_source.CopyFrom(ads_source())
    typed = any_pb2.Any()
    typed.Pack(hcm, deterministic=True)
    msg.filter_chains.add().filters.append(listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=typed))
    return msg


def route_config(name: str, *clusters: str, prefix: str = "/") -> route_pb2.RouteConfiguration:
    """One virtual host; a route per cluster (the first at `prefix`, the others under /<cluster>)."""
    msg = route_pb2.RouteConfiguration(name=name)
    vh = msg.virtual_hosts.add(name="any", domains=["*"])
    for i, c in enumerate(clusters):
        r = route_components_pb2.Route(name=c)
        r.match.prefix = prefix if i == 0 else f"/{c}"
        r.route.cluster = c
        vh.routes.append(r)
    return msg


def secret(name: str, data: bytes = b"cert") -> secret_pb2.Secret:
    s = secret_pb2.Secret(name=name)
    s.tls_certificate.certificate_chain.inline_bytes = data
    s.tls_certificate.private_key.inline_bytes = b"key-" + data[:16]
    return s


def base(**changes: Message) -> list[Message]:
    """Two EDS clusters a and b with endpoints, listener http -> route config http -> a, secrets tls and other."""
    return [
        cluster("a"), cluster("b"), cla("a", "10.0.0.1"), cla("b", "10.0.1.1"),
        listener("http", "http"), route_config("http", "a"), secret("tls"), secret("other"),
        *changes.values(),
    ]


def resource_name(type_url: str, msg: Message) -> str:
    return msg.cluster_name if type_url == EDS else msg.name  # type: ignore[attr-defined]


def publish(cache: SnapshotCache, *messages: Message) -> bool:
    """Publish a snapshot made of these messages (a later one replaces an earlier of the same type and name)."""
    resources: dict[str, dict[str, Message]] = {t: {} for t in types.ALL}
    for m in messages:
        t = TYPE_OF[type(m)]
        resources[t][resource_name(t, m)] = m
    return cache.set_resources(resources, envoy.route_clusters(resources))


# -- reading responses --------------------------------------------------------------------

def decode(resp: discovery_pb2.DiscoveryResponse) -> dict[str, Message]:
    """The resources of a response by name; fails on a repeated name or a mismatched type URL."""
    out: dict[str, Message] = {}
    for a in resp.resources:
        assert a.type_url == resp.type_url, (a.type_url, resp.type_url)
        msg = MESSAGE_CLASS[resp.type_url]()
        assert a.Unpack(msg)
        name = resource_name(resp.type_url, msg)
        assert name not in out, f"{SHORT[resp.type_url]} response names {name!r} twice"
        out[name] = msg
    return out


def names(resp: discovery_pb2.DiscoveryResponse) -> set[str]:
    return set(decode(resp))


def describe(resp: discovery_pb2.DiscoveryResponse) -> str:
    return f"{SHORT.get(resp.type_url, resp.type_url)} v{resp.version_info} nonce {resp.nonce} {sorted(names(resp))}"


def route_targets(resp: discovery_pb2.DiscoveryResponse) -> set[str]:
    return {c for rc in decode(resp).values() for c in envoy.route_clusters({RDS: {"x": rc}})["x"]}


def eds_clusters(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    return sorted(n for n, c in decode(resp).items() if c.type == cluster_pb2.Cluster.EDS)  # type: ignore[attr-defined]


def listener_routes(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = set()
    for lst in decode(resp).values():
        for chain in lst.filter_chains:  # type: ignore[attr-defined]
            for f in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager()
                if f.typed_config.Unpack(hcm) and hcm.HasField("rds"):
                    out.add(hcm.rds.route_config_name)
    return sorted(out)


# -- a real gRPC client --------------------------------------------------------------------

class StreamClient:
    """One ADS stream from a real grpc.aio client, on a connection of its own (as separate Envoys
    have): the reader, the node on the first request only, and bounded waits. A protocol's
    client says which method it calls, how a response is checked and described, and how it is
    recorded."""

    method = "StreamAggregatedResources"

    def __init__(self, target: str, node_id: str, *, read: bool = True) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.use_local_subchannel_pool", 1)])
        self.call = getattr(ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel), self.method)()
        self.node_id = node_id
        self.first = True
        self.queue: asyncio.Queue = asyncio.Queue()
        self.log: list = []
        self.reader = asyncio.create_task(self._read()) if read else None

    @staticmethod
    def describe(resp) -> str:
        raise NotImplementedError  # each protocol's client describes its own responses

    def received(self, resp) -> None:
        """Check and record one response, in the reader (a failure fails the next recv)."""

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            while True:
                resp = await self.call.read()
                if resp is grpc.aio.EOF:
                    return
                self.received(resp)
                self.log.append(resp)
                self.queue.put_nowait(resp)

    def _stamp(self, req, error: str | None) -> None:
        """The node on the stream's first request; a NACK's error_detail."""
        if self.first:
            req.node.id = self.node_id
            req.node.cluster = "edge"
            req.node.user_agent_name = "envoy"
            self.first = False
        if error is not None:
            req.error_detail.code = 3  # INVALID_ARGUMENT, as Envoy sends
            req.error_detail.message = error

    async def recv(self, type_url: str | None = None, timeout: float = WAIT):
        try:
            resp = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            if self.reader is not None and self.reader.done() and self.reader.exception():
                raise self.reader.exception() from None  # type: ignore[misc]
            raise AssertionError(f"no {SHORT.get(type_url or '', 'response')} within {timeout} s") from None
        if type_url is not None:
            assert resp.type_url == type_url, f"expected {SHORT[type_url]}, got {self.describe(resp)}"
        return resp

    async def silent(self, quiet: float = QUIET) -> None:
        await asyncio.sleep(quiet)
        assert self.queue.empty(), f"unexpected response: {self.describe(self.queue.get_nowait())}"

    async def react(self, resp) -> None:
        raise NotImplementedError  # what Envoy does with a response, per protocol

    async def settle(self, limit: float = 5.0) -> list:
        """Behave like Envoy until the server has nothing more to say; the responses, in order."""
        seen: list = []
        deadline = time.monotonic() + limit
        while True:
            assert time.monotonic() < deadline, f"still busy after {limit} s: {[self.describe(r) for r in seen]}"
            try:
                resp = await asyncio.wait_for(self.queue.get(), QUIET)
            except TimeoutError:
                return seen
            seen.append(resp)
            await self.react(resp)

    async def close(self) -> None:
        self.call.cancel()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.channel.close()


class Client(StreamClient):
    """A state-of-the-world stream, keeping per-type state the way Envoy does.

    Requests default to what Envoy would send: the type's current resource names, its last
    accepted version and the latest nonce received for the type.
    """

    describe = staticmethod(describe)

    def __init__(self, target: str, node_id: str, *, read: bool = True) -> None:
        self.nonce: dict[str, str] = {}
        self.version: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        super().__init__(target, node_id, read=read)

    def received(self, resp: discovery_pb2.DiscoveryResponse) -> None:
        decode(resp)  # fails the reader (and so the next recv) on a repeated name
        assert resp.nonce and resp.version_info is not None
        self.nonce[resp.type_url] = resp.nonce

    async def send(self, type_url: str, resource_names: Iterable[str] | None = None, *,
                   version: str | None = None, nonce: str | None = None, error: str | None = None) -> None:
        if resource_names is not None:
            self.names[type_url] = list(resource_names)
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=self.version.get(type_url, "") if version is None else version,
            resource_names=self.names.get(type_url, []),
            response_nonce=self.nonce.get(type_url, "") if nonce is None else nonce,
        )
        self._stamp(req, error)
        await self.call.write(req)

    async def ack(self, resp: discovery_pb2.DiscoveryResponse, resource_names: Iterable[str] | None = None) -> None:
        self.version[resp.type_url] = resp.version_info
        await self.send(resp.type_url, resource_names, version=resp.version_info, nonce=resp.nonce)

    async def nack(self, resp: discovery_pb2.DiscoveryResponse, message: str, *, version: str | None = None) -> None:
        await self.send(resp.type_url, version=version, nonce=resp.nonce, error=message)

    async def react(self, resp: discovery_pb2.DiscoveryResponse) -> None:
        """What Envoy does with a response: clusters and listeners (re)subscribe EDS and RDS, then the ACK."""
        if resp.type_url == CDS and EDS in self.names and eds_clusters(resp) != sorted(self.names[EDS]):
            await self.send(EDS, eds_clusters(resp))
        if resp.type_url == LDS and RDS in self.names and listener_routes(resp) != sorted(self.names[RDS]):
            await self.send(RDS, listener_routes(resp))
        await self.ack(resp)


class Plane:
    """A running ADS server and its clients; `client_class` is the protocol's client."""

    client_class: type = Client

    def __init__(self, cache: SnapshotCache, ads: AggregatedDiscoveryService, target: str) -> None:
        self.cache, self.ads, self.target = cache, ads, target
        self.clients: list = []

    def connect(self, node_id: str = "envoy-1", *, read: bool = True):
        c = self.client_class(self.target, node_id, read=read)
        self.clients.append(c)
        return c

    def connect_sotw(self, node_id: str) -> Client:
        c = Client(self.target, node_id)
        self.clients.append(c)
        return c

    def publish(self, *messages: Message) -> None:
        assert publish(self.cache, *messages), "the snapshot did not change"

    def stream(self, node_id: str = "envoy-1") -> ads_module.StreamState:
        found = [s for s in self.ads.streams.values() if s.node_id == node_id]
        assert len(found) == 1, [s.node_id for s in self.ads.streams.values()]
        return found[0]


@contextlib.asynccontextmanager
async def control_plane(cache: SnapshotCache | None = None, observer: ads_module.Observer | None = None,
                        plane_class: type[Plane] = Plane) -> AsyncIterator[Plane]:
    """A real ADS server on 127.0.0.1:<free port>; every client closed and every stream gone at the end."""
    cache = cache if cache is not None else SnapshotCache()
    ads = AggregatedDiscoveryService(cache, observer=observer)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((ads.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    plane = plane_class(cache, ads, f"127.0.0.1:{port}")
    try:
        yield plane
    finally:
        for c in plane.clients:
            await c.close()
        await server.stop(None)
        for _ in range(50):  # the handlers see their streams end and clean up
            if not ads.streams:
                break
            await asyncio.sleep(0.01)
        assert not ads.streams, "a stream outlived the server"


def run(scenario: Callable[[], object]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


async def subscribed(plane: Plane, node_id: str = "envoy-1", *, eds: Iterable[str] = ("a", "b"),
                     rds: Iterable[str] = ("http",), sds: Iterable[str] | None = None) -> Client:
    """A stream that has received and ACKed CDS, EDS, LDS, RDS (and SDS) for the current snapshot."""
    c = plane.connect(node_id)
    await c.send(CDS, [])
    await c.send(EDS, eds)
    await c.send(LDS, [])
    await c.send(RDS, rds)
    if sds is not None:
        await c.send(SDS, sds)
    for t in (CDS, EDS, LDS, RDS) + ((SDS,) if sds is not None else ()):
        await c.ack(await c.recv(t))
    await c.silent()
    return c


# -- 1 -------------------------------------------------------------------------------------

def test_nothing_before_the_first_snapshot_then_pending_requests_are_answered() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            c = p.connect()
            await c.send(CDS, [])
            await c.send(EDS, ["a"])
            await c.send(LDS, [])
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


# -- 2 -------------------------------------------------------------------------------------

def test_wildcard_empty_names_and_explicit_star() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "b"))
            c = p.connect()
            await c.send(CDS, [])  # empty on the first request: wildcard
            assert names(await c.recv(CDS)) == {"a", "b"}
            await c.send(LDS, ["*"])  # explicit wildcard
            assert names(await c.recv(LDS)) == {"http", "https"}
            await c.send(EDS, ["*"])  # explicit wildcard works for any type
            assert names(await c.recv(EDS)) == {"a", "b"}
            for t in (CDS, LDS, EDS):
                await c.ack(c.log[[r.type_url for r in c.log].index(t)])
            await c.silent()
            # A wildcard subscription follows the snapshot: a new cluster is sent to it.
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "b"),
                      cluster("c"), cla("c", "10.0.2.1"))
            assert names(await c.recv(CDS)) == {"a", "b", "c"}
            assert names(await c.recv(EDS)) == {"a", "b", "c"}
            # Once a name was given, an empty list is no wildcard any more: it subscribes to nothing.
            d = p.connect("envoy-2")
            await d.send(RDS, ["http"])
            await d.ack(await d.recv(RDS), [])
            await d.silent()
            p.publish(*base(), listener("https", "https", port=8443), route_config("https", "a"),
                      route_config("http", "b"), cluster("c"), cla("c", "10.0.2.1"))
            await d.silent()
    run(scenario)


# -- 3 -------------------------------------------------------------------------------------

def test_named_subscriptions_missing_grown_and_shrunk() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            # Only the requested names; one that does not exist is left out.
            await c.send(EDS, ["a", "c"])
            e1 = await c.recv(EDS)
            assert names(e1) == {"a"}
            await c.ack(e1)
            await c.silent()
            # ... and remembered: it is sent when it appears (with the rest of the subscription).
            p.publish(*base(), cluster("c"), cla("c", "10.0.2.1"))
            e2 = await c.recv(EDS)
            assert names(e2) == {"a", "c"} and e2.version_info != e1.version_info
            # A grown subscription gets the newly named resource although it did not change.
            await c.ack(e2, ["a", "c", "b"])
            e3 = await c.recv(EDS)
            assert names(e3) == {"a", "b", "c"}
            assert decode(e3)["b"] == cla("b", "10.0.1.1")
            # A shrunk one needs no response: the client dropped what it no longer asks for.
            await c.ack(e3, ["a"])
            await c.silent()
            # Unsubscribed resources are not sent; a subscribed one that changes is, alone.
            p.publish(*base(b=cla("b", "10.0.1.2")), cluster("c"), cla("c", "10.0.2.2"))
            await c.silent()
            p.publish(*base(a=cla("a", "10.0.0.2"), b=cla("b", "10.0.1.2")), cluster("c"), cla("c", "10.0.2.2"))
            e4 = await c.recv(EDS)
            assert names(e4) == {"a"}
            # Subscribed again, b is sent again: the client dropped it when it unsubscribed.
            await c.ack(e4, ["a", "b"])
            assert names(await c.recv(EDS)) == {"a", "b"}

            # RDS and SDS alike.
            await c.send(RDS, ["http", "later"])
            r1 = await c.recv(RDS)
            assert names(r1) == {"http"}
            await c.send(SDS, ["tls"])
            s1 = await c.recv(SDS)
            assert names(s1) == {"tls"}
            await c.ack(r1)
            await c.ack(s1)
            # A subscription to nothing that exists gets no (empty) response, then the resource.
            d = p.connect("envoy-2")
            await d.send(SDS, ["coming"])
            await d.silent()
            p.publish(*base(a=cla("a", "10.0.0.2"), b=cla("b", "10.0.1.2")), cluster("c"), cla("c", "10.0.2.2"),
                      secret("coming"), route_config("later", "a"))
            assert names(await d.recv(SDS)) == {"coming"}
            assert names(await c.recv(RDS)) == {"http", "later"}
            await c.silent()  # tls did not change, "other" and "coming" are not c's
    run(scenario)


# -- 4 -------------------------------------------------------------------------------------

def test_versions_and_nonces_are_per_type_and_versions_are_content_hashes() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS, [])
            await c.send(EDS, ["a", "b"])
            await c.send(LDS, [])
            cds1, eds1, lds1 = await c.recv(CDS), await c.recv(EDS), await c.recv(LDS)
            assert len({cds1.version_info, eds1.version_info, lds1.version_info}) == 3
            assert len({cds1.nonce, eds1.nonce, lds1.nonce}) == 3
            first = {r.type_url: r.version_info for r in (cds1, eds1, lds1)}
            await c.ack(eds1)
            await c.ack(lds1)
            # CDS is still in flight: a change waits for its ACK ...
            p.publish(*base(a=cluster("a", timeout=9)))
            await c.silent()
            # ... and an "ACK" carrying another type's nonce is not that ACK.
            await c.send(CDS, version=cds1.version_info, nonce=eds1.nonce)
            await c.silent()
            await c.ack(cds1)
            cds2 = await c.recv(CDS)
            assert cds2.version_info != cds1.version_info
            assert (await c.recv(EDS)).version_info == eds1.version_info  # cluster a changed: EDS again
        # A restarted control plane, given the same content (after another), says the same versions.
        async with control_plane() as q:
            q.publish(cluster("z"))
            q.publish(*base())
            c = q.connect()
            await c.send(CDS, [])
            await c.send(EDS, ["a", "b"])
            await c.send(LDS, [])
            again = {r.type_url: r.version_info for r in [await c.recv(t) for t in (CDS, EDS, LDS)]}
            assert again == first
    run(scenario)


# -- 5 -------------------------------------------------------------------------------------

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
    run(scenario)


# -- 6 -------------------------------------------------------------------------------------

def test_nack_is_recorded_and_the_rejected_content_is_not_resent() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS, [])
            good = await c.recv(CDS)
            await c.ack(good)
            p.publish(*base(a=cluster("a", timeout=7)))
            bad = await c.recv(CDS)
            await c.nack(bad, "cluster a: connect_timeout is bad", version=good.version_info)
            await c.silent()
            ts = p.stream().types[CDS]
            assert ts.status() == "NACKED"
            assert ts.nack_message == "cluster a: connect_timeout is bad"
            assert ts.nacks == 1 and ts.nack_version == bad.version_info
            # Publishing the same content again, or changing something else, sends no CDS.
            assert not publish(p.cache, *base(a=cluster("a", timeout=7)))
            p.publish(*base(a=cluster("a", timeout=7)), secret("unrelated"))
            await c.silent()
            # A real change is sent, with a new version.
            p.publish(*base(a=cluster("a", timeout=8)))
            fixed = await c.recv(CDS)
            assert fixed.version_info not in (good.version_info, bad.version_info)
            assert decode(fixed)["a"].connect_timeout.seconds == 8  # type: ignore[attr-defined]
            # A NACK is told by error_detail, even if version_info names the rejected version.
            await c.nack(fixed, "still bad", version=fixed.version_info)
            await c.silent()
            assert ts.status() == "NACKED" and ts.nack_message == "still bad" and ts.nacks == 2
            p.publish(*base(a=cluster("a", timeout=5), b=cluster("b", timeout=4)))
            last = await c.recv(CDS)
            await c.ack(last)
            await c.silent()
            assert ts.status() == "SYNCED" and ts.acked_version == last.version_info
    run(scenario)


# -- 7 -------------------------------------------------------------------------------------

def test_a_request_with_a_stale_nonce_is_ignored() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(EDS, ["a"])
            e1 = await c.recv(EDS)
            await c.ack(e1)
            p.publish(*base(a=cla("a", "10.0.0.9")))
            e2 = await c.recv(EDS)
            # Answers to e1 (superseded by e2) change nothing: not a new subscription, not a NACK.
            await c.send(EDS, ["a", "b"], nonce=e1.nonce)
            await c.nack(e1, "old news")
            await c.silent()
            ts = p.stream().types[EDS]
            assert ts.nacks == 0 and ts.status() == "STALE" and ts.in_flight
            # The same subscription change on the current nonce is honoured.
            await c.send(EDS, ["a", "b"], version=e2.version_info, nonce=e2.nonce)
            assert names(await c.recv(EDS)) == {"a", "b"}
    run(scenario)


# -- 8 -------------------------------------------------------------------------------------

def test_reconnect_with_the_current_version_gets_nothing_new_and_an_old_version_gets_the_current() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        publish(cache, *base())
        async with control_plane(cache) as p:
            c = await subscribed(p)
            held = {r.type_url: r for r in c.log}
            await c.close()
            p.clients.remove(c)
            # A new stream, as Envoy opens it after losing the old one: version_info is what it holds.
            d = p.connect("envoy-1b")
            await d.send(CDS, [], version=held[CDS].version_info)
            await d.send(EDS, ["a", "b"], version=held[EDS].version_info)
            await d.send(LDS, [], version="an-old-version")
            await d.send(RDS, ["http"], version=held[RDS].version_info)
            lds = await d.recv(LDS)
            assert lds.version_info == held[LDS].version_info
            await d.ack(lds)
            await d.silent()  # CDS, EDS and RDS: it has them
            ts = p.stream("envoy-1b").types[CDS]
            assert ts.responses == 0 and ts.status() == "SYNCED"
            # The stream is in a normal state: a change is sent.
            p.publish(*base(a=cla("a", "10.0.0.5")))
            e = await d.recv(EDS)
            assert names(e) == {"a", "b"} and e.version_info != held[EDS].version_info
            # Same EDS version but another subscription: not what it holds, so answered.
            f = p.connect("envoy-1c")
            await f.send(EDS, ["a"], version=held[EDS].version_info)
            assert names(await f.recv(EDS)) == {"a"}
            # A first request carrying a nonce of an older stream is a first request all the same.
            g = p.connect("envoy-1d")
            await g.send(CDS, [], version="", nonce="17")
            assert names(await g.recv(CDS)) == {"a", "b"}
        # A restarted control plane (a new cache too) with the same content has the same versions:
        # nothing to send.
        restarted = SnapshotCache()
        publish(restarted, *base())
        async with control_plane(restarted) as q:
            h = q.connect("envoy-1")
            await h.send(CDS, [], version=held[CDS].version_info)
            await h.send(LDS, [], version=held[LDS].version_info)
            await h.send(RDS, ["http"], version=held[RDS].version_info)
            await h.silent()
    run(scenario)


# -- 9 -------------------------------------------------------------------------------------

def test_only_the_first_request_carries_the_node() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect("envoy-node-9")
            await c.send(CDS, [])
            assert c.first is False
            r = await c.recv(CDS)
            await c.ack(r)  # no node
            await c.send(LDS, [])  # no node
            await c.ack(await c.recv(LDS))
            p.publish(*base(a=cluster("a", timeout=3)))
            await c.ack(await c.recv(CDS))
            await c.silent()
            stream = p.stream("envoy-node-9")
            assert (stream.node_id, stream.node_cluster) == ("envoy-node-9", "edge")
            assert stream.types[CDS].acks == 2 and stream.types[LDS].acks == 1
    run(scenario)


# -- 10 ------------------------------------------------------------------------------------

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
    run(scenario)


# -- 11 ------------------------------------------------------------------------------------

def test_make_before_break_when_a_route_moves_from_cluster_a_to_new_cluster_c() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            # c is new, a is gone (cluster and endpoints), the route moves from a to c.
            p.publish(cluster("b"), cla("b", "10.0.1.1"), listener("http", "http"), route_config("http", "c"),
                      cluster("c"), cla("c", "10.0.2.1"), secret("tls"), secret("other"))
            seen = await c.settle()
            trace = [describe(r) for r in seen]
            moved = next(i for i, r in enumerate(seen) if r.type_url == RDS and route_targets(r) == {"c"})
            before, after = seen[:moved], seen[moved + 1:]
            # The route naming c goes after CDS with c and EDS with c's assignment.
            assert any(r.type_url == CDS and "c" in names(r) for r in before), trace
            assert any(r.type_url == EDS and "c" in names(r) for r in before), trace
            # a stays in CDS until that route is sent ...
            assert all("a" in names(r) for r in before if r.type_url == CDS), trace
            # ... and then a CDS without it follows.
            final_cds = [r for r in after if r.type_url == CDS]
            assert final_cds and names(final_cds[-1]) == {"b", "c"}, trace
            assert c.names[EDS] == ["b", "c"]
            # Steady state: nothing more.
            await c.silent()
    run(scenario)


def test_a_nacked_route_keeps_the_clusters_it_replaced() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            p.publish(cluster("b"), cla("b", "10.0.1.1"), listener("http", "http"), route_config("http", "b"),
                      secret("tls"), secret("other"))
            # CDS does not change: a is kept while the routes Envoy holds send traffic to it, and b
            # was delivered with its endpoints before, so the route moves at once.
            rds = await c.recv(RDS)
            assert route_targets(rds) == {"b"}
            await c.nack(rds, "route rejected")
            # Envoy keeps its old routes, which still name a: a must stay.
            await c.silent()
            assert p.stream().types[RDS].status() == "NACKED"
            # A route configuration it accepts lets a go.
            p.publish(cluster("b"), cla("b", "10.0.1.1"), listener("http", "http"),
                      route_config("http", "b", prefix="/ok"), secret("tls"), secret("other"))
            await c.ack(await c.recv(RDS))
            assert names(await c.recv(CDS)) == {"b"}
            assert all(names(r) == {"a", "b"} for r in c.log[:-1] if r.type_url == CDS)
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


def test_a_route_to_a_cluster_without_eds_waits_only_for_cds() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = await subscribed(p)
            p.publish(*base(rc=route_config("http", "static")), cluster("static", eds=False))
            start = time.monotonic()
            seen = await c.settle()
            assert [SHORT[r.type_url] for r in seen][:2] == ["CDS", "RDS"]
            assert time.monotonic() - start < 2.0  # far below the 5 s gate timeout
    run(scenario)


# -- 12 ------------------------------------------------------------------------------------

def test_changes_during_an_unacked_response_coalesce_into_one_with_the_latest_version() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect()
            await c.send(CDS, [])
            first = await c.recv(CDS)
            for timeout in (6, 7, 8):
                p.publish(*base(a=cluster("a", timeout=timeout)))
            await c.silent()  # one response in flight per type
            await c.ack(first)
            latest = await c.recv(CDS)
            assert decode(latest)["a"].connect_timeout.seconds == 8  # type: ignore[attr-defined]
            await c.ack(latest)
            await c.silent()
            assert p.stream().types[CDS].responses == 2
    run(scenario)


# -- 13 ------------------------------------------------------------------------------------

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
            assert decode(eds)["a"] == decode(held)["a"]  # same ClusterLoadAssignment, sent again
            await c.ack(eds)
            await c.silent()
    run(scenario)


# -- 14 ------------------------------------------------------------------------------------

def test_a_stream_that_stops_reading_does_not_delay_another() -> None:
    async def scenario() -> None:
        # A 12 MB CDS response: more than gRPC buffers (about 7 MB here) for a client that does not read.
        big = [cluster(f"big{i}", pad=1_000_000) for i in range(12)]
        async with control_plane() as p:
            p.publish(*base(), *big)
            stuck = p.connect("stuck", read=False)
            await stuck.send(CDS, [])
            await stuck.send(LDS, [])
            fine = p.connect("fine")
            await fine.send(CDS, [])
            await fine.send(LDS, [])
            await fine.ack(await fine.recv(CDS))
            await fine.ack(await fine.recv(LDS))
            for port in (9001, 9002, 9003):
                p.publish(*base(), *big, listener("extra", "http", port=port))
                start = time.monotonic()
                lds = await fine.recv(LDS, timeout=1.0)
                assert time.monotonic() - start < 1.0 and "extra" in names(lds)
                await fine.ack(lds)
            # The other stream really is stuck writing its first response.
            assert p.stream("stuck").types[LDS].responses == 0
    run(scenario)


# -- 15 ------------------------------------------------------------------------------------

def test_unknown_type_urls_are_ignored_and_the_stream_goes_on() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            p.publish(*base())
            c = p.connect("envoy-15")
            unknown = "type.googleapis.com/example.v1.Unknown"
            await c.send(unknown, ["x"])  # the first request, carrying the node
            await c.send(unknown, ["x"], nonce="1", error="what is this")
            await c.silent()
            await c.send(CDS, [])
            await c.ack(await c.recv(CDS))
            await c.silent()
            assert p.stream("envoy-15").types.keys() == {CDS}
    run(scenario)


# -- 16 ------------------------------------------------------------------------------------

def test_no_name_twice_and_lds_cds_carry_the_complete_set() -> None:
    async def scenario() -> None:
        async with control_plane() as p:
            two = [listener("https", "https", port=8443), route_config("https", "b")]
            p.publish(*base(), *two)
            c = p.connect()
            await c.send(EDS, ["a", "a", "b", "a"])
            eds = await c.recv(EDS)
            assert [a.type_url for a in eds.resources] == [EDS, EDS]  # decode() checks the names
            await c.send(LDS, [])
            lds = await c.recv(LDS)
            assert names(lds) == {"http", "https"}
            await c.ack(lds)
            # A removed listener disappears from the next response, which still carries the others.
            p.publish(*base(b=cla("b", "10.0.1.3")))
            lds2 = await c.recv(LDS)
            assert names(lds2) == {"http"}
            await c.ack(lds2)
            await c.send(CDS, [])
            await c.ack(await c.recv(CDS))
            p.publish(cluster("a"), cla("a", "10.0.0.1"), listener("http", "http"), route_config("http", "a"))
            assert names(await c.recv(CDS)) == {"a"}  # b removed: the complete set, not a delta
            # Every response any client of this module read went through decode(): no repeated name.
        # The cache refuses a resource keyed by another name than its own (Envoy knows it by the latter).
        cache = SnapshotCache()
        with pytest.raises(ValueError, match="named 'b'"):
            cache.set_resources({CDS: {"a": cluster("b")}}, {})
    run(scenario)


def test_a_stream_that_stops_reading_is_closed_after_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9, scenario 8: a stuck client holds no queue (one response in flight per type), does not
    delay another stream, and is disconnected after STUCK_WRITE_TIMEOUT_S."""
    monkeypatch.setattr(ads_module, "STUCK_WRITE_TIMEOUT_S", 1.0)

    async def scenario() -> None:
        big = [cluster(f"big{i}", pad=1_000_000) for i in range(12)]
        async with control_plane() as p:
            p.publish(*base(), *big)
            stuck = p.connect("stuck", read=False)
            await stuck.send(CDS, [])
            fine = p.connect("fine")
            await fine.send(CDS, [])
            await fine.ack(await fine.recv(CDS))
            await asyncio.sleep(0.2)
            assert "stuck" in {s.node_id for s in p.ads.streams.values()}
            deadline = time.monotonic() + 5
            while "stuck" in {s.node_id for s in p.ads.streams.values()} and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert "stuck" not in {s.node_id for s in p.ads.streams.values()}, "the stuck stream was never closed"
            assert p.ads.stuck_streams_closed == 1
            p.publish(*base(), *big, listener("extra", "http", port=9009))
            await fine.send(LDS, [])
            assert "extra" in names(await fine.recv(LDS))  # the healthy stream is unaffected
    run(scenario)
