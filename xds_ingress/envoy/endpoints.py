"""IR endpoints to Envoy ClusterLoadAssignment messages."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from xds_ingress import ir


def load_assignment(cla: ir.ClusterLoadAssignment) -> endpoint_pb2.ClusterLoadAssignment:
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=cla.cluster_name)
    if cla.endpoints:
        locality = msg.endpoints.add()
        for ep in cla.endpoints:
            lb = locality.lb_endpoints.add()
            lb.endpoint.address.CopyFrom(socket_address(ep.address, ep.port))
    return msg


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=address, port_value=port, protocol=address_pb2.SocketAddress.TCP))

