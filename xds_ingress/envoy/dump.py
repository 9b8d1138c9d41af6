"""xDS resources for people and tools: decoded, secret material redacted, as JSON data. Pure.

Every path that shows a resource outside the xDS stream (the debug endpoint's config dump,
CSDS, `xds translate`) goes through `redact` first. Redaction walks the whole message,
including the messages packed in `Any` fields (a listener's filter configs, its transport
sockets), and blanks every field whose name says it holds secret material
(`SENSITIVE_FIELDS`, and any field Envoy's API marks `sensitive`, such as basic auth's htpasswd
entries): a `DataSource` keeps its shape and its file name or environment
variable name but loses its inline bytes or string, other strings and bytes become
"[redacted]". An `Any` whose type is not known here cannot be inspected, so its content is
dropped (its type URL stays).
"""

from __future__ import annotations

import json
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from udpa.annotations import sensitive_pb2

from xds_ingress.envoy import types

REDACTED = "[redacted]"

# Fields that carry key material or credentials, wherever they appear: TlsCertificate's
# private_key, password and pkcs12; GenericSecret's secret; TlsSessionTicketKeys' keys;
# OAuth2 and HMAC secrets.
SENSITIVE_FIELDS = frozenset({
    "private_key", "password", "pkcs12", "secret", "keys", "hmac_secret", "token_secret", "client_secret",
})

MESSAGE_CLASS: dict[str, type[Message]] = {
    types.LISTENER: listener_pb2.Listener,
    types.ROUTE: route_pb2.RouteConfiguration,
    types.CLUSTER: cluster_pb2.Cluster,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.SECRET: secret_pb2.Secret,
}

_DATA_SOURCE = base_pb2.DataSource.DESCRIPTOR.full_name
_ANY = any_pb2.Any.DESCRIPTOR.full_name


def message_class(type_url: str) -> type[Message] | None:
    """The generated class for a type URL, or None when this process does not know it."""
    cls = MESSAGE_CLASS.get(type_url)
    if cls is not None:
        return cls
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return None
    return message_factory.GetMessageClass(desc)


def decode(type_url: str, body: bytes) -> Message:
    cls = message_class(type_url)
    if cls is None:
        raise ValueError(f"unknown resource type {type_url}")
    return cls.FromString(body)


def redact(msg: Message) -> Message:
    """A copy of `msg` with every secret field blanked (see the module doc)."""
    out = type(msg)()
    out.CopyFrom(msg)
    _redact(out)
    return out


def _redact(msg: Message) -> None:
    for fd, value in msg.ListFields():
        if fd.name in SENSITIVE_FIELDS or _is_sensitive(fd):
            _blank(msg, fd)
            continue
        if fd.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        if fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            if value_fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                for v in value.values():
                    _redact_one(v)
            continue
        if _is_repeated(fd):
            for v in value:
                _redact_one(v)
        else:
            _redact_one(value)


def _is_sensitive(fd: descriptor.FieldDescriptor) -> bool:
    """Envoy's API marks credentials with the `udpa.annotations.sensitive` field option (basic auth's users,
    OAuth2 and HMAC secrets...): they are blanked whatever their name."""
    return fd.GetOptions().Extensions[sensitive_pb2.sensitive]


def _is_repeated(fd: descriptor.FieldDescriptor) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == descriptor.FieldDescriptor.LABEL_REPEATED


def _redact_one(msg: Message) -> None:
    if msg.DESCRIPTOR.full_name == _ANY:
        _redact_any(msg)  # type: ignore[arg-type]
    else:
        _redact(msg)


def _redact_any(a: any_pb2.Any) -> None:
    cls = message_class(a.type_url)
    if cls is None:
        a.value = b""  # cannot be inspected, so it cannot be shown
        return
    try:
        inner = cls.FromString(a.value)
    except DecodeError:
        a.value = b""
        return
    _redact(inner)
    a.value = inner.SerializeToString(deterministic=True)


