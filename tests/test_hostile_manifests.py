"""A corpus of malformed and hostile manifests applied beside good objects, through the real
control plane and a real Envoy: every good route still answers, every bad object has a
diagnostic naming it (and its field), Envoy rejects nothing, the process never crashes."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import yaml

from tests.harness import Backends, Envoy, free_ports, request
from tests.harness import k8s
from tests.harness.certs import make_ca, tls_secret
from tests.harness.controlplane import ControlPlane

pytestmark = pytest.mark.envoy


def _ing(name: str, **spec_over) -> dict:
    obj = k8s.ingress(name, k8s.rule(f"{name}.bad.example.com", k8s.path("/", "good")))
    obj["spec"].update(spec_over)
    return obj


def _path(name: str, **path_over) -> dict:
    obj = k8s.ingress(name, k8s.rule(f"{name}.bad.example.com", k8s.path("/", "good")))
    obj["spec"]["rules"][0]["http"]["paths"][0].update(path_over)
    return obj


def _rule(name: str, **rule_over) -> dict:
    obj = k8s.ingress(name, k8s.rule(f"{name}.bad.example.com", k8s.path("/", "good")))
    obj["spec"]["rules"][0].update(rule_over)
    return obj


def corpus() -> list[tuple[dict, str]]:
    """(object, the field its diagnostic must name, or "" for the object as a whole)."""
    ca = make_ca()
    good_cert = ca.issue(["tls.bad.example.com"])
    other = ca.issue(["x.example.com"])
    p0 = "spec.rules[0].http.paths[0]"
    items: list[tuple[dict, str]] = [
        (_ing("b-rules-str", rules="everything"), "spec.rules"),
        (_ing("b-rules-int", rules=7), "spec.rules"),
        (_ing("b-rule-list", rules=[["x"]]), "spec.rules[0]"),
        (_ing("b-tls-str", tls="yes"), "spec.tls"),
        (_ing("b-tls-hosts-int", tls=[{"hosts": [5], "secretName": "s"}]), "spec.tls[0].hosts[0]"),
        (_ing("b-class-int", ingressClassName=3), "spec.ingressClassName"),
        (_ing("b-default-str", defaultBackend="svc"), "spec.defaultBackend"),
        (_ing("b-spec-list", **{}) | {"spec": ["a"]}, "spec"),
        (_path("b-pathtype-unknown", pathType="Regex"), f"{p0}.pathType"),
        (_path("b-pathtype-missing", pathType=None), f"{p0}.pathType"),
        (_path("b-path-noslash", path="api"), f"{p0}.path"),
        (_path("b-path-space", path="/a b"), f"{p0}.path"),
        (_path("b-path-query", path="/a?x=1"), f"{p0}.path"),
        (_path("b-path-hash", path="/a#frag"), f"{p0}.path"),
        (_path("b-path-nul", path="/a\x00b"), f"{p0}.path"),
        (_path("b-path-crlf", path="/a\r\nX-Injected: 1"), f"{p0}.path"),
        (_path("b-path-unicode", path="/caf\u00e9"), f"{p0}.path"),
        (_path("b-path-tab", path="/a\tb"), f"{p0}.path"),
        (_path("b-path-100k", path="/" + "a" * 100_000), f"{p0}.path"),
        (_path("b-path-int", path=42), f"{p0}.path"),
        (_path("b-backend-str", backend="good"), f"{p0}.backend"),
        (_path("b-backend-empty", backend={}), f"{p0}.backend"),
        (_path("b-backend-both", backend={"service": {"name": "good", "port": {"number": 80}},
                                          "resource": {"kind": "Bucket", "name": "x"}}), f"{p0}.backend"),
        (_path("b-port-range", backend=k8s.backend("good", 70000)), f"{p0}.backend.service.port.number"),
        (_path("b-port-negative", backend=k8s.backend("good", -1)), f"{p0}.backend.service.port.number"),
        (_path("b-port-zero", backend=k8s.backend("good", 0)), f"{p0}.backend.service.port.number"),
        (_path("b-port-str", backend={"service": {"name": "good", "port": {"number": "80"}}}),
         f"{p0}.backend.service.port.number"),
        (_path("b-port-bool", backend={"service": {"name": "good", "port": {"number": True}}}),
         f"{p0}.backend.service.port.number"),
        (_path("b-port-both", backend={"service": {"name": "good", "port": {"number": 80, "name": "http"}}}),
         f"{p0}.backend.service.port"),
        (_path("b-port-name-bad", backend=k8s.backend("good", "HTTP_PORT!")), f"{p0}.backend.service.port.name"),
        (_path("b-svc-name-bad", backend=k8s.backend("Good_Svc", 80)), f"{p0}.backend.service.name"),
        (_path("b-svc-missing", backend=k8s.backend("nowhere", 80)), f"{p0}.backend.service.name"),
        (_path("b-svc-port-missing", backend=k8s.backend("good", 81)), f"{p0}.backend.service.port"),
        (_path("b-resource", backend={"resource": {"apiGroup": "x", "kind": "Bucket", "name": "b"}}), f"{p0}.backend"),
        (_rule("b-host-space", host="a b.example.com"), "spec.rules[0].host"),
        (_rule("b-host-port", host="a.example.com:8080"), "spec.rules[0].host"),
        (_rule("b-host-ip", host="10.0.0.1"), "spec.rules[0].host"),
        (_rule("b-host-upper", host="UPPER.example.com"), "spec.rules[0].host"),
        (_rule("b-host-double-wild", host="*.*.example.com"), "spec.rules[0].host"),
        (_rule("b-host-mid-wild", host="a.*.example.com"), "spec.rules[0].host"),
        (_rule("b-host-long", host="a" * 300 + ".com"), "spec.rules[0].host"),
        (_rule("b-host-int", host=12), "spec.rules[0].host"),
        (_rule("b-http-str", http="paths"), "spec.rules[0].http"),
        (_rule("b-paths-str", http={"paths": "/"}), "spec.rules[0].http.paths"),
        (k8s.ingress("b-annot-int", k8s.rule("annot.bad.example.com", k8s.path("/", "good")))
         | {"metadata": {"name": "b-annot-int", "namespace": "default", "annotations": {"a": 1}}},
         "metadata.annotations['a']"),
        (k8s.ingress("b-annot-100k", k8s.rule("annot2.bad.example.com", k8s.path("/", "good")),
                     annotations={"xds-ingress.io/huge": "x" * 100_000}), "metadata.annotations['xds-ingress.io/huge']"),
        ({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"namespace": "default"},
          "spec": {}}, "metadata.name"),
        ({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "Bad_Name"}}, "metadata.name"),
        ({"apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress", "metadata": {"name": "b-old-api"}},
         "apiVersion"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b-svc-ports-str"}, "spec": {"ports": "80"}},
         "spec.ports"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b-svc-port-range"},
          "spec": {"ports": [{"port": 99999}]}}, "spec.ports[0].port"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b-svc-dup-port"},
          "spec": {"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}}, "spec.ports[1].port"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b-svc-target"},
          "spec": {"ports": [{"port": 80, "targetPort": [1]}]}}, "spec.ports[0].targetPort"),
        ({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "b-eps-addr", "labels": {"kubernetes.io/service-name": "good"}},
          "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
          "endpoints": [{"addresses": ["not-an-ip"]}]}, "endpoints[0].addresses[0]"),
        ({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "b-eps-v6-in-v4", "labels": {"kubernetes.io/service-name": "good"}},
          "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
          "endpoints": [{"addresses": ["::1"]}]}, "endpoints[0].addresses[0]"),
        ({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "b-eps-port", "labels": {"kubernetes.io/service-name": "good"}},
          "addressType": "IPv4", "ports": [{"name": "http", "port": 123456}], "endpoints": []}, "ports[0].port"),
        ({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "b-eps-type"}, "addressType": "IPX"}, "addressType"),
        (tls_secret("default", "b-secret-garbage", "not a cert", "not a key"), "data['tls.crt']"),
        (tls_secret("default", "b-secret-mismatch", good_cert.cert_pem, other.key_pem), "data['tls.key']"),
        ({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "b-secret-b64"},
          "data": {"tls.crt": "!!!", "tls.key": "???"}}, "data['tls.crt']"),
        ({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "b-secret-empty"},
          "data": {}}, "data['tls.crt']"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b-cm-data-list"}, "data": ["x"]}, "data"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b-cm-int"},
          "data": {"replicas": 3, "huge": "x" * 20000}}, "data['replicas']"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b-cm-key"},
          "data": {"bad key\r\n": "x"}}, "data['bad key"),
        (_ing("b-tls-cross-ns", tls=[{"hosts": ["b-tls-cross-ns.bad.example.com"], "secretName": "shared-tls"}]),
         "spec.tls[0].secretName"),
        (_ing("b-tls-broken-secret", tls=[{"hosts": ["b-tls-broken-secret.bad.example.com"],
                                           "secretName": "b-secret-garbage"}]), "spec.tls[0].secretName"),
    ]
    # Authentication: a bad value of each annotation (the Ingress then answers 503 or ignores it), and Secrets
    # whose htpasswd entries or key set cannot be used.
    for name, value in AUTH_BAD.items():
        annotation = "xds-ingress.io/" + name
        items.append((k8s.ingress(f"b-auth-{name}", k8s.rule(f"b-auth-{name}.bad.example.com", k8s.path("/", "good")),
                                  annotations={annotation: value}), f"metadata.annotations['{annotation}']"))
    for secret_name, key, content, annotation in (
            ("b-htpasswd-bcrypt", "auth", "bob:$2y$05$abcdefghijklmnopqrstuu\nx\n", "basic-auth-secret"),
            ("b-htpasswd-binary", "auth", "\udcff", "basic-auth-secret"),
            ("b-jwks-private", "jwks", '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}',
             "jwt-jwks-secret"),
            ("b-jwks-garbage", "jwks", "{{{", "jwt-jwks-secret")):
        raw = content.encode("utf-8", "surrogateescape")
        items.append(({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": secret_name},
                       "data": {key: base64.b64encode(raw).decode()}}, f"data['{key}']"))
        items.append((k8s.ingress(f"{secret_name}-user", k8s.rule(f"{secret_name}.bad.example.com",
                                                                  k8s.path("/", "good")),
                                  annotations={"xds-ingress.io/" + annotation: secret_name}),
                      f"metadata.annotations['xds-ingress.io/{annotation}']"))
    return items


AUTH_BAD = {
    "basic-auth-secret": "../etc/passwd", "basic-auth-realm": "a\"b", "jwt-jwks-secret": "x/y",
    "jwt-jwks-uri": "https://keys.example.com:99999/x", "jwt-issuer": "a b", "jwt-audiences": ",",
    "jwt-claims-to-headers": "sub:x-a\r\nx-b: c", "jwt-forward": "1", "auth-url": "authz:80/%zz",
    "auth-request-headers": "x-a b", "auth-response-headers": "host", "auth": "%DOWNSTREAM_REMOTE_ADDRESS%",
}


def test_hostile_corpus_beside_good_objects(tmp_path: Path) -> None:
    items = corpus()
    assert len(items) >= 50
    http_port, https_port = free_ports(2)
    ca = make_ca()
    cert = ca.issue(["good.example.com"])
    elsewhere = ca.issue(["shared.example.com"])
    with Backends(["good"]) as be, ControlPlane(tmp_path / "m", http_port=http_port, https_port=https_port) as cp:
        good = [k8s.ingress_class(), *k8s.backend_service("good", [be.port("good")]),
                tls_secret("default", "good-tls", cert.cert_pem, cert.key_pem),
                tls_secret("other-ns", "shared-tls", elsewhere.cert_pem, elsewhere.key_pem),
                k8s.ingress("good", k8s.rule("good.example.com", k8s.path("/", "good")),
                            tls=[{"hosts": ["good.example.com"], "secretName": "good-tls"}],
                            annotations={"xds-ingress.io/ssl-redirect": "false"})]  # HTTP and HTTPS both serve
        cp.write("good.yaml", good)
        # Each hostile object in its own file, as a user's repository would have them; plus two
        # files that are not even YAML.
        for i, (obj, _field) in enumerate(items):
            (tmp_path / "m" / f"bad-{i:02d}.yaml").write_text(yaml.safe_dump(obj, allow_unicode=True))
        (tmp_path / "m" / "bad-syntax.yaml").write_text("kind: Ingress\nmetadata: {name: [\n")
        (tmp_path / "m" / "bad-bytes.yaml").write_bytes(b"\xff\xfe\x00garbage")
        with Envoy(cp.bootstrap(), tmp_path / "envoy") as envoy:
            cp.wait_synced(timeout=20)
            for _ in range(50):
                assert request(http_port, "/x", host="good.example.com").headers.get("x-backend") == "good"
            r = request(https_port, "/", host="good.example.com", https=True, ca_pem=ca.cert_pem)
            assert r.headers.get("x-backend") == "good"
            rejected = {k: v for k, v in envoy.stats().items() if k.endswith("update_rejected") and v}
            assert not rejected, rejected

        diags = cp.diagnostics()
        missing = []
        for obj, field in items:
            name = (obj.get("metadata") or {}).get("name") or "<unnamed>"
            hits = [d for d in diags if d.name == name or (name == "<unnamed>" and d.name in ("", "<unnamed>"))]
            if not hits or (field and not any(d.field == field or d.field.startswith(field) for d in hits)):
                missing.append(f"{name}: want a diagnostic on {field or 'the object'}; got "
                               f"{[(d.field, d.reason) for d in hits]}")
        assert not missing, "\n".join(missing)
        files = {d.name.rsplit('/', 1)[-1] for d in diags if d.kind == "File"}
        assert {"bad-syntax.yaml", "bad-bytes.yaml"} <= files
        assert cp.call(lambda: cp.app.controller.ready.is_set())
        print(f"\nhostile corpus: {len(items)} bad objects + 2 bad files beside good ones; "
              f"{len(diags)} diagnostics; good routes 100%; Envoy rejected nothing")
