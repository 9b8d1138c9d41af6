"""Synthetic Envoys: many delta xDS streams from one process (benchmark 6, fan-out).

`python -m bench.synthetic TARGET STREAMS [--batch N]`: opens STREAMS DeltaAggregatedResources
streams to TARGET, each on a connection of its own, each behaving like Envoy: the legacy
wildcard for CDS and LDS, EDS subscribed to every cluster it holds, RDS to every route
configuration its listeners name, and every response ACKed at once. Streams connect in
batches (each batch fully synced before the next), so the initial sync does not queue
gigabytes. Prints `synced N` after each batch and `ready` at the end, then keeps every stream
open and ACKing until stdin closes. Runs in a process of its own: its CPU is not the control
plane's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


class Stream:
    def __init__(self, target: str, node_id: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 512 * 1024 * 1024)])
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel).DeltaAggregatedResources()
        self.node_id = node_id
        self.held: dict[str, set[str]] = {CDS: set(), LDS: set()}
        self.subscribed: dict[str, set[str]] = {EDS: set(), RDS: set()}
        self.routes_of: dict[str, set[str]] = {}
        self.answered: set[str] = set()
        self.synced = asyncio.Event()

    async def run(self) -> None:
        first = discovery_pb2.DeltaDiscoveryRequest(type_url=CDS)
        first.node.id = self.node_id
        first.node.cluster = "synthetic"
        first.node.user_agent_name = "synthetic"
        await self.call.write(first)
        await self.call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LDS))
        async for resp in self.call:
            await self._on_response(resp)

    async def _on_response(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        t = resp.type_url
        if t in (CDS, LDS):
            held = self.held[t]
            for r in resp.resources:
                held.add(r.name)
                if t == LDS:
                    self.routes_of[r.name] = _route_names(r.resource.value)
            for n in resp.removed_resources:
                held.discard(n)
                self.routes_of.pop(n, None)
            child = EDS if t == CDS else RDS
            wanted = set(held) if t == CDS else set().union(*self.routes_of.values()) if self.routes_of else set()
            sub, unsub = wanted - self.subscribed[child], self.subscribed[child] - wanted
            if sub or unsub:
                self.subscribed[child] = wanted
                await self.call.write(discovery_pb2.DeltaDiscoveryRequest(
                    type_url=child, resource_names_subscribe=sorted(sub), resource_names_unsubscribe=sorted(unsub)))
        await self.call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=t, response_nonce=resp.nonce))
        self.answered.add(t)
        if not self.synced.is_set() and self.answered >= {CDS, LDS} and \
                (not self.subscribed[EDS] or EDS in self.answered) and (not self.subscribed[RDS] or RDS in self.answered):
            self.synced.set()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


def _route_names(listener_bytes: bytes) -> set[str]:
    lst = listener_pb2.Listener.FromString(listener_bytes)
    out = set()
    for chain in lst.filter_chains:
        for f in chain.filters:
            hcm = hcm_pb2.HttpConnectionManager()
            if f.typed_config.Unpack(hcm) and hcm.HasField("rds"):
                out.add(hcm.rds.route_config_name)
    return out


async def main_async(target: str, count: int, batch: int, prefix: str) -> None:
    streams: list[Stream] = []
    tasks: list[asyncio.Task] = []
    for start in range(0, count, batch):
        new = [Stream(target, f"{prefix}-{i:04d}") for i in range(start, min(count, start + batch))]
        streams += new
        tasks += [asyncio.create_task(s.run()) for s in new]
        await asyncio.wait_for(asyncio.gather(*(s.synced.wait() for s in new)), timeout=300)
        print(f"synced {len(streams)}", flush=True)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    for s in streams:
        await s.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.synthetic")
    p.add_argument("target")
    p.add_argument("streams", type=int)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--prefix", default="synthetic")
    args = p.parse_args()
    asyncio.run(main_async(args.target, args.streams, args.batch, args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
