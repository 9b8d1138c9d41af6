"""The xDS resources of a snapshot as one static Envoy bootstrap, for `envoy --mode validate`. Pure.

What would reach Envoy over ADS is put inline, so that Envoy checks all of it at once:
listeners with their RDS replaced by the RouteConfiguration itself, EDS clusters made
STATIC with their ClusterLoadAssignment inline (an empty one when there is none), and the
TLS certificates and validation contexts of SDS secret configs inline. The result holds private keys: write it
only to a file that only the current user can read, and delete it.
"""

from __future__ import annotations

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from xds_ingress.envoy import Resources, types
from xds_ingress.envoy.listeners import pack


def static_bootstrap(resources: Resources, *, node_id: str = "xds-validate") -> bootstrap_pb2.Bootstrap:
    b = bootstrap_pb2.Bootstrap()
    b.node.id = node_id
    b.node.cluster = node_id
    routes: dict[str, route_pb2.RouteConfiguration] = resources.get(types.ROUTE, {})  # type: ignore[assignment]
    secrets: dict[str, secret_pb2.Secret] = resources.get(types.SECRET, {})  # type: ignore[assignment]
    assignments: dict[str, endpoint_pb2.ClusterLoadAssignment] = resources.get(types.ENDPOINT, {})  # type: ignore
    for name in sorted(resources.get(types.LISTENER, {})):
        lst = listener_pb2.Listener()
        lst.CopyFrom(resources[types.LISTENER][name])
        for chain in lst.filter_chains:
            for f in chain.filters:
                if f.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    if hcm.HasField("rds"):
                        rc_name = hcm.rds.route_config_name
                        rc = routes.get(rc_name) or route_pb2.RouteConfiguration(name=rc_name)
                        hcm.route_config.CopyFrom(rc)  # a oneof with rds: this clears it
                    f.typed_config.CopyFrom(pack(hcm))
            ts = chain.transport_socket
            if ts.typed_config.Is(tls_pb2.DownstreamTlsContext.DESCRIPTOR):
                ctx = tls_pb2.DownstreamTlsContext()
                ts.typed_config.Unpack(ctx)
                common = ctx.common_tls_context
                for sds in common.tls_certificate_sds_secret_configs:
                    secret = secrets.get(sds.name)
                    if secret is not None and secret.HasField("tls_certificate"):
                        common.tls_certificates.add().CopyFrom(secret.tls_certificate)
                common.ClearField("tls_certificate_sds_secret_configs")
                if common.HasField("validation_context_sds_secret_config"):
                    secret = secrets.get(common.validation_context_sds_secret_config.name)
                    if secret is not None and secret.HasField("validation_context"):
                        common.validation_context.CopyFrom(secret.validation_context)  # a oneof: clears the SDS one
                elif common.HasField("combined_validation_context"):
                    combined = common.combined_validation_context
                    secret = secrets.get(combined.validation_context_sds_secret_config.name)
                    if secret is not None and secret.HasField("validation_context"):
                        merged = combined.default_validation_context
                        merged.MergeFrom(secret.validation_context)
                        common.validation_context.CopyFrom(merged)  # a oneof: clears the combined one
                ts.typed_config.CopyFrom(pack(ctx))
        b.static_resources.listeners.append(lst)
    for name in sorted(resources.get(types.CLUSTER, {})):
        c = cluster_pb2.Cluster()
        c.CopyFrom(resources[types.CLUSTER][name])
        if c.type == cluster_pb2.Cluster.EDS:
            service = c.eds_cluster_config.service_name or c.name
            c.type = cluster_pb2.Cluster.STATIC
            c.ClearField("eds_cluster_config")
            cla = assignments.get(service)
            c.load_assignment.CopyFrom(cla if cla is not None else endpoint_pb2.ClusterLoadAssignment())
            c.load_assignment.cluster_name = c.name
        b.static_resources.clusters.append(c)
    return b
