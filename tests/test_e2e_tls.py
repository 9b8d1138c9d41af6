"""End to end: the edge's TLS policies through the real control plane and a real Envoy.

Redirect codes and HSTS, TLS versions, cipher suites and ALPN per certificate chain, client
certificates (required, optional, forwarded in x-forwarded-client-cert, never spoofable), SNI and
Host agreement (421), and the default certificate (`xds serve --default-certificate`). Clients are
Python's ssl with chosen versions, ciphers and certificates; a refusal is asserted as Envoy's own
alert (or its ssl stats), never as a client that could not even try.
"""

from __future__ import annotations

import base64
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness import Backends, Envoy, free_ports, k8s, make_ca, request, tls_secret
from tests.harness.certs import CA
from tests.harness.controlplane import ControlPlane
from tests.harness.edge import Edge
from xds_ingress.explain import explain

pytestmark = pytest.mark.envoy

X = "xds-ingress.io/"
FALLBACK = ("default", "fallback-tls")


@dataclass
class PKI:
    ca: CA  # issues the servers' certificates
    client_ca: CA
    client: tuple[str, str]  # (certificate file, key file) issued by client_ca
    rogue: tuple[str, str]  # the same from another CA
    tmp: Path

    def secret(self, name: str, *hosts: str) -> dict:
        cert = self.ca.issue(list(hosts))
        return tls_secret("default", name, cert.cert_pem, cert.key_pem)

    def ca_secret(self, name: str, namespace: str = "default") -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": {"ca.crt": base64.b64encode(self.client_ca.cert_pem.encode()).decode()}}


def _files(tmp: Path, name: str, ca: CA, host: str) -> tuple[str, str]:
    cert = ca.issue([host])
    (tmp / f"{name}.crt").write_text(cert.cert_pem)
    (tmp / f"{name}.key").write_text(cert.key_pem)
    (tmp / f"{name}.key").chmod(0o600)
    return str(tmp / f"{name}.crt"), str(tmp / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    tmp = tmp_path_factory.mktemp("pki")
    client_ca = make_ca("client CA")
    return PKI(ca=make_ca(), client_ca=client_ca, client=_files(tmp, "client", client_ca, "client.example.com"),
               rogue=_files(tmp, "rogue", make_ca("rogue CA"), "client.example.com"), tmp=tmp)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    work = tmp_path_factory.mktemp("tls")
    http_port, https_port = free_ports(2)
    with Backends(["a", "b", "c"]) as be, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port,
                         default_certificate="/".join(FALLBACK)) as cp, \
            Envoy(cp.bootstrap(), work / "envoy") as envoy:
        yield Edge(be, cp, envoy, http_port, https_port)


def ing(name: str, host: str, backend: str = "a", *, tls: bool = True, annotations: dict | None = None,
        secret: str | None = None, namespace: str = "default") -> dict:
    return k8s.ingress(name, k8s.rule(host, k8s.path("/", backend)), namespace=namespace,
                       tls=[{"hosts": [host], "secretName": secret or f"{name}-tls"}] if tls else None,
                       annotations={X + k: v for k, v in (annotations or {}).items()})


def context(*, versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None, ciphers: str | None = None,
            alpn: tuple[str, ...] = ("http/1.1",), cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A TLS client context that does not check the server (the tests check what Envoy does)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if versions is not None:
        ctx.minimum_version, ctx.maximum_version = versions
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    ctx.set_alpn_protocols(list(alpn))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


@dataclass
class Handshake:
    version: str
    cipher: str
    alpn: str | None
    peer: x509.Certificate


def handshake(port: int, sni: str | None, ctx: ssl.SSLContext) -> Handshake:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni or None) as s:
        return Handshake(s.version() or "", s.cipher()[0], s.selected_alpn_protocol(),
                         x509.load_der_x509_certificate(s.getpeercert(binary_form=True)))


