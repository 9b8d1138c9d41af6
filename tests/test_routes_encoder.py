"""The route configuration encoder gives the bytes of the whole message, from cached virtual host bytes."""

from __future__ import annotations

import dataclasses

import pytest

from tests import golden_support as golden
from xds_ingress import envoy, ir
from xds_ingress.envoy import routes, types


@pytest.mark.parametrize("case", golden.case_names())
def test_encoder_bytes_equal_the_message(case: str) -> None:
    run = golden.run_case(case)
    encoder = routes.RouteConfigEncoder()
    configs = run.translation.ir.route_configurations
    assert configs
    want_clusters = envoy.route_clusters({types.ROUTE: {rc.name: routes.route_configuration(rc) for rc in configs}})
    for rc in configs:
        assert encoder.encode(rc) == routes.route_configuration(rc).SerializeToString(deterministic=True)
        assert encoder.clusters(rc) == want_clusters[rc.name]


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
