"""Client Status Discovery Service (envoy.service.status.v3), on the xDS port.

Answers, for each connected Envoy (optionally selected by `node_matchers` on the node id),
what the control plane sent it and what it made of it, one GenericXdsConfig per resource:

| config_status | client_status | when |
|---|---|---|
| SYNCED | ACKED | the Envoy ACKed the response that carried this version of the resource |
| STALE | REQUESTED | sent, no ACK or NACK yet |
| ERROR | NACKED | the response carrying it was NACKed; `error_state` has Envoy's message, the rejected version and (redacted) content; `xds_config` is what the Envoy kept |
| NOT_SENT | REQUESTED | subscribed (or in the snapshot for a wildcard subscription) but not sent yet |

`xds_config` is the resource as sent, with secret material redacted (envoy/dump.py): key
material never leaves through this channel. `exclude_resource_contents` leaves it out.
Node metadata matchers are not supported (UNIMPLEMENTED).
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator

import grpc
from envoy.admin.v3 import config_dump_shared_pb2 as dump_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2
from google.protobuf import any_pb2, timestamp_pb2

from xds_ingress.cache import CachedResource
from xds_ingress.envoy import dump, types
from xds_ingress.server.ads import AggregatedDiscoveryService
from xds_ingress.server.state import TypeState

ConfigStatus = csds_pb2.ConfigStatus
ClientStatus = dump_pb2.ClientResourceStatus


class ClientStatusDiscoveryService(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):
    """Register with `csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(svc, server)`."""

    def __init__(self, ads: AggregatedDiscoveryService) -> None:
        self.ads = ads

    async def FetchClientStatus(self, request: csds_pb2.ClientStatusRequest,  # noqa: N802 - the RPC's name
                                context: grpc.aio.ServicerContext) -> csds_pb2.ClientStatusResponse:
        await _check(request, context)
        return self.status(request)

    async def StreamClientStatus(self, request_iterator: AsyncIterator[csds_pb2.ClientStatusRequest],  # noqa: N802
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[csds_pb2.ClientStatusResponse]:
        async for request in request_iterator:
            await _check(request, context)
            yield self.status(request)

    def status(self, request: csds_pb2.ClientStatusRequest) -> csds_pb2.ClientStatusResponse:
        resp = csds_pb2.ClientStatusResponse()
        contents = not request.exclude_resource_contents
        snapshot = self.ads.cache.snapshot
        for stream in sorted(self.ads.streams.values(), key=lambda s: s.id):
            if not stream.node_id:
                continue  # no request with a node yet
            if request.node_matchers and not any(_node_matches(m, stream.node_id) for m in request.node_matchers):
                continue
            cfg = resp.config.add()
            cfg.node.id = stream.node_id
            cfg.node.cluster = stream.node_cluster
            agent, _, _version = stream.user_agent.partition("/")
            cfg.node.user_agent_name = agent
            for type_url in types.PUSH_ORDER:
                ts = stream.types.get(type_url)
                if ts is None or not ts.requested:
                    continue
                current = snapshot.of_type(type_url) if snapshot is not None else {}
                for name in _names(ts, current):
                    _add(cfg, ts, name, contents)
        return resp


async def _check(request: csds_pb2.ClientStatusRequest, context: grpc.aio.ServicerContext) -> None:
    if any(m.node_metadatas for m in request.node_matchers):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "node_metadatas matchers are not supported; match on node_id")


def _names(ts: TypeState, current) -> list[str]:
    names = set(ts.sent or ()) | set(ts.acked or ())
    names |= set(current) if ts.wildcard else set(ts.names)
    return sorted(names)


def _add(cfg: csds_pb2.ClientConfig, ts: TypeState, name: str, contents: bool) -> None:
    g = cfg.generic_xds_configs.add(type_url=ts.type_url, name=name)
    sent = (ts.sent or {}).get(name)
    acked = (ts.acked or {}).get(name)
    unacked = sent is not None and (acked is None or acked.version != sent.version)
    if unacked and ts.status() == "NACKED":
        g.config_status = ConfigStatus.ERROR
        g.client_status = ClientStatus.NACKED
        err = g.error_state
        err.details = ts.nack_message
        err.version_info = ts.nack_version
        err.last_update_attempt.CopyFrom(_timestamp(ts.nack_at))
        if contents:
            err.failed_configuration.CopyFrom(_redacted_any(sent))
        held = acked
        version, at = ts.acked_version, ts.acked_at
    elif unacked:
        g.config_status = ConfigStatus.STALE
        g.client_status = ClientStatus.REQUESTED
        held, version, at = sent, ts.sent_version, ts.sent_at
    elif acked is not None:
        g.config_status = ConfigStatus.SYNCED
        g.client_status = ClientStatus.ACKED
        held, version, at = acked, ts.acked_version, ts.acked_at
    else:
        g.config_status = ConfigStatus.NOT_SENT
        g.client_status = ClientStatus.REQUESTED
        held, version, at = None, "", 0.0
    if held is not None:
        g.version_info = version
        if at:
            g.last_updated.CopyFrom(_timestamp(at))
        if contents:
            g.xds_config.CopyFrom(_redacted_any(held))


def _timestamp(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def _redacted_any(r: CachedResource) -> any_pb2.Any:
    return any_pb2.Any(type_url=r.type_url, value=_redacted_body(r.type_url, r.version, r.body))


@functools.lru_cache(maxsize=4096)
def _redacted_body(type_url: str, version: str, body: bytes) -> bytes:
    return dump.redacted_bytes(type_url, body)


def _node_matches(m: node_pb2.NodeMatcher, node_id: str) -> bool:
    if not m.HasField("node_id"):
        return True
    return string_matches(m.node_id, node_id)


def string_matches(m: string_pb2.StringMatcher, value: str) -> bool:
    which = m.WhichOneof("match_pattern")

    def fold(s: str) -> str:
        return s.lower() if m.ignore_case else s

    if which == "exact":
        return fold(value) == fold(m.exact)
    if which == "prefix":
        return fold(value).startswith(fold(m.prefix))
    if which == "suffix":
        return fold(value).endswith(fold(m.suffix))
    if which == "contains":
        return fold(m.contains) in fold(value)
    if which == "safe_regex":
        try:
            return re.fullmatch(m.safe_regex.regex, value) is not None
        except re.error:
            return False
    return False



def add_to_server(service: ClientStatusDiscoveryService, server: grpc.aio.Server) -> None:
    csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(service, server)
