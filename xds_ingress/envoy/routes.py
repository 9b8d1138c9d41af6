"""IR route configurations to Envoy RouteConfiguration messages."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from xds_ingress import ir

# One DNS label: what the Ingress spec's "*." wildcard matches.
_LABEL = r"[^.:/]+"


def authority_regex(suffix: str) -> str:
    """RE2 for a Host (with an optional port) exactly one label under `suffix`, any case."""
    return rf"(?i)^{_LABEL}\.{suffix.replace('.', '[.]')}(:[0-9]+)?$"


def route_configuration(config: ir.RouteConfiguration) -> route_pb2.RouteConfiguration:
    msg = route_pb2.RouteConfiguration(name=config.name)
    # Host: example.com:8443 matches the virtual host example.com.
    msg.ignore_port_in_host_matching = True
    for vh in config.virtual_hosts:
        msg.virtual_hosts.append(virtual_host(vh))
    return msg


def virtual_host(vh: ir.VirtualHost) -> rc.VirtualHost:
    msg = rc.VirtualHost(name=vh.name, domains=list(vh.domains))
    for r in vh.routes:
        msg.routes.append(route(r))
    return msg


def route(r: ir.Route) -> rc.Route:
    msg = rc.Route(name=r.name)
    m = msg.match
    if r.match is None or (r.match.type == "Prefix" and r.match.path == "/"):
        m.prefix = "/"
    elif r.match.type == "Exact":
        m.path = r.match.path
    else:
        m.path_separated_prefix = r.match.path
    if r.guard is not None:
        m.headers.append(rc.HeaderMatcher(
            name=":authority",
            string_match=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(
                regex=authority_regex(r.guard.suffix))),
            invert_match=r.guard.invert,
        ))
    a = r.action
    if a.cluster is not None:
        msg.route.cluster = a.cluster
    else:
        msg.direct_response.status = a.direct_status or 503
        if a.direct_body:
            msg.direct_response.body.CopyFrom(base_pb2.DataSource(inline_string=a.direct_body))
    return msg
