"""Edge policies of a route, from policy values to the IR: CORS, client address ranges, rate limits.

The keys (read by the annotation tables, `annotations.py`):

- `cors.*`: CorsPolicy; nothing without `cors.allow_origins`, and credentials never with `*`;
- `source.allow`, `source.deny`: SourceRanges (403 outside);
- `ratelimit.rate`, `ratelimit.burst`, `ratelimit.key`, `ratelimit.exempt`: LocalRateLimit, a token bucket in
  each Envoy, made as smooth as Envoy's 50 ms refill floor allows, that clients of the exempt ranges skip;
- `ratelimit.global`: GlobalRateLimit, a descriptor for the rate limit service; only when the control
  plane runs with one (`TranslateSettings.rate_limit_service`).
- `connlimit.limit`, `connlimit.zone`, `connlimit.exempt`: ConnectionLimit, requests in progress at once per client
  address, counted by the connection limiter; only when the control plane runs with one
  (`TranslateSettings.connection_limit_service`).

Also the listener settings that go with them: the X-Forwarded-For trusted hops, the rate limit
service and the connection limiter (`listener_settings`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any

from xds_ingress import ir
from xds_ingress.diagnostics import Severity
from xds_ingress.translate.annotations import Parsed
from xds_ingress.translate.parsers import RATE_UNITS_MS
from xds_ingress.translate.settings import TranslateSettings

Values = Mapping[str, Parsed]
Report = Callable[[Parsed, str, str, Severity], None]

KEY_PREFIXES = ("cors.", "source.", "ratelimit.", "connlimit.")
RATE_LIMIT_SERVICE_CLUSTER = "rate_limit_service"  # no cluster of a Service has a name without '/'
CONNECTION_LIMIT_SERVICE_CLUSTER = "connection_limit_service"
MIN_FILL_INTERVAL_MS = 50  # Envoy refuses a token bucket refilled more often


def route_fields(values: Values, report: Report, settings: TranslateSettings,
                 present: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The edge policy fields of ir.RoutePolicy from one Ingress's policy values. `present`: the keys whose
    annotation is there, valid or not (what depends on an invalid one is ignored without a second diagnostic)."""
    return {
        "cors": _cors(values, report, present),
        "source_ranges": _source_ranges(values),
        "local_rate_limit": _local_rate_limit(values, report, present),
        "global_rate_limit": _global_rate_limit(values, report, settings),
        "connection_limit": _connection_limit(values, report, settings),
    }


# --- CORS ------------------------------------------------------------------------------------

def _cors(values: Values, report: Report, present: frozenset[str]) -> ir.CorsPolicy | None:
    origins = values.get("cors.allow_origins")
    if origins is None:
        if "cors.allow_origins" in present:
            return None  # invalid, and reported
        for k, v in values.items():
            if k.startswith("cors."):
                report(v, "IgnoredAnnotation", "is ignored without cors-allow-origins; list the origins allowed.",
                       Severity.WARNING)
        return None
    allow = tuple(ir.OriginMatch(type=t, value=val) for t, val in origins.value)
    credentials = values.get("cors.allow_credentials")
    with_credentials = credentials is not None and credentials.value is True
    if with_credentials and any(o.type == "any" for o in allow):
        report(credentials, "InvalidAnnotation",
               "is ignored because cors-allow-origins is '*': every site could read responses with the user's "
               "cookies. List the origins that may (exact or regex:).", Severity.ERROR)
        with_credentials = False
    return ir.CorsPolicy(
        allow_origins=allow, allow_methods=_v(values, "cors.allow_methods", ()),
        allow_headers=_v(values, "cors.allow_headers", ()), expose_headers=_v(values, "cors.expose_headers", ()),
        max_age_s=_v(values, "cors.max_age"), allow_credentials=with_credentials)


# --- client address ranges -------------------------------------------------------------------

def _source_ranges(values: Values) -> ir.SourceRanges | None:
    allow = _v(values, "source.allow", ())
    deny = _v(values, "source.deny", ())
    if not allow and not deny:
        return None
    return ir.SourceRanges(allow=tuple(sorted(allow, key=_net_order)), deny=tuple(sorted(deny, key=_net_order)))


