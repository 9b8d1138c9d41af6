"""ingress-nginx's ssl-passthrough under --nginx-compat, with a real Envoy: TLS for a passed-through host goes
undecrypted to an HTTPS backend that presents its own certificate; a host beside it keeps TLS terminated by
Envoy; explain says where the connection goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Backends, Envoy, free_ports, request
from tests.harness import k8s
from tests.harness.certs import make_ca, tls_secret
from tests.harness.controlplane import ControlPlane
from xds_ingress.explain import explain

pytestmark = pytest.mark.envoy
N = "nginx.ingress.kubernetes.io/"


def test_ssl_passthrough_reaches_the_backend_undecrypted(tmp_path: Path) -> None:
    backend_ca, edge_ca = make_ca("backend CA"), make_ca("edge CA")
    backend_cert = backend_ca.issue(["pass.example.com"])
    edge_cert = edge_ca.issue(["term.example.com"])
    (tmp_path / "b.crt").write_text(backend_cert.cert_pem)
    (tmp_path / "b.key").write_text(backend_cert.key_pem)
    http_port, https_port = free_ports(2)
    with Backends(["secure"], tls=(str(tmp_path / "b.crt"), str(tmp_path / "b.key"))) as tls_be, \
            Backends(["plain"]) as be, \
            ControlPlane(tmp_path / "m", http_port=http_port, https_port=https_port, nginx_compat=True,
                         ingress_class="nginx", controller="k8s.io/ingress-nginx") as cp:
        cp.write("site.yaml", [
            k8s.ingress_class("nginx", controller="k8s.io/ingress-nginx"),
            k8s.service("secure"), k8s.endpoint_slice("secure-1", "secure", tls_be.port("secure")),
            k8s.service("plain"), k8s.endpoint_slice("plain-1", "plain", be.port("plain")),
            tls_secret("default", "term-tls", edge_cert.cert_pem, edge_cert.key_pem),
            k8s.ingress("pass", k8s.rule("pass.example.com", k8s.path("/", "secure")), class_name="nginx",
                        annotations={N + "ssl-passthrough": "true"}),
            k8s.ingress("term", k8s.rule("term.example.com", k8s.path("/", "plain")), class_name="nginx",
                        tls=[{"hosts": ["term.example.com"], "secretName": "term-tls"}]),
        ])
        with Envoy(cp.bootstrap(), tmp_path / "envoy"):
            cp.wait_synced()
            # The backend's own certificate (its CA, not the edge's) and its own answer: Envoy did not decrypt.
            r = request(https_port, "/anything", host="pass.example.com", https=True, ca_pem=backend_ca.cert_pem)
            assert (r.status, r.headers.get("x-backend")) == (200, "secure")
            with pytest.raises(OSError):  # verified against the edge CA, the backend's certificate is refused
                request(https_port, "/", host="pass.example.com", https=True, ca_pem=edge_ca.cert_pem)
            # The host beside it is terminated by Envoy with the edge certificate and routed by path.
            r = request(https_port, "/x", host="term.example.com", https=True, ca_pem=edge_ca.cert_pem)
            assert (r.status, r.headers.get("x-backend")) == (200, "plain")
            model = cp.call(lambda: cp.app.ir())
            e = explain(model, host="pass.example.com", path="/", https=True)
            assert (e.outcome, e.cluster.name if e.cluster else None) == ("passthrough", "default/secure/80")
            assert explain(model, host="term.example.com", path="/", https=True).outcome == "upstream"
