"""Throwaway X.509 material for TLS tests: a CA, server certificates, Kubernetes Secrets."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "ServerCert", "key_forms", "make_ca", "tls_secret"]

KeyType = Literal["ec", "rsa"]
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _new_key(key_type: KeyType) -> _PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key_type {key_type!r}")


def _key_pem(key: _PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True, slots=True)
class ServerCert:
    """A leaf certificate and its private key, both PEM text."""

    cert_pem: str
    key_pem: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CA:
    """A self-signed certificate authority that issues server certificates."""

    cert_pem: str
    key_pem: str = field(repr=False)
    _cert: x509.Certificate = field(repr=False)
    _key: _PrivateKey = field(repr=False)

    def issue(
        self,
        hosts: list[str],
        *,
        not_after_days: int = 30,
        key_type: KeyType = "ec",
        common_name: str | None = None,
    ) -> ServerCert:
        """Issue a server certificate with SANs for `hosts` (DNS names, wildcards or IPs).

        A negative `not_after_days` gives an already expired certificate.
        """
        if not hosts:
            raise ValueError("hosts must not be empty")
        key = _new_key(key_type)
        now = dt.datetime.now(dt.timezone.utc)
        not_after = now + dt.timedelta(days=not_after_days)
        not_before = min(now - dt.timedelta(minutes=5), not_after - dt.timedelta(days=1))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or hosts[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return ServerCert(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def make_ca(common_name: str = "xds-ingress test CA") -> CA:
    """Create a fresh EC P-256 CA valid for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(cert_pem=_cert_pem(cert), key_pem=_key_pem(key), _cert=cert, _key=key)


def tls_secret(namespace: str, name: str, cert_pem: str, key_pem: str) -> dict[str, Any]:
    """A Kubernetes v1 Secret of type kubernetes.io/tls holding `cert_pem` and `key_pem`."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem)},
    }


def key_forms(key_pem: str) -> list[str]:
    """A private key in every form it could leak in, for tests that prove it does not: "PRIVATE KEY",
    each base64 line of the PEM body, and the base64 (standard and URL-safe) of the PEM, of its body
    and of the DER at each of the three alignments (as bytes inside a larger field encode), and hex."""
    pem = key_pem.encode()
    der = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    body = [line for line in key_pem.splitlines() if line and "PRIVATE KEY" not in line]
    forms = ["PRIVATE KEY", *body]
    start = pem.index(b"\n") + 1
    for blob in (pem, der, pem[start:]):
        for k in range(3):
            forms.append(base64.b64encode(blob[k:k + 30]).decode())
            forms.append(base64.urlsafe_b64encode(blob[k:k + 30]).decode())
    forms.append(der[:24].hex())
    return forms
