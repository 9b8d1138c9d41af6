"""End-to-end test harness: ports, polling, echo backends, a real Envoy, certs, HTTP."""

from .backends import ECHO_MODULE, Backends
from .certs import CA, ServerCert, make_ca, tls_secret
from .envoy import Envoy, EnvoyError, envoy_binary
from .http import Client, LoadLoop, LoadResult, Response, raw_exchange, request
from .ports import free_port, free_ports
from .wait import wait_until

__all__ = [
    "CA",
    "ECHO_MODULE",
    "Backends",
    "Client",
    "Envoy",
    "EnvoyError",
    "LoadLoop",
    "LoadResult",
    "Response",
    "ServerCert",
    "envoy_binary",
    "free_port",
    "free_ports",
    "make_ca",
    "raw_exchange",
    "request",
    "tls_secret",
    "wait_until",
]
