"""IR secrets to Envoy SDS Secret messages, sent over ADS: TLS certificates with their keys, and the CA
certificates that client certificates are verified against (validation contexts)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from xds_ingress import ir


def secret(s: ir.TLSSecret) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=s.name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=s.certificate_chain),
            private_key=base_pb2.DataSource(inline_bytes=s.private_key.value),
        ),
    )


def validation_secret(s: ir.ValidationSecret) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=s.name,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=s.ca_certificates)),
    )