def _net_order(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return (net.version, int(net.network_address), net.prefixlen)


# --- local rate limits -----------------------------------------------------------------------

def token_bucket(requests: int, unit: str) -> tuple[int, int]:
    """(tokens_per_fill, fill_interval_ms) for `requests` per `unit`: the shortest refill interval of at least
    50 ms (Envoy's floor) that refills a whole number of tokens, so the rate holds even with a small burst."""
    unit_ms = RATE_UNITS_MS[unit]
    step = unit_ms // math.gcd(requests, unit_ms)  # the intervals with whole refills are its multiples
    interval = step * math.ceil(MIN_FILL_INTERVAL_MS / step)
    return requests * interval // unit_ms, interval


def _local_rate_limit(values: Values, report: Report, present: frozenset[str]) -> ir.LocalRateLimit | None:
    rate = values.get("ratelimit.rate")
    if rate is None:
        for k in ("ratelimit.burst", "ratelimit.key", "ratelimit.exempt"):
            if k in values and "ratelimit.rate" not in present:
                report(values[k], "IgnoredAnnotation", "is ignored without rate-limit; set the rate (e.g. '100/s').",
                       Severity.WARNING)
        return None
    requests, unit = rate.value
    per_fill, interval_ms = token_bucket(requests, unit)
    burst = _v(values, "ratelimit.burst", requests)
    if burst < per_fill:
        report(values["ratelimit.burst"], "InvalidAnnotation",
               f"({burst}) is less than the {per_fill} tokens that {requests}/{unit} refills at once (every "
               f"{interval_ms} ms, the finest whole refill), so the limit would be lower than asked; "
               f"{per_fill} is used. Set at least {per_fill}.", Severity.WARNING)
        burst = per_fill
    key = values.get("ratelimit.key")
    exempt = _v(values, "ratelimit.exempt", ())
    if exempt and key is not None and key.value[0] == "header":
        report(values["ratelimit.exempt"], "ConflictingAnnotation",
               "is ignored with rate-limit-key header:NAME (exempt clients are told apart by address: use "
               "rate-limit-key client-ip, or none).", Severity.WARNING)
        exempt = ()
    return ir.LocalRateLimit(requests=requests, unit=unit, max_tokens=burst, tokens_per_fill=per_fill,
                             fill_interval_ms=interval_ms,
                             key=ir.RateLimitEntry(type=key.value[0], name=key.value[1]) if key else None,
                             exempt=tuple(sorted(exempt, key=_net_order)))


# --- global rate limits ----------------------------------------------------------------------

def _global_rate_limit(values: Values, report: Report, settings: TranslateSettings) -> ir.GlobalRateLimit | None:
    g = values.get("ratelimit.global")
    if g is None:
        return None
    if settings.rate_limit_service is None:
        report(g, "NoRateLimitService",
               "needs a rate limit service, and the control plane runs without --rate-limit-service, so requests "
               "are not limited across the fleet. Start xds serve with --rate-limit-service HOST:PORT, or use "
               "rate-limit for a limit in each Envoy.", Severity.ERROR)
        return None
    return ir.GlobalRateLimit(entries=tuple(ir.RateLimitEntry(type=t, name=n) for t, n in g.value))


# --- requests in progress per client address -------------------------------------------------

def _connection_limit(values: Values, report: Report, settings: TranslateSettings) -> ir.ConnectionLimit | None:
    limit = values.get("connlimit.limit")
    if limit is None:
        return None
    if settings.connection_limit_service is None:
        report(limit, "NoConnectionLimitService",
               "needs the connection limiter, and the control plane runs without --connection-limit-service, so "
               "requests in progress are not limited per client address. Run `xds connection-limiter --listen "
               "HOST:PORT` and start xds serve with --connection-limit-service HOST:PORT.", Severity.ERROR)
        return None
    return ir.ConnectionLimit(limit=limit.value, zone=_v(values, "connlimit.zone", ""),
                              exempt=tuple(sorted(_v(values, "connlimit.exempt", ()), key=_net_order)))


# --- listener settings -----------------------------------------------------------------------

def split_host_port(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' of a service address: an IP address or a DNS name, and a port 1-65535."""
    v = value.strip()
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = v.rpartition(":")
        if ":" in host:  # an IPv6 address goes in brackets
            raise ValueError(f"{value!r} is not HOST:PORT (write an IPv6 address as [ADDRESS]:PORT)")
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(f"{value!r} is not HOST:PORT (a port from 1 to 65535)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if v.startswith("[") or len(host) > 253 or not all(
                label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
                and not label.startswith("-") and not label.endswith("-") for label in host.lower().split(".")):
            raise ValueError(f"{value!r}: {host!r} is neither an IP address nor a DNS name") from None
        host = host.lower()
    return host, int(port)


def rate_limit_service(settings: TranslateSettings) -> ir.RateLimitService | None:
    if settings.rate_limit_service is None:
        return None
    host, port = split_host_port(settings.rate_limit_service)
    return ir.RateLimitService(cluster=RATE_LIMIT_SERVICE_CLUSTER, address=host, port=port,
                               domain=settings.rate_limit_domain,
                               failure_mode_deny=settings.rate_limit_failure_mode_deny,
                               timeout_ms=settings.rate_limit_timeout_ms)


def connection_limit_service(settings: TranslateSettings) -> ir.ConnectionLimitService | None:
    if settings.connection_limit_service is None:
        return None
    host, port = split_host_port(settings.connection_limit_service)
    return ir.ConnectionLimitService(cluster=CONNECTION_LIMIT_SERVICE_CLUSTER, address=host, port=port,
                                     timeout_ms=settings.connection_limit_timeout_ms)


def listener_settings(listeners: tuple[ir.Listener, ...], settings: TranslateSettings) -> tuple[ir.Listener, ...]:
    """The listeners with the edge settings of the control plane: trusted X-Forwarded-For hops, the
    rate limit service and the connection limiter."""
    rls = rate_limit_service(settings)
    cls = connection_limit_service(settings)
    if settings.xff_num_trusted_hops == 0 and rls is None and cls is None:
        return listeners
    return tuple(dataclasses.replace(lst, xff_num_trusted_hops=settings.xff_num_trusted_hops or None,
                                     rate_limit_service=rls, connection_limit_service=cls) for lst in listeners)


def _v(values: Values, key: str, default=None):
    p = values.get(key)
    return default if p is None else p.value
