"""Checks a TLS Secret's certificate chain and private key before they reach Envoy.

Envoy rejects (NACKs) an SDS Secret whose PEM does not parse or whose key does not match
the certificate; catching that here turns it into a diagnostic on the Secret.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

MAX_PEM_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class CheckedPair:
    chain_pem: bytes = b""
    key_pem: bytes = field(default=b"", repr=False)
    dns_names: tuple[str, ...] = ()
    not_after: str = ""
    expired: bool = False
    error: str = ""
    field: str = ""


def _fail(field_: str, message: str) -> CheckedPair:
    return CheckedPair(error=message, field=field_)


def check_pair(cert_pem: bytes, key_pem: bytes) -> CheckedPair:
    crt_field, key_field = "data['tls.crt']", "data['tls.key']"
    if len(cert_pem) > MAX_PEM_BYTES:
        return _fail(crt_field, f"tls.crt is {len(cert_pem)} bytes; at most {MAX_PEM_BYTES} are accepted.")
    if len(key_pem) > MAX_PEM_BYTES:
        return _fail(key_field, f"tls.key is {len(key_pem)} bytes; at most {MAX_PEM_BYTES} are accepted.")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except Exception:  # noqa: BLE001 - any parse failure is the user's input
        return _fail(crt_field, "tls.crt is not a PEM certificate chain (expected -----BEGIN CERTIFICATE----- blocks).")
    if not certs:
        return _fail(crt_field, "tls.crt holds no certificate.")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        return _fail(key_field, "tls.key is encrypted; Envoy needs an unencrypted PEM private key.")
    except Exception:  # noqa: BLE001
        return _fail(key_field, "tls.key is not a PEM private key.")
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        return _fail(key_field, "tls.key must be an RSA, ECDSA or Ed25519 key.")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        return _fail(key_field, f"tls.key is a {key.key_size}-bit RSA key; Envoy requires at least 2048 bits.")
    leaf = certs[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if leaf.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        return _fail(key_field, "tls.key does not match the first certificate in tls.crt; "
                                "put the server certificate first and its own key in tls.key.")
    names: list[str] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    not_after = leaf.not_valid_after_utc
    # Normalised PEM: what Envoy gets is exactly what was checked.
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return CheckedPair(
        chain_pem=chain,
        key_pem=key_pem.strip() + b"\n",
        dns_names=tuple(names),
        not_after=not_after.isoformat(),
        expired=not_after < dt.datetime.now(dt.timezone.utc),
    )


def check_ca(pem: bytes) -> tuple[bytes, str]:
    """(normalised PEM, "") for a bundle of CA certificates, or (b"", what is wrong)."""
    if len(pem) > MAX_PEM_BYTES:
        return b"", f"ca.crt is {len(pem)} bytes; at most {MAX_PEM_BYTES} are accepted."
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except Exception:  # noqa: BLE001 - any parse failure is the user's input
        return b"", "ca.crt is not PEM certificates (expected -----BEGIN CERTIFICATE----- blocks)."
    if not certs:
        return b"", "ca.crt holds no certificate."
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs), ""
