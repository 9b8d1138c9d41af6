"""Redaction of secret material in every resource shown outside the xDS stream (envoy/dump.py)."""

from __future__ import annotations

import json

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2

from xds_ingress.envoy import dump, types
from xds_ingress.envoy.listeners import pack

KEY = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


def test_secret_fields_are_blanked_everywhere_even_inside_any() -> None:
    secret = secret_pb2.Secret(name="ns/tls")
    secret.tls_certificate.certificate_chain.inline_bytes = b"CERT"
    secret.tls_certificate.private_key.inline_bytes = KEY
    secret.tls_certificate.password.inline_string = "hunter2"
    out = dump.redact(secret)
    assert out.tls_certificate.private_key.inline_string == "[redacted]"
    assert out.tls_certificate.password.inline_string == "[redacted]"
    assert out.tls_certificate.certificate_chain.inline_bytes == b"CERT"  # certificates are public
    assert secret.tls_certificate.private_key.inline_bytes == KEY  # a copy: the original is untouched

    # A listener with the key inline in a TLS context packed in an Any, plus session ticket keys.
    ctx = tls_pb2.DownstreamTlsContext()
    cert = ctx.common_tls_context.tls_certificates.add()
    cert.private_key.inline_bytes = KEY
    cert.certificate_chain.filename = "/etc/tls/cert.pem"
    ctx.session_ticket_keys.keys.add().inline_bytes = b"ticket-key-material-ticket-key-material"
    lst = listener_pb2.Listener(name="https")
    chain = lst.filter_chains.add()
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.CopyFrom(pack(ctx))
    g = secret_pb2.Secret(name="generic")
    g.generic_secret.secret.inline_string = "api-token"
    for type_url, msg in ((types.LISTENER, lst), (types.SECRET, g), (types.SECRET, secret)):
        body = msg.SerializeToString()
        text = json.dumps(dump.redacted_data(type_url, body))
        assert "PRIVATE KEY" not in text and "hunter2" not in text and "api-token" not in text
        assert "ticket-key" not in text and "dGlja2V0" not in text
        assert b"PRIVATE KEY" not in dump.redacted_bytes(type_url, body)
    shown = dump.redacted_data(types.LISTENER, lst.SerializeToString())
    tls = shown["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("DownstreamTlsContext")
    c = tls["common_tls_context"]["tls_certificates"][0]
    assert c["private_key"] == {"inline_string": "[redacted]"}
    assert c["certificate_chain"] == {"filename": "/etc/tls/cert.pem"}


def test_a_key_read_from_a_file_keeps_its_path_and_unknown_packed_content_is_dropped() -> None:
    secret = secret_pb2.Secret(name="ns/file")
    secret.tls_certificate.private_key.filename = "/etc/tls/key.pem"
    assert dump.redact(secret).tls_certificate.private_key.filename == "/etc/tls/key.pem"
    lst = listener_pb2.Listener(name="odd")
    lst.filter_chains.add().transport_socket.typed_config.CopyFrom(
        any_pb2.Any(type_url="type.googleapis.com/example.Unknown", value=b"\x0a\x03KEY"))
    out = dump.redact(lst)
    packed = out.filter_chains[0].transport_socket.typed_config
    assert packed.type_url.endswith("example.Unknown") and packed.value == b""
