"""TLS to the upstream (Service annotations upstream-tls, -sni, -ca-secret) with a real Envoy
and an HTTPS backend: verified against the CA from a Secret, refused with the wrong CA or name."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.harness import Backends, Envoy, free_ports, request, wait_until
from tests.harness import k8s
from tests.harness.certs import make_ca
from tests.harness.controlplane import ControlPlane

pytestmark = pytest.mark.envoy


def ca_secret(name: str, ca_pem: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": "default"},
            "data": {"ca.crt": base64.b64encode(ca_pem.encode()).decode()}}


def tls_service(sni: str, ca: str | None) -> dict:
    ann = {"xds-ingress.io/upstream-tls": "true", "xds-ingress.io/upstream-tls-sni": sni}
    if ca:
        ann["xds-ingress.io/upstream-tls-ca-secret"] = ca
    return k8s.service("secure", annotations=ann)


def test_upstream_tls_verified_with_a_ca_from_a_secret(tmp_path: Path) -> None:
    ca, other = make_ca("backend CA"), make_ca("another CA")
    cert = ca.issue(["backend.internal"])
    (tmp_path / "b.crt").write_text(cert.cert_pem)
    (tmp_path / "b.key").write_text(cert.key_pem)
    http_port, https_port = free_ports(2)
    with Backends(["secure"], tls=(str(tmp_path / "b.crt"), str(tmp_path / "b.key"))) as be, \
            ControlPlane(tmp_path / "m", http_port=http_port, https_port=https_port) as cp:
        base = [k8s.ingress_class(), ca_secret("backend-ca", ca.cert_pem), ca_secret("wrong-ca", other.cert_pem),
                k8s.endpoint_slice("secure-1", "secure", be.port("secure")),
                k8s.ingress("up", k8s.rule("up.example.com", k8s.path("/", "secure")))]
        cp.write("site.yaml", base + [tls_service("backend.internal", "backend-ca")])
        with Envoy(cp.bootstrap(), tmp_path / "envoy"):
            cp.wait_synced()
            r = request(http_port, "/x", host="up.example.com")
            assert (r.status, r.headers.get("x-backend")) == (200, "secure")  # over TLS, certificate verified
            # The backend's certificate is not signed by the configured CA: refused.
            cp.write("site.yaml", base + [tls_service("backend.internal", "wrong-ca")])
            cp.wait_synced()
            wait_until(lambda: request(http_port, "/x", host="up.example.com").status == 503, timeout=10)
            # The right CA but a name the certificate does not carry: refused too.
            cp.write("site.yaml", base + [tls_service("elsewhere.internal", "backend-ca")])
            cp.wait_synced()
            wait_until(lambda: request(http_port, "/x", host="up.example.com").status == 503, timeout=10)
            # Plain HTTP to a TLS backend fails; TLS without a CA is encrypted but unverified.
            cp.write("site.yaml", base + [k8s.service("secure")])
            cp.wait_synced()
            assert request(http_port, "/x", host="up.example.com").status in (400, 502, 503)
            cp.write("site.yaml", base + [tls_service("backend.internal", None)])
            cp.wait_synced()
            wait_until(lambda: request(http_port, "/x", host="up.example.com").status == 200, timeout=10)