def _blank(msg: Message, fd: descriptor.FieldDescriptor) -> None:
    if fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
        if fd.message_type.GetOptions().map_entry:
            msg.ClearField(fd.name)
            return
        items = list(getattr(msg, fd.name)) if _is_repeated(fd) else [getattr(msg, fd.name)]
        redacted = [_blank_message(m) for m in items]
        msg.ClearField(fd.name)
        if _is_repeated(fd):
            getattr(msg, fd.name).extend(redacted)
        else:
            getattr(msg, fd.name).CopyFrom(redacted[0])
        return
    value: Any = REDACTED if fd.type == descriptor.FieldDescriptor.TYPE_STRING else REDACTED.encode()
    if fd.type not in (descriptor.FieldDescriptor.TYPE_STRING, descriptor.FieldDescriptor.TYPE_BYTES):
        msg.ClearField(fd.name)
    elif _is_repeated(fd):
        n = len(getattr(msg, fd.name))
        msg.ClearField(fd.name)
        getattr(msg, fd.name).extend([value] * n)
    else:
        setattr(msg, fd.name, value)


def _blank_message(m: Message) -> Message:
    """A DataSource keeps where it points (a file, an environment variable) and loses inline data;
    any other message is emptied."""
    out = type(m)()
    if m.DESCRIPTOR.full_name == _DATA_SOURCE:
        which = m.WhichOneof("specifier")
        if which in ("filename", "environment_variable"):
            out.CopyFrom(m)
        else:
            out.inline_string = REDACTED  # type: ignore[attr-defined]
    return out


def to_data(msg: Message) -> dict:
    """JSON data with Envoy's own (proto) field names; packed messages carry "@type"; map entries sorted by
    key (a protobuf map has no order, and upb's iteration order changes from one process to the next: a
    route's `typed_per_filter_config` would print differently each time).

    Through JSON text: MessageToDict leaves OrderedDicts inside Any fields, which YAML cannot dump."""
    data = json.loads(json_format.MessageToJson(msg, preserving_proto_field_name=True))
    return _sorted_maps(msg.DESCRIPTOR, data)


_WELL_KNOWN = "google.protobuf."  # their JSON is not field by field (Duration, wrappers, Struct...)


def _sorted_maps(desc: descriptor.Descriptor, data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    for fd in desc.fields:
        mt = fd.message_type
        if fd.name not in data or mt is None:
            continue
        value = data[fd.name]
        if mt.GetOptions().map_entry:
            vt = mt.fields_by_name["value"].message_type
            data[fd.name] = {k: _sorted_value(vt, value[k]) for k in sorted(value)}
        elif fd.is_repeated:
            data[fd.name] = [_sorted_value(mt, v) for v in value]
        else:
            data[fd.name] = _sorted_value(mt, value)
    return data


def _sorted_value(mt: descriptor.Descriptor | None, value: Any) -> Any:
    if mt is None:
        return value
    if mt.full_name == _ANY:
        if not isinstance(value, dict) or "@type" not in value:
            return value
        try:
            mt = descriptor_pool.Default().FindMessageTypeByName(value["@type"].rsplit("/", 1)[-1])
        except KeyError:
            return value
    if mt.full_name in (_STRUCT, _VALUE):
        return _sorted_json(value)  # a Struct's fields are a map too (e.g. a LuaPerRoute's filter_context)
    if mt.full_name.startswith(_WELL_KNOWN):
        return value
    return _sorted_maps(mt, value)


_STRUCT, _VALUE = "google.protobuf.Struct", "google.protobuf.Value"


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def redacted_data(type_url: str, body: bytes) -> dict:
    """A serialized resource as redacted JSON data."""
    return to_data(redact(decode(type_url, body)))


def redacted_bytes(type_url: str, body: bytes) -> bytes:
    """A serialized resource, redacted and serialized again (an unknown type gives b"")."""
    try:
        msg = decode(type_url, body)
    except (ValueError, DecodeError):
        return b""
    return redact(msg).SerializeToString(deterministic=True)