def refused(port: int, sni: str, ctx: ssl.SSLContext) -> str:
    """The reason of the TLS alert with which Envoy refuses the handshake (fails if it is accepted)."""
    with pytest.raises(ssl.SSLError) as info:
        handshake(port, sni, ctx)
    return info.value.reason or str(info.value)


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def ssl_stat(edge: Edge, name: str) -> int:
    return sum(v for k, v in edge.envoy.stats(filter=rf"ssl\.{name}$").items() if k.startswith("listener."))


# -- redirects and HSTS --------------------------------------------------------------------------

def test_redirect_codes_and_hsts_on_https_only(edge: Edge, pki: PKI) -> None:
    edge.apply(edge.services("a") + [
        pki.secret("moved-tls", "moved.example.com"), pki.secret("kept-tls", "kept.example.com"),
        pki.secret("both-tls", "both.example.com"),
        ing("moved", "moved.example.com"),
        ing("kept", "kept.example.com", annotations={"ssl-redirect-code": "308", "hsts": "31536000",
                                                     "hsts-include-subdomains": "true"}),
        ing("both", "both.example.com", annotations={"ssl-redirect": "false", "hsts": "10m"})])
    r = edge.get("moved.example.com", "/x?q=1")
    assert (r.status, r.headers.get("location")) == (301, "https://moved.example.com/x?q=1")
    r = edge.get("kept.example.com", "/form?q=1", method="POST", body=b"payload")
    assert (r.status, r.headers.get("location")) == (308, "https://kept.example.com/form?q=1")
    assert "strict-transport-security" not in r.headers  # never on plain HTTP, not even the redirect
    r = edge.get("kept.example.com", "/", https=True)
    assert (r.status, r.headers["strict-transport-security"]) == (200, "max-age=31536000; includeSubDomains")
    r = edge.get("moved.example.com", "/", https=True)
    assert r.status == 200 and "strict-transport-security" not in r.headers
    r = edge.get("both.example.com", "/")  # ssl-redirect "false": served over HTTP, without HSTS
    assert (r.status, r.headers.get("x-backend")) == (200, "a") and "strict-transport-security" not in r.headers
    r = edge.get("both.example.com", "/", https=True)
    assert r.headers.get("strict-transport-security") == "max-age=600"
    model = edge.cp.call(lambda: edge.cp.app.ir())
    e = explain(model, host="kept.example.com", path="/form")
    assert (e.status, e.location) == (308, "https://kept.example.com/form")


# -- TLS versions, cipher suites, ALPN -----------------------------------------------------------

TLS12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)


def test_tls_versions(edge: Edge, pki: PKI) -> None:
    edge.apply(edge.services("a") + [
        pki.secret("v13-tls", "v13.example.com"), pki.secret("v12-tls", "v12.example.com"),
        ing("v13", "v13.example.com", annotations={"tls-min-version": "1.3"}),
        ing("v12", "v12.example.com")])
    assert handshake(edge.https_port, "v12.example.com", context(versions=TLS12)).version == "TLSv1.2"
    assert refused(edge.https_port, "v13.example.com", context(versions=TLS12)) == "TLSV1_ALERT_PROTOCOL_VERSION"
    assert handshake(edge.https_port, "v13.example.com", context()).version == "TLSv1.3"
    # A client that can offer TLS 1.1 at most (OpenSSL needs security level 0 to even try): Envoy's alert.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python deprecates TLS 1.0/1.1: that is the point
        old = context(versions=(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1), ciphers="DEFAULT:@SECLEVEL=0")
    assert refused(edge.https_port, "v12.example.com", old) == "TLSV1_ALERT_PROTOCOL_VERSION"
    r = edge.get("v13.example.com", "/", https=True)
    assert (r.status, r.headers.get("x-backend")) == (200, "a")


