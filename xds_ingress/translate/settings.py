"""Settings of a translation: the few things that are not in the objects."""

from __future__ import annotations

from dataclasses import dataclass

CONTROLLER_NAME = "xds-ingress.io/controller"
DEFAULT_INGRESS_CLASS = "xds"


@dataclass(frozen=True, slots=True, kw_only=True)
class TranslateSettings:
    ingress_class: str = DEFAULT_INGRESS_CLASS
    controller: str = CONTROLLER_NAME
    listen_address: str = "0.0.0.0"
    http_port: int = 8080
    https_port: int = 8443
    # External authorization of every route (`xds serve --auth-service`): "http://HOST:PORT[/path-prefix]" or
    # "grpc://HOST:PORT" ("": none); what an unreachable service means; how long a check may take.
    auth_service: str = ""
    auth_failure_mode: str = "closed"  # "closed": 403 | "open": the request goes through
    auth_timeout_ms: int = 1000
