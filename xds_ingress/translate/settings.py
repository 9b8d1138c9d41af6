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
    # "namespace/name" of a kubernetes.io/tls Secret served to TLS clients whose server name has no certificate
    # of its own, or that send none (a filter chain without server names); "": none, their handshake fails.
    default_certificate: str = ""
