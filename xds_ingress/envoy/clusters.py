"""IR clusters to Envoy Cluster messages (EDS, endpoints under the cluster's own name)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from xds_ingress import ir
from xds_ingress.envoy.defaults import ads_config_source, harden_cluster


def cluster(c: ir.Cluster) -> cluster_pb2.Cluster:
    msg = cluster_pb2.Cluster(
        name=c.name,
        type=cluster_pb2.Cluster.EDS,
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )
    msg.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
    msg.eds_cluster_config.service_name = c.name
    harden_cluster(msg)
    return msg
