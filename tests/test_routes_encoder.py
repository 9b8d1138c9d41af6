"""The route configuration encoder gives the bytes of the whole message, from cached virtual host bytes."""

from __future__ import annotations

import dataclasses

import pytest

from tests import golden_support as golden
from xds_ingress import envoy, ir
from xds_ingress.envoy import routes, types
from xds_ingress.envoy.wire import split_version
from envoy.config.route.v3 import route_pb2


@pytest.mark.parametrize("case", golden.case_names())
def test_encoder_bytes_equal_the_message(case: str) -> None:
    run = golden.run_case(case)
    encoder = routes.RouteConfigEncoder()
    configs = run.translation.ir.route_configurations
    assert configs
    want_clusters = envoy.route_clusters({types.ROUTE: {rc.name: routes.route_configuration(rc) for rc in configs}})
    for rc in configs:
        want = routes.route_configuration(rc).SerializeToString(deterministic=True)
        assert encoder.encode(rc) == want
        assert encoder.clusters(rc) == want_clusters[rc.name]
        # Its version, from the digests kept beside each virtual host, is the one its bytes give.
        versioned = encoder.encode_versioned(rc)
        assert versioned.body == want and versioned.version == split_version(want, 2)


def test_split_version_is_a_content_hash() -> None:
    """Any change of the bytes changes the version: a virtual host's, another field's, their order."""
    rc = route_pb2.RouteConfiguration(name="http")
    for h in ("a", "b"):
        rc.virtual_hosts.add(name=h, domains=[h])
    rc.validate_clusters.value = True
    base = split_version(rc.SerializeToString(deterministic=True), 2)
    assert base == split_version(rc.SerializeToString(deterministic=True), 2)
    changed = route_pb2.RouteConfiguration()
    changed.CopyFrom(rc)
    changed.virtual_hosts[1].domains.append("c")
    swapped = route_pb2.RouteConfiguration(name="http")
    for h in ("b", "a"):
        swapped.virtual_hosts.add(name=h, domains=[h])
    swapped.validate_clusters.value = True
    other = route_pb2.RouteConfiguration()
    other.CopyFrom(rc)
    other.validate_clusters.value = False
    versions = {split_version(m.SerializeToString(deterministic=True), 2) for m in (changed, swapped, other)}
    assert len(versions) == 3 and base not in versions
    with pytest.raises(ValueError):
        split_version(rc.SerializeToString(deterministic=True)[:-1], 2)


def test_encoder_follows_replaced_virtual_hosts() -> None:
    """Clusters kept per configuration follow virtual hosts replaced, added and removed."""
    def route(name: str, cluster: str) -> ir.Route:
        return ir.Route(name=name, match=ir.PathMatch(type="Prefix", path="/"), action=ir.RouteAction(cluster=cluster),
                        source=ir.Source(kind="Ingress", namespace="default", name=name))

    a = ir.VirtualHost(name="a", domains=("a",), routes=(route("a", "c1"),))
    b = ir.VirtualHost(name="b", domains=("b",), routes=(route("b", "c2"),))
    encoder = routes.RouteConfigEncoder()
    rc = ir.RouteConfiguration(name="http", virtual_hosts=(a, b))
    assert encoder.clusters(rc) == {"c1", "c2"}
    b2 = dataclasses.replace(b, routes=(route("b", "c1"),))
    rc2 = ir.RouteConfiguration(name="http", virtual_hosts=(a, b2))
    assert encoder.clusters(rc2) == {"c1"}
    assert encoder.encode(rc2) == routes.route_configuration(rc2).SerializeToString(deterministic=True)
    rc3 = ir.RouteConfiguration(name="http", virtual_hosts=(b,))
    assert encoder.clusters(rc3) == {"c2"}
    encoder.keep_only((rc3,))
    assert encoder.encode(rc3) == routes.route_configuration(rc3).SerializeToString(deterministic=True)
