"""Kubernetes objects as small frozen dataclasses, parsed from raw JSON.

Parsing is where bad input is caught. Every parser takes the raw dict of one object and
returns the object (or None when nothing of it is usable) plus diagnostics that name the
object and the field. A wrong type in one field drops that field (or the smallest
enclosing part, such as one path of a rule), never the whole process and never another
object.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.redacted import Redacted

T = TypeVar("T")

KIND_INGRESS = "Ingress"
KIND_INGRESS_CLASS = "IngressClass"
KIND_SERVICE = "Service"
KIND_ENDPOINT_SLICE = "EndpointSlice"
KIND_SECRET = "Secret"
KIND_CONFIG_MAP = "ConfigMap"

# apiVersion each kind is read from.
API_VERSIONS: dict[str, tuple[str, ...]] = {
    KIND_INGRESS: ("networking.k8s.io/v1",),
    KIND_INGRESS_CLASS: ("networking.k8s.io/v1",),
    KIND_SERVICE: ("v1",),
    KIND_ENDPOINT_SLICE: ("discovery.k8s.io/v1",),
    KIND_SECRET: ("v1",),
    KIND_CONFIG_MAP: ("v1",),
}

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SECRET_TYPE_TLS = "kubernetes.io/tls"
CA_KEY = "ca.crt"
HTPASSWD_KEY = "auth"  # basic-auth Secrets, as ingress-nginx names the key
JWKS_KEY = "jwks"
# ingress-nginx's auth-map Secrets: every key a user, its value the password hash (model.Secret.auth_map).
AUTH_MAP_MAX_KEYS = 1024
AUTH_MAP_MAX_BYTES = 64 * 1024
_AUTH_MAP_VALUE_MAX_BYTES = 1024
_NOT_USERS = frozenset({CA_KEY, HTPASSWD_KEY, JWKS_KEY, "tls.crt", "tls.key"})
_SECRET_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")

# ConfigMaps are read for ingress-nginx's custom-headers and auth-proxy-set-headers (a few headers each): the
# `data` of a larger one is not kept (model.ConfigMap.too_large), so that the big ConfigMaps of a cluster that
# nothing here reads cost little memory. Keys and values counted together, in characters.
CONFIG_MAP_MAX_BYTES = 32 * 1024
CONFIG_MAP_DIGEST = "xds-ingress.io/data-sha256"  # the field a compacted ConfigMap keeps instead of its data

PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")

# Longest value accepted for free-form strings that end up in Envoy config (a hostile 100 KB
# annotation or path must not be carried into every snapshot).
MAX_PATH_LENGTH = 2048
MAX_ANNOTATION_VALUE_LENGTH = 4096
MAX_WILDCARD_SUFFIX_LENGTH = 80

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Characters of an RFC 3986 path (pchar and "/"), percent-escapes included. No spaces, no
# control characters, no "?" or "#": Envoy matches the path without its query.
_PATH_RE = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
# An ImplementationSpecific path may also be a regex (ingress-nginx's use-regex): its metacharacters are
# accepted here; translation serves such a path only as a regex, and refuses it on any other host.
_REGEX_PATH_RE = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@/%\[\]{}|^\\?<>]*$")


def is_url_path(value: str) -> bool:
    """True when `value` is a URL path (not only an ImplementationSpecific regex path)."""
    return _PATH_RE.match(value) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectMeta:
    namespace: str
    name: str
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()

    def label(self, key: str) -> str | None:
        for k, v in self.labels:
            if k == key:
                return v
        return None

    def annotation(self, key: str) -> str | None:
        for k, v in self.annotations:
            if k == key:
                return v
        return None


# --- IngressClass ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressClass:
    meta: ObjectMeta
    controller: str
    is_default: bool


# --- Ingress ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceBackendRef:
    name: str
    port_number: int | None = None
    port_name: str | None = None

    @property
    def port_label(self) -> str:
        return str(self.port_number) if self.port_number is not None else str(self.port_name)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressBackend:
    field: str  # where in the Ingress it was declared, for diagnostics and explain
    service: ServiceBackendRef | None = None
    resource: str | None = None  # "Kind/name" of a resource backend (unsupported)


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPIngressPath:
    field: str
    path: str
    path_type: str
    backend: IngressBackend


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressRule:
    field: str
    host: str | None
    paths: tuple[HTTPIngressPath, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressTLS:
    field: str
    hosts: tuple[str, ...]
    secret_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingress:
    meta: ObjectMeta
    ingress_class_name: str | None
    default_backend: IngressBackend | None
    tls: tuple[IngressTLS, ...]
    rules: tuple[IngressRule, ...]


# --- Service ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    name: str
    port: int
    protocol: str = "TCP"
    target_port: int | str | None = None
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    meta: ObjectMeta
    type: str
    cluster_ip: str | None
    external_name: str | None
    ports: tuple[ServicePort, ...]

    def port(self, ref: ServiceBackendRef) -> ServicePort | None:
        for p in self.ports:
            if ref.port_number is not None and p.port == ref.port_number:
                return p
            if ref.port_name is not None and p.name == ref.port_name:
                return p
        return None


# --- EndpointSlice ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointPort:
    name: str
    port: int | None
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool
    serving: bool
    terminating: bool
    zone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    meta: ObjectMeta
    service_name: str | None
    address_type: str
    ports: tuple[EndpointPort, ...]
    endpoints: tuple[Endpoint, ...]


# --- Secret -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Secret:
    """A TLS Secret whose certificate and key have been checked to load and to match."""

    meta: ObjectMeta
    type: str
    certificate_chain: bytes  # PEM
    private_key: Redacted  # PEM
    dns_names: tuple[str, ...] = ()  # SANs of the leaf, for diagnostics
    not_after: str = ""  # ISO timestamp of the leaf's expiry
    # ca.crt (PEM, checked to parse): CA certificates that upstream TLS verifies backends against.
    # A Secret of another type than kubernetes.io/tls is read only for this (and has no chain or key).
    ca_certificates: bytes = b""
    # `auth`: htpasswd entries for basic authentication (a credential: never shown), checked when an Ingress
    # names the Secret in xds-ingress.io/basic-auth-secret. `jwks`: a JSON Web Key Set for
    # xds-ingress.io/jwt-jwks-secret, likewise checked when used.
    htpasswd: Redacted = Redacted(b"")
    jwks: bytes = b""
    # The other keys of an Opaque Secret, for ingress-nginx's auth-secret-type auth-map (each key a user, its
    # value the password hash; a credential, never shown): JSON {"entries": {key: value, or null when it is not
    # one line of text}, "dropped": keys beyond AUTH_MAP_MAX_KEYS / AUTH_MAP_MAX_BYTES}; checked where it is used.
    auth_map: Redacted = Redacted(b"")

    @property
    def is_tls(self) -> bool:
        return self.type == SECRET_TYPE_TLS


# --- ConfigMap --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigMap:
    """A ConfigMap's text `data` (sorted by key), read where an Ingress names it (ingress-nginx's custom-headers
    and auth-proxy-set-headers). `binaryData`, labels and annotations are not kept; nor is the data of a ConfigMap
    larger than CONFIG_MAP_MAX_BYTES (`too_large`): an Ingress that names one is told."""

    meta: ObjectMeta
    data: tuple[tuple[str, str], ...] = ()
    too_large: bool = False

    def get(self, key: str) -> str | None:
        for k, v in self.data:
            if k == key:
                return v
        return None


K8sObject = Ingress | IngressClass | Service | EndpointSlice | Secret | ConfigMap
ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


def object_key(obj: K8sObject) -> ObjectKey:
    return (kind_of(obj), obj.meta.namespace, obj.meta.name)


def kind_of(obj: K8sObject) -> str:
    return type(obj).__name__


# --- Parsing ---------------------------------------------------------------------------


class _Ctx:
    """Collects diagnostics for one object while its fields are read."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.diagnostics: list[Diagnostic] = []

    def error(self, field_: str, reason: str, message: str) -> None:
        self.diagnostics.append(
            Diagnostic(kind=self.kind, namespace=self.namespace, name=self.name, field=field_,
                       reason=reason, message=message, severity=Severity.ERROR))

    def warning(self, field_: str, reason: str, message: str) -> None:
        self.diagnostics.append(
            Diagnostic(kind=self.kind, namespace=self.namespace, name=self.name, field=field_,
                       reason=reason, message=message, severity=Severity.WARNING))

    def typed(self, obj: Any, key: str, path: str, typ: type[T] | tuple[type, ...],
              type_name: str, required: bool = False) -> T | None:
        """obj[key] if it has the right type. A missing key is None (an error if required)."""
        if not isinstance(obj, dict):
            return None
        if key not in obj or obj[key] is None:
            if required:
                self.error(path, "MissingField", f"{path} is required.")
            return None
        value = obj[key]
        # bool is an int in Python; Kubernetes never accepts one for the other.
        if isinstance(value, bool) and typ is not bool and (typ is int or (isinstance(typ, tuple) and bool not in typ)):
            self.error(path, "InvalidType", f"{path} must be {type_name}, not a boolean ({value!r}).")
            return None
        if not isinstance(value, typ):
            self.error(path, "InvalidType",
                       f"{path} must be {type_name}, not {_json_type(value)} ({_short(value)}).")
            return None
        return value  # type: ignore[return-value]

    def string(self, obj: Any, key: str, path: str, required: bool = False) -> str | None:
        return self.typed(obj, key, path, str, "a string", required)

    def integer(self, obj: Any, key: str, path: str, required: bool = False) -> int | None:
        return self.typed(obj, key, path, int, "an integer", required)

    def mapping(self, obj: Any, key: str, path: str, required: bool = False) -> dict | None:
        return self.typed(obj, key, path, dict, "an object", required)

    def array(self, obj: Any, key: str, path: str, required: bool = False) -> list | None:
        return self.typed(obj, key, path, list, "a list", required)

    def boolean(self, obj: Any, key: str, path: str) -> bool | None:
        return self.typed(obj, key, path, bool, "true or false")

    def each(self, items: list | None, path: str,
             parse: Callable[["_Ctx", Any, str], T | None]) -> tuple[T, ...]:
        out: list[T] = []
        for i, item in enumerate(items or ()):
            value = parse(self, item, f"{path}[{i}]")
            if value is not None:
                out.append(value)
        return tuple(out)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseResult:
    object: K8sObject | None
    diagnostics: tuple[Diagnostic, ...]


