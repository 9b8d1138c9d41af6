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


def test_fields_envoy_marks_sensitive_are_blanked_whatever_their_name() -> None:
    """Basic auth's htpasswd entries (`users`, marked `udpa.annotations.sensitive`), also inside a route's
    typed_per_filter_config."""
    from envoy.config.route.v3 import route_pb2
    from envoy.extensions.filters.http.basic_auth.v3 import basic_auth_pb2

    entry = "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="
    msg = basic_auth_pb2.BasicAuth(forward_username_header="x-forwarded-user")
    msg.users.inline_string = entry
    out = dump.redact(msg)
    assert out.users.inline_string == "[redacted]" and out.forward_username_header == "x-forwarded-user"
    rc = route_pb2.RouteConfiguration(name="http")
    route = rc.virtual_hosts.add(name="*", domains=["*"]).routes.add(name="r")
    route.typed_per_filter_config["envoy.filters.http.basic_auth"].CopyFrom(
        pack(basic_auth_pb2.BasicAuthPerRoute(users={"inline_string": entry})))
    text = json.dumps(dump.redacted_data(types.ROUTE, rc.SerializeToString()))
    assert "W6ph5Mm5" not in text and "[redacted]" in text and "BasicAuthPerRoute" in text


def test_map_entries_are_shown_sorted_by_key() -> None:
    """Protobuf maps have no order and the runtime's changes between processes: shown sorted, the same
    resource always reads the same (golden files, xds translate, config dumps)."""
    from envoy.config.route.v3 import route_pb2
    from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2

    rc = route_pb2.RouteConfiguration(name="http")
    route = rc.virtual_hosts.add(name="*", domains=["*"]).routes.add(name="r")
    names = ["z.filter", "a.filter", "m.filter", "b.filter"]
    for n in names:
        route.typed_per_filter_config[n].CopyFrom(pack(config_pb2.PerRouteConfig(requirement_name=n)))
    shown = dump.to_data(rc)["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"]
    assert list(shown) == sorted(names) and shown["m.filter"]["requirement_name"] == "m.filter"
    jwt = config_pb2.JwtAuthentication()
    for n in names:
        jwt.requirement_map[n].provider_name = n
        jwt.providers[n].issuer = n
    data = dump.to_data(jwt)
    assert list(data["providers"]) == sorted(names) and list(data["requirement_map"]) == sorted(names)
