"""Settings of a translation: the few things that are not in the objects."""

from __future__ import annotations

from dataclasses import dataclass

CONTROLLER_NAME = "xds-ingress.io/controller"
NGINX_CONTROLLER_NAME = "k8s.io/ingress-nginx"  # ingress-nginx's IngressClass controller, claimed with --nginx-compat
DEFAULT_INGRESS_CLASS = "xds"


@dataclass(frozen=True, slots=True, kw_only=True)
class TranslateSettings:
    ingress_class: str = DEFAULT_INGRESS_CLASS
    controller: str = CONTROLLER_NAME
    listen_address: str = "0.0.0.0"
    http_port: int = 8080
    https_port: int = 8443
    nginx_compat: bool = False  # read ingress-nginx's annotations too (ours win); see translate/nginx.py