def identify(raw: Any) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of a raw object, as far as it can be read; None if not a mapping."""
    if not isinstance(raw, dict):
        return None
    kind = raw.get("kind") if isinstance(raw.get("kind"), str) else ""
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else ""
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    if kind in (KIND_INGRESS, KIND_SERVICE, KIND_ENDPOINT_SLICE, KIND_SECRET, KIND_CONFIG_MAP) and not ns:
        ns = "default"
    if kind == KIND_INGRESS_CLASS:
        ns = ""
    return kind, ns, name


def parse_object(raw: Any) -> ParseResult:
    """Parse one raw Kubernetes object of a kind we read. Unknown kinds give (None, ())."""
    ident = identify(raw)
    if ident is None:
        return ParseResult(object=None, diagnostics=())
    kind, ns, name = ident
    parser = _PARSERS.get(kind)
    if parser is None:
        return ParseResult(object=None, diagnostics=())
    ctx = _Ctx(kind, ns, name or "<unnamed>")
    api_version = raw.get("apiVersion")
    if api_version not in API_VERSIONS[kind]:
        ctx.error("apiVersion", "UnsupportedAPIVersion",
                  f"apiVersion {_short(api_version)} is not read for {kind}; "
                  f"use {' or '.join(API_VERSIONS[kind])}.")
        return ParseResult(object=None, diagnostics=tuple(ctx.diagnostics))
    meta = _parse_meta(ctx, raw, namespaced=kind != KIND_INGRESS_CLASS)
    if meta is None:
        return ParseResult(object=None, diagnostics=tuple(ctx.diagnostics))
    try:
        obj = parser(ctx, raw, meta)
    except Exception as exc:  # a parser bug must not take the process down  # noqa: BLE001
        ctx.error("", "InternalError", f"could not be read ({type(exc).__name__}: {exc}); please report this.")
        obj = None
    return ParseResult(object=obj, diagnostics=tuple(ctx.diagnostics))


def _parse_meta(ctx: _Ctx, raw: dict, namespaced: bool) -> ObjectMeta | None:
    meta = ctx.mapping(raw, "metadata", "metadata", required=True)
    if meta is None:
        return None
    name = ctx.string(meta, "name", "metadata.name", required=True)
    if name is None:
        return None
    if len(name) > 253 or not _DNS1123_SUBDOMAIN_RE.match(name):
        ctx.error("metadata.name", "InvalidName",
                  f"metadata.name {_short(name)} is not a valid DNS subdomain name "
                  "(lowercase letters, digits, '-' and '.', at most 253 characters).")
        return None
    namespace = ""
    if namespaced:
        namespace = ctx.string(meta, "namespace", "metadata.namespace") or "default"
        if len(namespace) > 63 or not _DNS1123_SUBDOMAIN_RE.match(namespace) or "." in namespace:
            ctx.error("metadata.namespace", "InvalidName",
                      f"metadata.namespace {_short(namespace)} is not a valid namespace name.")
            return None
    labels = _string_map(ctx, meta, "labels", "metadata.labels")
    annotations = _string_map(ctx, meta, "annotations", "metadata.annotations")
    generation = ctx.integer(meta, "generation", "metadata.generation") or 0
    return ObjectMeta(
        namespace=namespace,
        name=name,
        uid=ctx.string(meta, "uid", "metadata.uid") or "",
        resource_version=ctx.string(meta, "resourceVersion", "metadata.resourceVersion") or "",
        generation=generation,
        creation_timestamp=ctx.string(meta, "creationTimestamp", "metadata.creationTimestamp") or "",
        labels=labels,
        annotations=annotations,
    )


def _string_map(ctx: _Ctx, meta: dict, key: str, path: str) -> tuple[tuple[str, str], ...]:
    m = ctx.mapping(meta, key, path)
    if not m:
        return ()
    out = []
    for k, v in m.items():
        if not isinstance(v, str):
            ctx.error(f"{path}[{k!r}]", "InvalidType",
                      f"{path}[{k!r}] must be a string, not {_json_type(v)}; quote the value.")
            continue
        out.append((str(k), v))
    return tuple(sorted(out))


# --- IngressClass ---


def _parse_ingress_class(ctx: _Ctx, raw: dict, meta: ObjectMeta) -> IngressClass | None:
    spec = ctx.mapping(raw, "spec", "spec") or {}
    controller = ctx.string(spec, "controller", "spec.controller") or ""
    default = meta.annotation(DEFAULT_CLASS_ANNOTATION)
    return IngressClass(meta=meta, controller=controller, is_default=(default or "").lower() == "true")


# --- Ingress ---


def valid_host(host: str) -> str | None:
    """None when `host` is a valid Ingress host, else the reason it is not."""
    if len(host) > 253:
        return "is longer than 253 characters"
    name = host[2:] if host.startswith("*.") else host
    if host.startswith("*.") and len(name) > MAX_WILDCARD_SUFFIX_LENGTH:
        # The one-label guard of a wildcard is an RE2 regex holding the suffix; longer ones exceed
        # Envoy's regex program size limit, and Envoy would reject the whole route configuration.
        return (f"is a wildcard with more than {MAX_WILDCARD_SUFFIX_LENGTH} characters after '*.', which cannot be "
                "matched exactly; use a shorter wildcard or exact hosts")
    if not _DNS1123_SUBDOMAIN_RE.match(name):
        if ":" in host:
            return "must not carry a port; Host headers are matched without their port"
        return ("must be a lowercase DNS name (letters, digits, '-' and '.'), optionally starting "
                "with a single '*.' wildcard label")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "must be a DNS name, not an IP address"
    return None


def _parse_backend(ctx: _Ctx, raw: Any, path: str) -> IngressBackend | None:
    if not isinstance(raw, dict):
        ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
        return None
    svc = ctx.mapping(raw, "service", f"{path}.service")
    res = ctx.mapping(raw, "resource", f"{path}.resource")
    if svc is not None and res is not None:
        ctx.error(path, "InvalidBackend", f"{path} sets both service and resource; set one.")
        return None
    if res is not None:
        kind = res.get("kind") if isinstance(res.get("kind"), str) else "?"
        name = res.get("name") if isinstance(res.get("name"), str) else "?"
        return IngressBackend(field=path, resource=f"{kind}/{name}")
    if svc is None:
        if raw.get("service") is None and raw.get("resource") is None:  # else: wrong type, already reported
            ctx.error(path, "InvalidBackend", f"{path} needs a service (name and port).")
        return None
    name = ctx.string(svc, "name", f"{path}.service.name", required=True)
    if name is None:
        return None
    if len(name) > 63 or not _DNS1035_LABEL_RE.match(name):
        ctx.error(f"{path}.service.name", "InvalidName",
                  f"{path}.service.name {_short(name)} is not a valid Service name (a DNS-1035 label).")
        return None
    port = ctx.mapping(svc, "port", f"{path}.service.port", required=True)
    if port is None:
        return None
    number = ctx.integer(port, "number", f"{path}.service.port.number")
    pname = ctx.string(port, "name", f"{path}.service.port.name")
    if number is not None and pname is not None:
        ctx.error(f"{path}.service.port", "InvalidBackend",
                  f"{path}.service.port sets both number and name; set one.")
        return None
    if number is None and pname is None:
        if port.get("number") is None and port.get("name") is None:  # else: wrong type, already reported
            ctx.error(f"{path}.service.port", "InvalidBackend",
                      f"{path}.service.port needs a number (1-65535) or a name.")
        return None
    if number is not None and not 1 <= number <= 65535:
        ctx.error(f"{path}.service.port.number", "InvalidPort",
                  f"{path}.service.port.number {number} is out of range; use 1-65535.")
        return None
    if pname is not None and (len(pname) > 15 or not _PORT_NAME_RE.match(pname)):
        ctx.error(f"{path}.service.port.name", "InvalidPort",
                  f"{path}.service.port.name {_short(pname)} is not a valid port name.")
        return None
    return IngressBackend(field=path, service=ServiceBackendRef(name=name, port_number=number, port_name=pname))


def _parse_http_path(ctx: _Ctx, raw: Any, path: str) -> HTTPIngressPath | None:
    if not isinstance(raw, dict):
        ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
        return None
    path_type = ctx.string(raw, "pathType", f"{path}.pathType", required=True)
    if path_type is None:
        return None
    if path_type not in PATH_TYPES:
        ctx.error(f"{path}.pathType", "InvalidPathType",
                  f"{path}.pathType {_short(path_type)} is not one of Exact, Prefix, ImplementationSpecific.")
        return None
    value = ctx.string(raw, "path", f"{path}.path")
    if value is None:
        if "path" in raw and raw["path"] is not None:
            return None  # wrong type, already reported
        if path_type != "ImplementationSpecific":
            ctx.error(f"{path}.path", "MissingField", f"{path}.path is required for pathType {path_type}.")
            return None
        value = "/"
    if len(value) > MAX_PATH_LENGTH:
        ctx.error(f"{path}.path", "InvalidPath",
                  f"{path}.path is {len(value)} characters long; at most {MAX_PATH_LENGTH} are accepted.")
        return None
    if not value.startswith("/"):
        ctx.error(f"{path}.path", "InvalidPath", f"{path}.path {_short(value)} must start with '/'.")
        return None
    if not (_REGEX_PATH_RE if path_type == "ImplementationSpecific" else _PATH_RE).match(value):
        ctx.error(f"{path}.path", "InvalidPath",
                  f"{path}.path {_short(value)} has characters a URL path cannot contain "
                  "(spaces, control characters, '?', '#', or non-ASCII); percent-encode them.")
        return None
    backend = ctx.mapping(raw, "backend", f"{path}.backend", required=True)
    if backend is None:
        return None
    b = _parse_backend(ctx, backend, f"{path}.backend")
    if b is None:
        return None
    return HTTPIngressPath(field=path, path=value, path_type=path_type, backend=b)


def _parse_rule(ctx: _Ctx, raw: Any, path: str) -> IngressRule | None:
    if not isinstance(raw, dict):
        ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
        return None
    host = ctx.string(raw, "host", f"{path}.host")
    if host is None and raw.get("host") is not None:
        return None
    if host == "":
        host = None
    if host is not None:
        problem = valid_host(host)
        if problem:
            ctx.error(f"{path}.host", "InvalidHost", f"{path}.host {_short(host)} {problem}.")
            return None
    http = ctx.mapping(raw, "http", f"{path}.http")
    if http is None:
        return IngressRule(field=path, host=host, paths=())
    paths = ctx.each(ctx.array(http, "paths", f"{path}.http.paths"), f"{path}.http.paths", _parse_http_path)
    return IngressRule(field=path, host=host, paths=paths)


def _parse_tls(ctx: _Ctx, raw: Any, path: str) -> IngressTLS | None:
    if not isinstance(raw, dict):
        ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
        return None
    hosts: list[str] = []
    for i, h in enumerate(ctx.array(raw, "hosts", f"{path}.hosts") or ()):
        hp = f"{path}.hosts[{i}]"
        if not isinstance(h, str):
            ctx.error(hp, "InvalidType", f"{hp} must be a string, not {_json_type(h)}.")
            continue
        problem = valid_host(h)
        if problem:
            ctx.error(hp, "InvalidHost", f"{hp} {_short(h)} {problem}.")
            continue
        hosts.append(h)
    secret = ctx.string(raw, "secretName", f"{path}.secretName")
    if secret is None and raw.get("secretName") is not None:
        return None  # wrong type, already reported
    if secret is not None and (len(secret) > 253 or not _DNS1123_SUBDOMAIN_RE.match(secret)):
        ctx.error(f"{path}.secretName", "InvalidName",
                  f"{path}.secretName {_short(secret)} is not a valid Secret name.")
        return None
    return IngressTLS(field=path, hosts=tuple(hosts), secret_name=secret)


def _parse_ingress(ctx: _Ctx, raw: dict, meta: ObjectMeta) -> Ingress | None:
    spec = ctx.mapping(raw, "spec", "spec")
    if spec is None:
        spec = {}
    class_name = ctx.string(spec, "ingressClassName", "spec.ingressClassName")
    default_backend = None
    db = ctx.mapping(spec, "defaultBackend", "spec.defaultBackend")
    if db is not None:
        default_backend = _parse_backend(ctx, db, "spec.defaultBackend")
    tls = ctx.each(ctx.array(spec, "tls", "spec.tls"), "spec.tls", _parse_tls)
    rules = ctx.each(ctx.array(spec, "rules", "spec.rules"), "spec.rules", _parse_rule)
    return Ingress(meta=meta, ingress_class_name=class_name or None, default_backend=default_backend,
                   tls=tls, rules=rules)


# --- Service ---


def _parse_service_port(ctx: _Ctx, raw: Any, path: str) -> ServicePort | None:
    if not isinstance(raw, dict):
        ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
        return None
    port = ctx.integer(raw, "port", f"{path}.port", required=True)
    if port is None:
        return None
    if not 1 <= port <= 65535:
        ctx.error(f"{path}.port", "InvalidPort", f"{path}.port {port} is out of range; use 1-65535.")
        return None
    name = ctx.string(raw, "name", f"{path}.name") or ""
    protocol = ctx.string(raw, "protocol", f"{path}.protocol") or "TCP"
    target: int | str | None = None
    if "targetPort" in raw and raw["targetPort"] is not None:
        tp = raw["targetPort"]
        if isinstance(tp, bool) or not isinstance(tp, (int, str)):
            ctx.error(f"{path}.targetPort", "InvalidType",
                      f"{path}.targetPort must be a port number or a port name, not {_json_type(tp)}.")
        elif isinstance(tp, int) and not 1 <= tp <= 65535:
            ctx.error(f"{path}.targetPort", "InvalidPort", f"{path}.targetPort {tp} is out of range; use 1-65535.")
        elif isinstance(tp, str) and tp.isdigit():
            target = int(tp)
        else:
            target = tp
    app_protocol = ctx.string(raw, "appProtocol", f"{path}.appProtocol")
    return ServicePort(name=name, port=port, protocol=protocol, target_port=target, app_protocol=app_protocol)


def _parse_service(ctx: _Ctx, raw: dict, meta: ObjectMeta) -> Service | None:
    spec = ctx.mapping(raw, "spec", "spec") or {}
    stype = ctx.string(spec, "type", "spec.type") or "ClusterIP"
    cluster_ip = ctx.string(spec, "clusterIP", "spec.clusterIP")
    external_name = ctx.string(spec, "externalName", "spec.externalName")
    seen: set[int] = set()
    unique = []
    # Index the raw list, so that a port dropped before a duplicate does not shift the reported field.
    for i, item in enumerate(ctx.array(spec, "ports", "spec.ports") or ()):
        p = _parse_service_port(ctx, item, f"spec.ports[{i}]")
        if p is None:
            continue
        if p.port in seen:
            ctx.error(f"spec.ports[{i}].port", "DuplicatePort", f"port {p.port} is listed twice; the first is used.")
            continue
        seen.add(p.port)
        unique.append(p)
    return Service(meta=meta, type=stype, cluster_ip=cluster_ip or None, external_name=external_name or None,
                   ports=tuple(unique))


# --- EndpointSlice ---


def _parse_endpoint_port(ctx: _Ctx, raw: Any, path: str) -> EndpointPort | None:
    if not isinstance(raw, dict):
        ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
        return None
    port = ctx.integer(raw, "port", f"{path}.port")
    if port is not None and not 1 <= port <= 65535:
        ctx.error(f"{path}.port", "InvalidPort", f"{path}.port {port} is out of range; use 1-65535.")
        return None
    return EndpointPort(name=ctx.string(raw, "name", f"{path}.name") or "", port=port,
                        protocol=ctx.string(raw, "protocol", f"{path}.protocol") or "TCP",
                        app_protocol=ctx.string(raw, "appProtocol", f"{path}.appProtocol"))


def _endpoint_parser(address_type: str) -> Callable[[_Ctx, Any, str], Endpoint | None]:
    def parse(ctx: _Ctx, raw: Any, path: str) -> Endpoint | None:
        if not isinstance(raw, dict):
            ctx.error(path, "InvalidType", f"{path} must be an object, not {_json_type(raw)}.")
            return None
        addrs: list[str] = []
        for i, a in enumerate(ctx.array(raw, "addresses", f"{path}.addresses", required=True) or ()):
            ap = f"{path}.addresses[{i}]"
            try:
                ip = ipaddress.ip_address(a) if isinstance(a, str) else None
            except ValueError:
                ip = None
            if ip is None or (address_type == "IPv4" and ip.version != 4) or (address_type == "IPv6" and ip.version != 6):
                ctx.error(ap, "InvalidAddress", f"{ap} {_short(a)} is not an {address_type} address.")
                continue
            addrs.append(str(ip))
        if not addrs:
            return None
        cond = ctx.mapping(raw, "conditions", f"{path}.conditions") or {}
        ready = ctx.boolean(cond, "ready", f"{path}.conditions.ready")
        serving = ctx.boolean(cond, "serving", f"{path}.conditions.serving")
        terminating = ctx.boolean(cond, "terminating", f"{path}.conditions.terminating")
        # The API: nil ready/serving means "unknown, treat as ready"; nil terminating means false.
        ready_v = True if ready is None else ready
        serving_v = ready_v if serving is None else serving
        return Endpoint(addresses=tuple(addrs), ready=ready_v, serving=serving_v,
                        terminating=bool(terminating), zone=ctx.string(raw, "zone", f"{path}.zone"))
    return parse


def _parse_endpoint_slice(ctx: _Ctx, raw: dict, meta: ObjectMeta) -> EndpointSlice | None:
    address_type = ctx.string(raw, "addressType", "addressType", required=True)
    if address_type is None:
        return None
    if address_type not in ("IPv4", "IPv6"):
        if address_type != "FQDN":
            ctx.error("addressType", "InvalidAddressType",
                      f"addressType {_short(address_type)} is not IPv4, IPv6 or FQDN.")
        return None  # FQDN slices are not used for routing (as kube-proxy)
    service_name = meta.label(SERVICE_NAME_LABEL)
    if not service_name:
        ctx.warning(f"metadata.labels[{SERVICE_NAME_LABEL!r}]", "NoServiceLabel",
                    f"has no {SERVICE_NAME_LABEL} label, so it belongs to no Service and is not used.")
    ports = ctx.each(ctx.array(raw, "ports", "ports"), "ports", _parse_endpoint_port)
    parse_ep = _endpoint_parser(address_type)
    endpoints = ctx.each(ctx.array(raw, "endpoints", "endpoints"), "endpoints", parse_ep)
    return EndpointSlice(meta=meta, service_name=service_name, address_type=address_type,
                         ports=ports, endpoints=endpoints)


# --- Secret ---


def _decode_data(ctx: _Ctx, raw: dict, key: str) -> bytes | None:
    data = ctx.mapping(raw, "data", "data")
    if data is not None and key in data:
        value = data[key]
        if not isinstance(value, str):
            ctx.error(f"data[{key!r}]", "InvalidType", f"data[{key!r}] must be a base64 string.")
            return None
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            ctx.error(f"data[{key!r}]", "InvalidSecret", f"data[{key!r}] is not valid base64.")
            return None
    sdata = ctx.mapping(raw, "stringData", "stringData")
    if sdata is not None and isinstance(sdata.get(key), str):
        return sdata[key].encode("utf-8", errors="replace")
    return None


def _parse_ca(ctx: _Ctx, raw: dict) -> bytes:
    pem = _decode_data(ctx, raw, CA_KEY)
    if pem is None:
        return b""
    from xds_ingress import tlscheck  # cryptography is a heavy import; only Secrets need it

    bundle, error = tlscheck.check_ca(pem)
    if error:
        ctx.error(f"data[{CA_KEY!r}]", "InvalidCertificate", error)
    return bundle


def _has_data(raw: dict, key: str) -> bool:
    return any(isinstance(raw.get(k), dict) and key in raw[k] for k in ("data", "stringData"))


def _auth_data(ctx: _Ctx, raw: dict) -> tuple[Redacted, bytes]:
    """The htpasswd (`auth`) and JWKS (`jwks`) keys, as they are: translation checks them where they are used."""
    htpasswd = _decode_data(ctx, raw, HTPASSWD_KEY) if _has_data(raw, HTPASSWD_KEY) else None
    jwks = _decode_data(ctx, raw, JWKS_KEY) if _has_data(raw, JWKS_KEY) else None
    return Redacted(htpasswd or b""), jwks or b""


def _auth_map(raw: dict) -> Redacted:
    """The keys of a Secret other than those read for themselves (ca.crt, auth, jwks, tls.*), with their values
    as text, for ingress-nginx's auth-map (see Secret.auth_map). Read without diagnostics: only an Ingress that
    names the Secret as an auth-map says what is wrong with it."""
    import json

    entries: dict[str, str | None] = {}
    dropped = size = 0
    for field in ("data", "stringData"):
        m = raw.get(field)
        if not isinstance(m, dict):
            continue
        for k, v in m.items():
            if not isinstance(k, str) or k in _NOT_USERS or not _SECRET_DATA_KEY.fullmatch(k) or k in entries:
                continue
            value: bytes | None = None
            if isinstance(v, str):
                try:
                    value = base64.b64decode(v.encode("ascii"), validate=True) if field == "data" else v.encode()
                except (binascii.Error, UnicodeEncodeError, ValueError):
                    value = None
            size += len(value or b"")
            if len(entries) >= AUTH_MAP_MAX_KEYS or size > AUTH_MAP_MAX_BYTES:
                dropped += 1
                continue
            text: str | None = None
            if value is not None and len(value) <= _AUTH_MAP_VALUE_MAX_BYTES:
                try:
                    text = value.decode("utf-8").strip()
                except UnicodeDecodeError:
                    text = None
                if text is not None and (not text or any(ord(c) < 32 or ord(c) == 127 for c in text)):
                    text = None
            entries[k] = text
    if not entries and not dropped:
        return Redacted(b"")
    return Redacted(json.dumps({"entries": entries, "dropped": dropped}, sort_keys=True).encode())


def _parse_secret(ctx: _Ctx, raw: dict, meta: ObjectMeta) -> Secret | None:
    stype = ctx.string(raw, "type", "type") or "Opaque"
    if stype != SECRET_TYPE_TLS:
        # Other types are read only for a CA bundle (upstream TLS) and for authentication (htpasswd entries,
        # a JWKS, an Opaque Secret's keys as ingress-nginx's auth-map); the rest is nobody's business here.
        auth_map = _auth_map(raw) if stype == "Opaque" else Redacted(b"")
        if not any(_has_data(raw, k) for k in (CA_KEY, HTPASSWD_KEY, JWKS_KEY)) and not auth_map.value:
            return None
        ca = _parse_ca(ctx, raw) if _has_data(raw, CA_KEY) else b""
        htpasswd, jwks = _auth_data(ctx, raw)
        if not (ca or htpasswd.value or jwks or auth_map.value):
            return None
        return Secret(meta=meta, type=stype, certificate_chain=b"", private_key=Redacted(b""), ca_certificates=ca,
                      htpasswd=htpasswd, jwks=jwks, auth_map=auth_map)
    cert = _decode_data(ctx, raw, "tls.crt")
    key = _decode_data(ctx, raw, "tls.key")
    if cert is None:
        ctx.error("data['tls.crt']", "InvalidCertificate", "has no tls.crt; a TLS Secret needs a PEM certificate chain.")
    if key is None:
        ctx.error("data['tls.key']", "InvalidCertificate", "has no tls.key; a TLS Secret needs a PEM private key.")
    if cert is None or key is None:
        return None
    from xds_ingress import tlscheck  # cryptography is a heavy import; only Secrets need it

    checked = tlscheck.check_pair(cert, key)
    if checked.error:
        ctx.error(checked.field, "InvalidCertificate", checked.error)
        return None
    if checked.expired:
        ctx.warning("data['tls.crt']", "CertificateExpired",
                    f"the certificate expired at {checked.not_after}; clients will refuse it. Renew it.")
    ca = _parse_ca(ctx, raw) if _has_data(raw, CA_KEY) else b""
    htpasswd, jwks = _auth_data(ctx, raw)
    return Secret(meta=meta, type=stype, certificate_chain=checked.chain_pem, private_key=Redacted(checked.key_pem),
                  dns_names=checked.dns_names, not_after=checked.not_after, ca_certificates=ca,
                  htpasswd=htpasswd, jwks=jwks)


# --- ConfigMap ---


def _config_map_size(data: Any) -> int:
    if not isinstance(data, dict):
        return 0
    return sum(len(k) + (len(v) if isinstance(v, str) else 16) for k, v in data.items() if isinstance(k, str))


def compact_config_map(raw: Any) -> Any:
    """A raw ConfigMap without what is never read (binaryData, annotations such as kubectl's
    last-applied-configuration, which repeats the data, managedFields) and, when its data is larger than
    CONFIG_MAP_MAX_BYTES, with a digest of the data in its place (so that a change is still seen). What the
    sources hand to the store: the store keeps the raw object it is given. Idempotent."""
    if not isinstance(raw, dict) or raw.get("kind") != KIND_CONFIG_MAP:
        return raw
    out = {k: v for k, v in raw.items() if k not in ("binaryData", "data")}
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in ("annotations", "managedFields")}
    data = raw.get("data")
    if data is not None:
        if _config_map_size(data) > CONFIG_MAP_MAX_BYTES:
            import hashlib
            import json

            text = json.dumps(data, sort_keys=True, default=str).encode()
            out[CONFIG_MAP_DIGEST] = hashlib.sha256(text).hexdigest()
        else:
            out["data"] = data
    return out


def _parse_config_map(ctx: _Ctx, raw: dict, meta: ObjectMeta) -> ConfigMap | None:
    meta = ObjectMeta(namespace=meta.namespace, name=meta.name, uid=meta.uid, resource_version=meta.resource_version,
                      generation=meta.generation, creation_timestamp=meta.creation_timestamp)
    if raw.get(CONFIG_MAP_DIGEST) is not None or _config_map_size(raw.get("data")) > CONFIG_MAP_MAX_BYTES:
        return ConfigMap(meta=meta, too_large=True)
    data = ctx.mapping(raw, "data", "data") or {}
    out: list[tuple[str, str]] = []
    for k, v in data.items():
        if not isinstance(k, str) or not _SECRET_DATA_KEY.fullmatch(k):
            ctx.error(f"data[{_short(k)}]", "InvalidKey",
                      f"data key {_short(k)} is not a valid ConfigMap key (letters, digits, '-', '_' and '.').")
            continue
        if not isinstance(v, str):
            ctx.error(f"data[{k!r}]", "InvalidType",
                      f"data[{k!r}] must be a string, not {_json_type(v)} ({_short(v)}); quote it in YAML.")
            continue
        out.append((k, v))
    return ConfigMap(meta=meta, data=tuple(sorted(out)))


_PARSERS: dict[str, Callable[[_Ctx, dict, ObjectMeta], Any]] = {
    KIND_INGRESS: _parse_ingress,
    KIND_INGRESS_CLASS: _parse_ingress_class,
    KIND_SERVICE: _parse_service,
    KIND_ENDPOINT_SLICE: _parse_endpoint_slice,
    KIND_SECRET: _parse_secret,
    KIND_CONFIG_MAP: _parse_config_map,
}

KINDS: tuple[str, ...] = tuple(_PARSERS)


def parse_objects(raws: Iterable[Any]) -> tuple[list[K8sObject], list[Diagnostic]]:
    objs: list[K8sObject] = []
    diags: list[Diagnostic] = []
    for raw in raws:
        r = parse_object(raw)
        diags.extend(r.diagnostics)
        if r.object is not None:
            objs.append(r.object)
    return objs, diags