def test_cipher_suites_and_alpn(edge: Edge, pki: PKI) -> None:
    edge.apply(edge.services("a") + [
        pki.secret("strict-tls", "strict.example.com"), pki.secret("loose-tls", "loose.example.com"),
        ing("strict", "strict.example.com", annotations={
            "tls-max-version": "1.2", "tls-cipher-suites": "ECDHE-ECDSA-AES256-GCM-SHA384", "alpn": "http/1.1"}),
        ing("loose", "loose.example.com")])
    aes128 = context(versions=TLS12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert refused(edge.https_port, "strict.example.com", aes128) == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    assert handshake(edge.https_port, "loose.example.com", aes128).cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
    aes256 = context(versions=TLS12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    assert handshake(edge.https_port, "strict.example.com", aes256).cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
    # The latest TLS is 1.2 there, whatever the client offers.
    assert handshake(edge.https_port, "strict.example.com", context()).version == "TLSv1.2"
    both = context(alpn=("h2", "http/1.1"))
    assert handshake(edge.https_port, "strict.example.com", both).alpn == "http/1.1"
    assert handshake(edge.https_port, "loose.example.com", both).alpn == "h2"
    # http/1.1 only is the connection manager's codec too: HTTP/2 with prior knowledge is not spoken.
    assert _h2_prior_knowledge(edge.https_port, "loose.example.com") == "h2"
    assert _h2_prior_knowledge(edge.https_port, "strict.example.com") == "HTTP/1.1 400"


def _h2_prior_knowledge(port: int, sni: str) -> str:
    """Send the HTTP/2 connection preface without ALPN: "h2" if a SETTINGS frame answers, else the status line."""
    ctx = context(alpn=())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        data = s.recv(64)
    if len(data) >= 9 and data[3] == 4:  # a frame of type SETTINGS
        return "h2"
    return data.split(b"\r\n", 1)[0].decode(errors="replace")[:12]


# -- client certificates -------------------------------------------------------------------------

def test_client_certificates(edge: Edge, pki: PKI) -> None:
    edge.apply(edge.services("a", "b") + [
        pki.ca_secret("client-ca"),
        pki.secret("mtls-tls", "mtls.example.com"), pki.secret("opt-tls", "opt.example.com"),
        pki.secret("open-tls", "open.example.com"),
        ing("mtls", "mtls.example.com", annotations={"client-ca-secret": "client-ca", "client-cert-forward": "true",
                                                     "ssl-redirect": "false"}),
        ing("opt", "opt.example.com", "b", annotations={"client-ca-secret": "client-ca",
                                                        "client-cert-verify": "optional"}),
        ing("open", "open.example.com"),
        ing("plain", "plain.example.com", tls=False)])
    spoof = {"x-forwarded-client-cert": 'By=spiffe://evil;Hash=00;Subject="CN=admin"'}

    # Required: no certificate, no request (Envoy's verdict: fail_verify_no_cert); a foreign CA's neither.
    before = ssl_stat(edge, "fail_verify_no_cert")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        edge.get("mtls.example.com", "/", https=True, context=context())
    assert ssl_stat(edge, "fail_verify_no_cert") == before + 1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        edge.get("mtls.example.com", "/", https=True, context=context(cert=pki.rogue))
    # With one: served, and the backend gets the verified certificate, not the client's claim.
    r = edge.get("mtls.example.com", "/", https=True, context=context(cert=pki.client), headers=spoof)
    assert (r.status, r.headers.get("x-backend")) == (200, "a")
    xfcc = r.json()["headers"]["x-forwarded-client-cert"]
    assert 'Subject="CN=client.example.com"' in xfcc and "DNS=client.example.com" in xfcc and "Cert=" in xfcc
    assert "evil" not in xfcc and "admin" not in xfcc
    # Plain HTTP never serves it, ssl-redirect "false" notwithstanding (diagnosed).
    assert edge.get("mtls.example.com", "/").status == 301
    assert any(d.reason == "ConflictingAnnotation" and d.name == "mtls" for d in edge.cp.diagnostics())

    # Optional: served without a certificate, verified when one is sent; nothing forwarded, nothing spoofed.
    r = edge.get("opt.example.com", "/", https=True, context=context(), headers=spoof)
    assert r.status == 200 and "x-forwarded-client-cert" not in r.json()["headers"]
    r = edge.get("opt.example.com", "/", https=True, context=context(cert=pki.client), headers=spoof)
    assert r.status == 200 and "x-forwarded-client-cert" not in r.json()["headers"]
    before = ssl_stat(edge, "fail_verify_error")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        edge.get("opt.example.com", "/", https=True, context=context(cert=pki.rogue))
    assert ssl_stat(edge, "fail_verify_error") == before + 1

    # No client certificates: a client-sent x-forwarded-client-cert is removed, over HTTPS and HTTP.
    for r in (edge.get("open.example.com", "/", https=True, headers=spoof), edge.get("plain.example.com", "/",
                                                                                    headers=spoof)):
        assert r.status == 200 and "x-forwarded-client-cert" not in r.json()["headers"]

    # The certificate cannot be dodged through another host's SNI (nor through the default certificate's).
    assert edge.get("mtls.example.com", "/", https=True, sni="open.example.com").status == 421
    assert edge.get("mtls.example.com", "/", https=True, sni="opt.example.com").status == 421


def test_client_ca_of_another_namespace_is_refused(edge: Edge, pki: PKI) -> None:
    edge.apply(edge.services("a") + [
        pki.ca_secret("client-ca", namespace="other"),
        pki.secret("cross-tls", "cross.example.com"),
        ing("cross", "cross.example.com", annotations={"client-ca-secret": "other/client-ca"})])
    diags = {d.reason: d for d in edge.cp.diagnostics() if d.name == "cross"}
    assert "another namespace" in diags["InvalidAnnotation"].message
    assert diags["InvalidAnnotation"].field == "metadata.annotations['xds-ingress.io/client-ca-secret']"
    assert "ClientCertificatesUnavailable" in diags
    # Never served without the certificates it asked for: no filter chain (here: no HTTPS listener at all).
    with pytest.raises(OSError):
        handshake(edge.https_port, "cross.example.com", context(cert=pki.client))
    assert edge.get("cross.example.com", "/").status == 301  # and not over plain HTTP either


# -- SNI and Host ---------------------------------------------------------------------------------

def test_sni_and_host_must_agree(edge: Edge, pki: PKI) -> None:
    wild = pki.ca.issue(["*.w.example.com"])
    edge.apply(edge.services("a", "b", "c") + [
        pki.secret("one-tls", "one.example.com"), pki.secret("two-tls", "two.example.com"),
        tls_secret("default", "w-tls", wild.cert_pem, wild.key_pem),
        ing("one", "one.example.com", "a"), ing("two", "two.example.com", "b"),
        k8s.ingress("w", k8s.rule("x.w.example.com", k8s.path("/", "c")), k8s.rule("own.w.example.com", k8s.path("/", "c")),
                    tls=[{"hosts": ["*.w.example.com"], "secretName": "w-tls"}]),
        ing("own", "own.w.example.com", "a", secret="one-tls")])  # own certificate entry, same Secret as one
    model, diags = edge.cp.call(lambda: (edge.cp.app.ir(), edge.cp.app.diagnostics()))
    cases = [  # (SNI, Host, want)
        ("one.example.com", "one.example.com", "a"), ("one.example.com", "two.example.com", 421),
        ("two.example.com", "one.example.com", 421), ("two.example.com", "two.example.com", "b"),
        ("x.w.example.com", "x.w.example.com", "c"), ("x.w.example.com", "one.example.com", 421),
        ("one.example.com", "x.w.example.com", 421), ("y.w.example.com", "x.w.example.com", "c"),
        ("x.w.example.com", "own.w.example.com", 421),  # own.w has its own chain: never via the wildcard's
        ("own.w.example.com", "own.w.example.com", "a"),  # Ingress own wins the path (PathConflict: by name)
    ]
    failures = []
    for sni, host, want in cases:
        r = edge.get(host, "/", https=True, sni=sni)
        got = r.headers.get("x-backend") if r.status == 200 else r.status
        e = explain(model, diags, host=host, path="/", https=True, sni=sni)
        said = e.status if e.status is not None else e.endpoints and {
            edge.backends.port(n): n for n in ("a", "b", "c")}.get(e.endpoints[0].port)
        if got != want or said != want:
            failures.append(f"SNI {sni} Host {host}: want {want}, Envoy {got}, explain {said} ({e.reason})")
        if want == 421:
            assert e.outcome == "misdirected" and r.text.startswith("misdirected request"), (sni, host, r.text)
    assert not failures, "\n".join(failures)


# -- the default certificate ----------------------------------------------------------------------

def test_default_certificate(edge: Edge, pki: PKI) -> None:
    fallback = pki.ca.issue(["fallback.example.net"])
    objects = edge.services("a", "b", "c") + [
        pki.secret("own-tls", "own.example.com"),
        k8s.ingress("site", k8s.rule("own.example.com", k8s.path("/", "a")),
                    k8s.rule("plain.example.com", k8s.path("/", "b")), default_backend=("c", 80),
                    tls=[{"hosts": ["own.example.com"], "secretName": "own-tls"}])]
    edge.apply(objects + [tls_secret(*FALLBACK, fallback.cert_pem, fallback.key_pem)])
    port = edge.https_port
    for sni in ("unknown.example.org", None):  # an unknown server name, and none at all
        assert sans(handshake(port, sni, context()).peer) == ["fallback.example.net"]
        r = request(port, "/", host="plain.example.com", https=True, sni=sni or "")
        assert (r.status, r.headers.get("x-backend")) == (200, "b")
        r = request(port, "/", host="nowhere.example.org", https=True, sni=sni or "")
        assert (r.status, r.headers.get("x-backend")) == (200, "c")  # the default backend
        # A host with a certificate of its own is reached with its own SNI only.
        assert request(port, "/", host="own.example.com", https=True, sni=sni or "").status == 421
    assert sans(handshake(port, "own.example.com", context()).peer) == ["own.example.com"]
    model = edge.cp.call(lambda: edge.cp.app.ir())
    e = explain(model, host="plain.example.com", path="/", https=True, sni="unknown.example.org")
    assert (e.filter_chain, e.route_configuration, e.outcome) == ("default", "https", "upstream")
    assert explain(model, host="own.example.com", path="/", https=True, sni="x.example.org").status == 421
    # Without the Secret: diagnosed, and an unknown server name fails the handshake again.
    edge.apply(objects)
    assert any(d.reason == "DefaultCertificateNotFound" and (d.namespace, d.name) == FALLBACK
               for d in edge.cp.diagnostics())
    with pytest.raises(OSError):  # no filter chain for the name: Envoy closes the connection
        handshake(port, "unknown.example.org", context())


# -- bad values -----------------------------------------------------------------------------------

BAD = {"ssl-redirect-code": "302", "hsts": "forever", "hsts-include-subdomains": "yes", "hsts-preload": "1",
       "tls-min-version": "1.0", "tls-max-version": "1.1", "tls-cipher-suites": "RC4-SHA", "alpn": "h2",
       "client-cert-verify": "maybe", "client-cert-forward": "on"}


def test_bad_values_are_diagnosed_and_the_host_is_served_with_defaults(edge: Edge, pki: PKI) -> None:
    edge.apply(edge.services("a") + [pki.secret("bad-tls", "bad.example.com"),
                                     ing("bad", "bad.example.com", annotations=BAD)])
    by_field = {d.field: d for d in edge.cp.diagnostics() if d.name == "bad"}
    for name in BAD:
        d = by_field[f"metadata.annotations['{X}{name}']"]
        assert d.reason == "InvalidAnnotation", d
    r = edge.get("bad.example.com", "/x")
    assert (r.status, r.headers.get("location")) == (301, "https://bad.example.com/x")
    hs = handshake(edge.https_port, "bad.example.com", context(alpn=("h2", "http/1.1")))
    assert (hs.version, hs.alpn) == ("TLSv1.3", "h2")
    assert handshake(edge.https_port, "bad.example.com", context(versions=TLS12)).version == "TLSv1.2"
    r = edge.get("bad.example.com", "/", https=True)
    assert r.status == 200 and "strict-transport-security" not in r.headers
