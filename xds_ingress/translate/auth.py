"""Authentication and external authorization: annotations and `xds serve --auth-*` to the IR's RouteAuth and
ListenerAuth. Pure.

Three mechanisms, per Ingress (every path of it), in the order Envoy runs them:

- basic auth (`basic-auth-secret`, `basic-auth-realm`): htpasswd entries from the `auth` key of a Secret of the
  Ingress's namespace. Envoy checks SHA-1 entries (`user:{SHA}base64`) only: other entries (bcrypt, apr1, ...)
  are dropped with a diagnostic naming their line and user (never their hash). The entries reach Envoy inline
  in the route's configuration: a credential, so the IR holds them as `Redacted` and every dump blanks them.
  The username goes upstream in `x-forwarded-user`; the Authorization header (the password) does not;
- JWT (`jwt-*`): one provider per Ingress, its keys from the `jwks` key of a Secret (`jwt-jwks-secret`, public
  keys only) or fetched by Envoy from a Service of the namespace (`jwt-jwks-uri: SERVICE:PORT/PATH`);
- external authorization (`auth-url: SERVICE:PORT[/PATH]` of the namespace, or the global `--auth-service`
  that checks every route unless an Ingress says `auth: "off"`); a Service whose port speaks gRPC (appProtocol
  or upstream-protocol) is asked over envoy.service.auth.v3.Authorization, any other over HTTP.

Failing closed: an Ingress that asks for authentication and cannot have it (a bad value, a missing Secret or
Service, no usable entry) is not served without it: every path of it answers 503, with a diagnostic. This is
the one place where a bad annotation does not just get ignored: ignoring it would open the Ingress.

Headers that authentication sets on the upstream request (JWT claims, authorization response headers) are
first removed from the client's request, so that a client cannot send them itself.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import AUTH_MAP_MAX_KEYS, KIND_INGRESS, KIND_SECRET, Ingress
from xds_ingress.redacted import Redacted
from xds_ingress.translate import parsers as p
from xds_ingress.translate import signin

# The cluster of `xds serve --auth-service` (two parts: it cannot be a Service's namespace/service/port).
GLOBAL_AUTH_CLUSTER = "xds-ingress/ext-authz"
# Sent to every authorization service besides the method, path, Host and Content-Length (Envoy's own).
BASE_AUTH_REQUEST_HEADERS = ("authorization", "cookie")
UNAVAILABLE_BODY = "service unavailable\n"  # as a route to a missing Service
MAX_HTPASSWD_BYTES = 64 * 1024
MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 32

# Annotations (policy keys) that ask for protection: when one is there but unusable, the Ingress is refused.
PROTECTIVE = ("auth.url", "auth.response_headers", "basic.secret", "jwt.issuer", "jwt.audiences",
              "jwt.jwks_secret", "jwt.jwks_uri", "jwt.claims_to_headers")
# Keys another dialect (ingress-nginx's, translate/nginx.py) sets when an annotation that protects cannot be
# honoured: its diagnostic is given there, and the Ingress is refused here. `auth.url_refused` stands for an
# external authorization, `basic.refused` for basic auth (ours win over those), `auth.refused` for any other.
REFUSED = ("auth.refused", "auth.url_refused", "basic.refused")
# basic.secret_type: "auth-map" for a Secret whose keys are the users (ingress-nginx's auth-map);
# auth.client_cookies: the Set-Cookie of an HTTP service's 2xx answer reaches the client (ingress-nginx's auth-url);
# auth.signin, auth.request_redirect: ingress-nginx's auth-signin and X-Auth-Request-Redirect (translate/signin.py).
KEYS = PROTECTIVE + REFUSED + ("auth.mode", "auth.request_headers", "basic.realm", "basic.secret_type",
                               "auth.client_cookies", "jwt.forward", "auth.signin", "auth.request_redirect",
                               "auth.request_headers_to_add")
# Headers an authorization answer may replace on the upstream request without being removed from the client's
# request first: the check needs them (ingress-nginx's auth-response-headers may name them).
_CHECKED_HEADERS = ("authorization", "cookie")
_JWT_WANTS = ("jwt.issuer", "jwt.audiences", "jwt.claims_to_headers")

Values = Mapping[str, Any]  # policy key -> annotations.Parsed (value, field, annotation)


# --- parsers -----------------------------------------------------------------------------------

_SERVICE_URL = re.compile(r"([a-z]([-a-z0-9]{0,61}[a-z0-9])?):(\d{1,5}|[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?)(/.*)?")


def service_url(*, path_required: bool) -> p.Parser:
    """'SERVICE:PORT/PATH' of a Service in the same namespace (port by number or name); the path optional
    unless `path_required`."""
    accepted = ("'service:port" + ("/path'" if path_required else "[/path]'") + " naming a Service of the same "
                "namespace, one of its ports by number or name, and a URL path (e.g. 'auth:8080/verify')")

    def parse(value: str) -> tuple[str, int | str, str]:
        m = _SERVICE_URL.fullmatch(value.strip())
        if m is None or (m[3].isdigit() and not 1 <= int(m[3]) <= 65535) or (path_required and not m[5]):
            raise p.Invalid(accepted)
        path = ""
        if m[5]:
            try:
                path = p.url_path(m[5])
            except p.Invalid:
                raise p.Invalid(accepted) from None
        return m[1], int(m[3]) if m[3].isdigit() else m[3], path

    return parse


def realm(value: str) -> str:
    v = value.strip()
    if not 1 <= len(v) <= 128 or not all(32 <= ord(c) < 127 for c in v) or '"' in v or "\\" in v:
        raise p.Invalid("printable ASCII text of at most 128 characters, without '\"' and '\\'")
    return v


_TOKEN = re.compile(r"[!-~]{1,256}")  # printable ASCII, no space


def issuer(value: str) -> str:
    v = value.strip()
    if not _TOKEN.fullmatch(v):
        raise p.Invalid("the issuer (the token's iss claim, e.g. 'https://issuer.example.com'): printable ASCII "
                        "without spaces, at most 256 characters")
    return v


def _audience(value: str) -> str:
    if not _TOKEN.fullmatch(value) or "," in value:
        raise p.Invalid("printable ASCII without spaces or commas, at most 256 characters")
    return value


audiences = p.list_of(_audience, what="audiences (the token's aud claim)")

_CLAIM = re.compile(r"[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,3}")


def claims_to_headers(value: str) -> tuple[tuple[str, str], ...]:
    """'claim:header,claim:header' (a nested claim as 'a.b'), each header once."""
    accepted = ("comma-separated 'claim:header' pairs (at most 16; a claim of letters, digits, '_' and '-', nested "
                "as 'a.b'; a request header name other than authorization, cookie, host, x-envoy-* and hop-by-hop "
                "headers), each header once")
    parts = [x.strip() for x in value.split(",")]
    if not value.strip() or len(parts) > 16:
        raise p.Invalid(accepted)
    out: list[tuple[str, str]] = []
    for part in parts:
        claim, sep, header = part.partition(":")
        claim, header = claim.strip(), header.strip()
        if not sep or not _CLAIM.fullmatch(claim):
            raise p.Invalid(accepted)
        try:
            name = p.header_name(header, request=True)
        except p.Invalid:
            raise p.Invalid(accepted) from None
        if name in ("authorization", "cookie") or any(name == h for _, h in out):
            raise p.Invalid(accepted)
        out.append((claim, name))
    return tuple(out)


def auth_response_headers(value: str) -> tuple[str, ...]:
    names = p.header_names(request=True)(value)
    if any(n in ("authorization", "cookie") for n in names):
        raise p.Invalid("a comma-separated list of request header names other than authorization and cookie")
    return names


def auth_service_url(value: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of `--auth-service`: 'http://HOST:PORT[/path-prefix]' or
    'grpc://HOST:PORT'. Raises ValueError saying what is accepted."""
    accepted = "'http://HOST:PORT[/path-prefix]' or 'grpc://HOST:PORT' (HOST a DNS name or an IP address)"
    v = value.strip()
    if any(ord(c) <= 32 or ord(c) >= 127 for c in v) or "\\" in v:
        raise ValueError(f"{value!r} is not {accepted}")
    try:
        u = urlsplit(v)
        port = u.port
    except ValueError:
        raise ValueError(f"{value!r} is not {accepted}") from None
    if u.scheme not in ("http", "grpc") or not u.hostname or port is None or not 1 <= port <= 65535 or \
            u.username is not None or u.query or u.fragment or "#" in v or "?" in v:
        raise ValueError(f"{value!r} is not {accepted}")
    host = u.hostname.lower()
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            host = p.dns_name(host)
        except p.Invalid:
            raise ValueError(f"{value!r} is not {accepted}") from None
    path = u.path.rstrip("/")
    if path:
        if u.scheme == "grpc":
            raise ValueError(f"{value!r}: a gRPC service takes no path; use {accepted}")
        try:
            path = p.url_path(path)
        except p.Invalid as exc:
            raise ValueError(f"{value!r}: the path prefix must be {exc.accepted}") from None
    return u.scheme, host, port, path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def global_service(settings: Any) -> tuple[ir.AuthService, ir.Cluster] | None:
    """The authorization service of `--auth-service` and its cluster (STATIC for an IP, STRICT_DNS for a
    name), or None."""
    if not settings.auth_service:
        return None
    scheme, host, port, path = auth_service_url(settings.auth_service)
    protocol = "grpc" if scheme == "grpc" else "http"
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    service = ir.AuthService(cluster=GLOBAL_AUTH_CLUSTER, protocol=protocol, authority=authority,
                             path_prefix=path, timeout_ms=settings.auth_timeout_ms)
    cluster = ir.Cluster(
        name=GLOBAL_AUTH_CLUSTER, service=ir.Source(kind="Setting", namespace="", name="--auth-service"), port=port,
        discovery=ir.DISCOVERY_CLUSTER_IP if _is_ip(host) else ir.DISCOVERY_EXTERNAL_NAME, address=host,
        policy=ir.ClusterPolicy(protocol=ir.PROTOCOL_GRPC) if protocol == "grpc" else None)
    return service, cluster


# --- what an Ingress asks for (values only) ------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAsk:
    """The authentication annotations of an Ingress (valid values, by policy key); `deny`: an annotation that
    asks for protection is unusable (already reported), so the Ingress must not be served."""

    values: Mapping[str, Any]
    deny: bool = False


def auth_ask(values: Values, report, present: frozenset[str]) -> AuthAsk | None:
    """What the Ingress's annotations ask for, or None when it asks for nothing. `report(parsed, reason,
    message, severity)`; `present`: policy keys whose annotation is there, valid or not."""
    canary = values.get("canary.enabled")
    if canary is not None and canary.value is True:
        return None  # a canary's paths take the policies of the Ingress they are a canary of
    mine = {k: v for k, v in values.items() if k in KEYS}
    broken = [k for k in PROTECTIVE if k in present and k not in values]
    if not mine and not broken:
        return None
    deny = bool(broken) or any(k in mine for k in REFUSED)  # refused: diagnosed where the key was set
    from xds_ingress.translate.annotations import XDS, field_of  # (annotations imports this module's parsers)

    for a in XDS.table:
        if a.key in broken:
            full = XDS.full(a)
            report(SimpleNamespace(field=field_of(full), annotation=full), "AuthenticationUnavailable",
                   "asks for authentication but its value is not valid (see its diagnostic), so every path of this "
                   "Ingress answers 503 rather than be served without it. Fix the value.", Severity.ERROR)
    jwks = [k for k in ("jwt.jwks_secret", "jwt.jwks_uri") if k in present]
    if not jwks:
        for k in _JWT_WANTS:
            if k in mine:
                report(mine[k], "IncompleteAnnotation",
                       "asks for JWT validation without the keys to check tokens with, so every path of this Ingress "
                       "answers 503. Add jwt-jwks-secret or jwt-jwks-uri.", Severity.ERROR)
                deny = True
        if "jwt.forward" in mine:
            report(mine["jwt.forward"], "IgnoredAnnotation",
                   "is ignored without jwt-jwks-secret or jwt-jwks-uri.", Severity.WARNING)
    basic = "basic.secret" in present or "basic.secret" in mine or "basic.refused" in mine
    if basic and jwks:
        at = mine.get("basic.secret") or mine.get("jwt.jwks_secret") or mine.get("jwt.jwks_uri")
        if at is not None:
            report(at, "ConflictingAnnotation",
                   "and JWT validation both read the Authorization header, so no request could pass both: every "
                   "path of this Ingress answers 503. Keep basic-auth-secret or the jwt-* annotations.",
                   Severity.ERROR)
        deny = True
    if "basic.realm" in mine and not basic:
        report(mine["basic.realm"], "IgnoredAnnotation", "is ignored without basic-auth-secret.", Severity.WARNING)
    return AuthAsk(values=mine, deny=deny)


# --- Secret contents -----------------------------------------------------------------------------

def _hash_kind(hash_: str) -> str:
    """"sha" for a usable SHA-1 entry, else what the hash is (never the hash itself)."""
    if hash_.startswith("{SHA}"):
        try:
            if len(hash_) == 33 and len(base64.b64decode(hash_[5:], validate=True)) == 20:
                return "sha"
        except (binascii.Error, ValueError):
            pass
        return "malformed {SHA}"
    for prefix, kind in (("$2y$", "bcrypt ($2y$)"), ("$2a$", "bcrypt ($2a$)"), ("$2b$", "bcrypt ($2b$)"),
                         ("$apr1$", "Apache MD5 ($apr1$)"), ("$1$", "MD5-crypt ($1$)"), ("$5$", "SHA-256-crypt ($5$)"),
                         ("$6$", "SHA-512-crypt ($6$)")):
        if hash_.startswith(prefix):
            return kind
    return "crypt or plain-text"


def check_htpasswd(data: bytes) -> tuple[bytes, list[str]]:
    """The entries Envoy can check (`user:{SHA}base64`, one per line, each user once) and a sentence per line
    that is dropped. Sentences name the line and the user, never the hash."""
    users, problems, _ = check_users(data)
    return users, problems


def check_users(data: bytes) -> tuple[bytes, list[str], list[tuple[str, str]]]:
    """check_htpasswd, and the users whose entries are hashed in a way Envoy cannot check ((user, hash kind))."""
    if len(data) > MAX_HTPASSWD_BYTES:
        return b"", [f"is {len(data)} bytes long; at most {MAX_HTPASSWD_BYTES} are read, so no entry is used"], []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return b"", ["is not UTF-8 text, so no entry is used"], []
    problems: list[str] = []
    unusable: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    out: list[str] = []
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hash_ = line.partition(":")
        if any(ord(c) < 32 or ord(c) == 127 for c in line):
            problems.append(f"line {n} has control characters, so it is ignored")
        elif not sep or not user or not hash_:
            problems.append(f"line {n} is not 'user:hash', so it is ignored")
        elif user in seen:
            problems.append(f"line {n}: user {user!r} is also on line {seen[user]}; only the first is used")
        elif (kind := _hash_kind(hash_)) != "sha":
            problems.append(f"line {n} (user {user!r}) is hashed with {kind}, which Envoy cannot check, so this user "
                            "cannot log in; write it as SHA-1 ('htpasswd -s', a value starting with {SHA})")
            unusable.append((user, kind))
        else:
            seen[user] = n
            out.append(f"{user}:{hash_}")
    return ("\n".join(out) + "\n").encode() if out else b"", problems, unusable


def check_user_map(data: bytes) -> tuple[bytes, list[tuple[str, str]], list[tuple[str, str]]]:
    """ingress-nginx's auth-map: a Secret whose keys are the users and whose values are their password hashes
    (`data` as model.Secret.auth_map holds them: JSON, each value a string or null when it is not one line of
    text). The htpasswd entries Envoy can check, (key, sentence) per key that is dropped, and (user, hash kind)
    of the users hashed in a way Envoy cannot check. Sentences name the key, never the hash."""
    try:
        doc = json.loads(data.decode("utf-8")) if data else {}
    except (UnicodeDecodeError, ValueError):
        doc = {}
    entries = doc.get("entries") if isinstance(doc, dict) else None
    problems: list[tuple[str, str]] = []
    unusable: list[tuple[str, str]] = []
    out: list[str] = []
    for user, value in sorted((entries or {}).items()):
        if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            problems.append((user, "is not a password hash on one line of text, so this user cannot log in"))
        elif (kind := _hash_kind(value.strip())) != "sha":
            problems.append((user, f"is hashed with {kind}, which Envoy cannot check, so this user cannot log in; "
                                   "write it as SHA-1 ('htpasswd -s', a value starting with {SHA})"))
            unusable.append((user, kind))
        else:
            out.append(f"{user}:{value.strip()}")
    if isinstance(doc, dict) and doc.get("dropped"):
        problems.append(("", f"has more than {AUTH_MAP_MAX_KEYS} keys or {MAX_HTPASSWD_BYTES} bytes; "
                             f"{doc['dropped']} key(s) are not read, so those users cannot log in"))
    return ("\n".join(out) + "\n").encode() if out else b"", problems, unusable


_B64URL = re.compile(r"[A-Za-z0-9_\-]+")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_EC = {"P-256": ("ES256", 32), "P-384": ("ES384", 48), "P-521": ("ES512", 66)}
_TEXT = re.compile(r"[ -~]{1,256}")  # kid, alg, use: printable ASCII
MIN_RSA_BITS = 2048  # RFC 7518 3.3
MAX_RSA_BITS = 16384


def _b64url(value: Any) -> bytes | None:
    """Canonical unpadded base64url (what Envoy's JWKS parser reads without error), decoded; else None."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1 or len(value) > 4096:
        return None
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == value else None


def _check_key(key: Any) -> tuple[dict, str]:
    """One JWK reduced to the members Envoy reads, or ({}, why it would be refused). Mirrors Envoy's parser
    (jwt_verify_lib), which rejects the whole configuration over one key it cannot read."""
    if not isinstance(key, dict):
        return {}, "is not an object"
    private = [m for m in _PRIVATE_MEMBERS if m in key]
    if private:
        return {}, (f"holds private or symmetric key material ({', '.join(private)}); a key set to verify tokens "
                    "holds public keys only: remove it")
    out: dict[str, str] = {}
    for m in ("kid", "alg", "use"):
        if m in key:
            if not isinstance(key[m], str) or not _TEXT.fullmatch(key[m]):
                return {}, f"has an invalid {m!r} (printable ASCII text, at most 256 characters)"
            out[m] = key[m]
    alg = out.get("alg", "")
    kty = key.get("kty")
    if kty == "RSA":
        if alg and not alg.startswith("RS"):
            return {}, f"is an RSA key with alg {alg!r}; Envoy takes RS256, RS384 or RS512"
        n, e = _b64url(key.get("n")), _b64url(key.get("e"))
        if n is None or e is None:
            return {}, "is an RSA key without a valid 'n' and 'e' (canonical base64url, no padding)"
        bits = int.from_bytes(n, "big").bit_length()
        if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS or not int.from_bytes(n, "big") % 2:
            return {}, f"is an RSA key whose modulus is not an odd number of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
        if int.from_bytes(e, "big") not in (3, 65537):
            return {}, "is an RSA key whose exponent 'e' is neither 3 nor 65537 (AQAB), which Envoy refuses"
        out.update(kty="RSA", n=key["n"], e=key["e"])
    elif kty == "EC":
        crv = key.get("crv", "P-256")
        if crv not in _EC or (alg and alg != _EC[crv][0]):
            return {}, (f"is an EC key with crv {crv!r} and alg {alg!r}; use P-256 (ES256), P-384 (ES384) or P-521 "
                        "(ES512)")
        x, y = _b64url(key.get("x")), _b64url(key.get("y"))
        if x is None or y is None or not _on_curve(crv, x, y):
            return {}, f"is an EC key whose 'x' and 'y' are not a point of {crv} (canonical base64url)"
        out.update(kty="EC", crv=crv, x=key["x"], y=key["y"])
    elif kty == "OKP":
        x = _b64url(key.get("x"))
        if key.get("crv") != "Ed25519" or (alg and alg != "EdDSA") or x is None or len(x) != 32:
            return {}, "is an OKP key that is not Ed25519 (crv Ed25519, alg EdDSA, a 32-byte 'x')"
        out.update(kty="OKP", crv="Ed25519", x=key["x"])
    else:
        return {}, f"has kty {kty!r}; use RSA, EC or OKP (Ed25519) public keys"
    return out, ""


def _on_curve(crv: str, x: bytes, y: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec  # a heavy import: only JWKS Secrets need it

    curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}[crv]()
    try:
        ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve).public_key()
    except ValueError:
        return False
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_jwks(data: bytes) -> tuple[str, str]:
    """(the key set as compact JSON with only the members Envoy reads, "") or ("", why it cannot be used).
    Public keys only (RSA of at least 2048 bits, EC, Ed25519): a private or symmetric key would be a secret in
    the listener's configuration, shown in every config dump. Every key must be one Envoy reads: a single
    key it cannot read makes it reject the listener."""
    if len(data) > MAX_JWKS_BYTES:
        return "", f"is {len(data)} bytes long; at most {MAX_JWKS_BYTES} are read"
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        return "", "is not JSON"
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_JWKS_KEYS:
        return "", f"is not a JSON Web Key Set: an object with 'keys', a list of 1 to {MAX_JWKS_KEYS} keys"
    out = []
    for i, key in enumerate(keys):
        checked, why = _check_key(key)
        if why:
            return "", f"keys[{i}] {why}"
        out.append(checked)
    return json.dumps({"keys": out}, sort_keys=True, separators=(",", ":")), ""


# --- resolution against the other objects ------------------------------------------------------

_DENIED = ir.RouteAction(direct_status=503, direct_body=UNAVAILABLE_BODY)


class AuthResolver:
    """Resolves what Ingresses ask for (Secrets, Services) into RouteAuth.

    `translator` gives `settings`, `secrets` ((namespace, name) -> Secret), `diagnostics` (a list to append
    to), `cluster_of(ing, name, port_number, port_name, field, what)`, `_reporter(kind, namespace, name)` and
    `_unit` (the scope being translated: an Ingress is resolved once per host, so that each host's scope has
    its diagnostics and its uses of clusters, as incremental translation recomputes hosts one by one).
    """

    def __init__(self, translator: Any) -> None:
        self.t = translator
        self.settings = translator.settings
        found = global_service(self.settings)
        self.global_service, self.global_cluster = found if found is not None else (None, None)
        self._done: dict[tuple, tuple[ir.RouteAuth | None, bool]] = {}

    def apply(self, ing: Ingress, ask: AuthAsk | None, route_policy: ir.RoutePolicy | None
              ) -> tuple[ir.RoutePolicy | None, ir.RouteAction | None]:
        """The route policy with the Ingress's authentication, and None; or, when the Ingress must not be
        served (it asks for authentication it cannot have), the 503 action its routes take instead."""
        if ask is None:
            return route_policy, None
        key = (ing.meta.namespace, ing.meta.name, getattr(self.t, "_unit", None))
        if key not in self._done:
            self._done[key] = self._resolve(ing, ask)
        auth, denied = self._done[key]
        if denied:
            return route_policy, _DENIED
        if auth is None:
            return route_policy, None
        return dataclasses.replace(route_policy or ir.RoutePolicy(), auth=auth), None

    def _diag(self, kind: str, namespace: str, name: str, field: str, reason: str, message: str) -> None:
        self.t.diagnostics.append(Diagnostic(kind=kind, namespace=namespace, name=name, field=field, reason=reason,
                                             message=message, severity=Severity.ERROR))

    def _resolve(self, ing: Ingress, ask: AuthAsk) -> tuple[ir.RouteAuth | None, bool]:
        v = ask.values
        ns, name = ing.meta.namespace, ing.meta.name
        report = self.t._reporter(KIND_INGRESS, ns, name)
        denied = ask.deny
        refused = "every path of this Ingress answers 503"
        strip: list[str] = []

        external, ok = self._external(ing, v, report, refused)
        denied |= not ok
        if external is not None and not external.disabled:
            strip += [h for h in external.response_headers if h not in _CHECKED_HEADERS]

        basic = None
        if "basic.secret" in v:
            basic = self._basic(ing, v, refused)
            denied |= basic is None

        jwt = None
        if "jwt.jwks_secret" in v or "jwt.jwks_uri" in v:
            jwt = self._jwt(ing, v, report, refused)
            if jwt is None:
                denied = True
            else:
                strip += [h for _, h in jwt.claims_to_headers]
        if denied:
            return None, True
        auth = ir.RouteAuth(external=external, basic=basic, jwt=jwt, strip_request_headers=tuple(sorted(set(strip))))
        return (None if auth == ir.RouteAuth() else auth), False

    def _external(self, ing: Ingress, v: Values, report, refused: str) -> tuple[ir.ExternalAuth | None, bool]:
        url, mode = v.get("auth.url"), v.get("auth.mode")
        req = tuple(v["auth.request_headers"].value) if "auth.request_headers" in v else ()
        resp = tuple(v["auth.response_headers"].value) if "auth.response_headers" in v else ()
        off = mode is not None and mode.value == "off"
        g = self.global_service
        if url is not None:
            if off:
                report(mode, "IgnoredAnnotation", "is ignored: auth-url names this Ingress's own authorization "
                       "service.", Severity.WARNING)
            svc, port, path = url.value
            cluster = self.t.cluster_of(ing, svc, port if isinstance(port, int) else None,
                                        port if isinstance(port, str) else None, url.field,
                                        f"{refused} (its requests cannot be authorized)")
            if cluster is None:
                return None, False
            grpc = cluster.policy is not None and cluster.policy.protocol == ir.PROTOCOL_GRPC
            if grpc and path:
                report(url, "IgnoredAnnotation", f"names a path ({path}) but Service {svc} speaks gRPC, which is "
                       "asked envoy.service.auth.v3.Authorization/Check: the path is ignored.", Severity.WARNING)
            host = cluster.address if cluster.discovery == ir.DISCOVERY_EXTERNAL_NAME else \
                f"{svc}.{ing.meta.namespace}.svc"
            # Envoy asks prefix + the request's path: a trailing slash would make "//".
            service = ir.AuthService(cluster=cluster.name, protocol="grpc" if grpc else "http",
                                     authority=f"{host}:{cluster.port}", path_prefix="" if grpc else path.rstrip("/"),
                                     timeout_ms=self.settings.auth_timeout_ms)
            cookies = ("set-cookie",) if "auth.client_cookies" in v and not grpc else ()
            signin_v, redirect_v = v.get("auth.signin"), v.get("auth.request_redirect")
            if grpc and redirect_v is not None and redirect_v.value != signin.DEFAULT_REQUEST_REDIRECT:
                report(redirect_v, "IgnoredAnnotation", f"is ignored: Service {svc} speaks gRPC, which is asked "
                       "envoy.service.auth.v3.Authorization/Check without extra headers.", Severity.WARNING)
            add = v.get("auth.request_headers_to_add")  # auth-proxy-set-headers (translate/configmaps.py)
            if add is not None and grpc:
                report(add, "AuthenticationUnavailable", f"adds headers to the authorization request, but Service {svc} "
                       f"speaks gRPC, which is asked without them, so {refused}.", Severity.ERROR)
                return None, False
            return ir.ExternalAuth(service=service, request_headers=req, response_headers=resp,
                                   client_headers_on_success=cookies,
                                   signin=signin_v.value if signin_v is not None else (),
                                   request_redirect=redirect_v.value if redirect_v is not None and not grpc
                                   else (),
                                   request_headers_to_add=tuple(add.value) if add is not None else ()), True
        unused = [x for x in (v.get("auth.request_headers"), v.get("auth.response_headers")) if x is not None]
        if off:
            if g is None:
                report(mode, "IgnoredAnnotation", "is ignored: there is no authorization service for every route "
                       "(xds serve --auth-service) to turn off.", Severity.WARNING)
            for x in unused:
                report(x, "IgnoredAnnotation", "is ignored: auth is \"off\".", Severity.WARNING)
            return (ir.ExternalAuth(disabled=True) if g is not None else None), True
        if g is not None and unused:
            # An HTTP service copies response headers per route: the route names the service to carry them.
            service = g if resp and g.protocol == "http" else None
            return ir.ExternalAuth(service=service, request_headers=req, response_headers=resp), True
        for x in unused:
            report(x, "IgnoredAnnotation", "is ignored without auth-url (or xds serve --auth-service).",
                   Severity.WARNING)
        return None, True

    def _secret(self, ing: Ingress, parsed: Any, key: str, what: str, refused: str):
        ns = ing.meta.namespace
        secret = self.t.secrets.get((ns, parsed.value))
        data = None if secret is None else (secret.htpasswd.value if key == "auth" else secret.jwks)
        if not data:
            self._diag(KIND_INGRESS, ns, ing.meta.name, parsed.field, "SecretNotFound",
                       f"{parsed.annotation} names Secret {ns}/{parsed.value}, which does not exist or has no "
                       f"'{key}' key, so {refused}. Create it in namespace {ns} with {what} in '{key}'.")
            return None
        return data

    def _basic(self, ing: Ingress, v: Values, refused: str) -> ir.BasicAuth | None:
        parsed = v["basic.secret"]
        ns = ing.meta.namespace
        by_key = "basic.secret_type" in v and v["basic.secret_type"].value == "auth-map"
        if by_key:
            secret = self.t.secrets.get((ns, parsed.value))
            data = secret.auth_map.value if secret is not None else b""
            if not data:
                self._diag(KIND_INGRESS, ns, ing.meta.name, parsed.field, "SecretNotFound",
                           f"{parsed.annotation} names Secret {ns}/{parsed.value}, which does not exist or is not an "
                           f"Opaque Secret with a key per user (auth-map), so {refused}. Create it in namespace {ns} "
                           "with each user as a key and the user's password hash ({SHA}...) as its value.")
                return None
            users, keyed, unusable = check_user_map(data)
            for key, problem in keyed:
                field = f"data[{key!r}]" if key else "data"
                self._diag(KIND_SECRET, ns, parsed.value, field, "InvalidHtpasswd", f"{field} {problem}.")
        else:
            data = self._secret(ing, parsed, "auth", "htpasswd entries (user:{SHA}base64)", refused)
            if data is None:
                return None
            users, problems, unusable = check_users(data)
            for problem in problems:
                self._diag(KIND_SECRET, ns, parsed.value, "data['auth']", "InvalidHtpasswd",
                           f"data['auth'] {problem}.")
        rehash = ""
        if unusable:
            kinds = ", ".join(sorted({k for _, k in unusable}))
            more = f" and {len(unusable) - 5} more" if len(unusable) > 5 else ""
            who = ", ".join(u for u, _ in unusable[:5]) + more
            rehash = (f" Envoy checks SHA-1 hashes only, and {'user' if len(unusable) == 1 else 'users'} {who} "
                      f"{'is' if len(unusable) == 1 else 'are'} hashed with {kinds}: re-hash the "
                      f"{'password' if len(unusable) == 1 else 'passwords'} with 'htpasswd -s' (a value starting "
                      "with {SHA}).")
        if not users:
            self._diag(KIND_INGRESS, ns, ing.meta.name, parsed.field, "SecretNotFound",
                       f"{parsed.annotation} names Secret {ns}/{parsed.value}, which has no usable "
                       f"{'user' if by_key else 'htpasswd entry'} (see its diagnostics), so {refused}.{rehash}")
            return None
        if rehash:
            self.t.diagnostics.append(Diagnostic(
                kind=KIND_INGRESS, namespace=ns, name=ing.meta.name, field=parsed.field, reason="UnusableUsers",
                severity=Severity.WARNING,
                message=f"{parsed.annotation} names Secret {ns}/{parsed.value}, some of whose users cannot log in "
                        f"(401).{rehash}"))
        realm_v = v.get("basic.realm")
        return ir.BasicAuth(secret=f"{ns}/{parsed.value}", users=Redacted(users),
                            realm=realm_v.value if realm_v is not None else "")

    def _jwt(self, ing: Ingress, v: Values, report, refused: str) -> ir.JwtProvider | None:
        ns = ing.meta.namespace
        secret_p, uri_p = v.get("jwt.jwks_secret"), v.get("jwt.jwks_uri")
        fields: dict[str, Any] = {
            "name": f"{ns}/{ing.meta.name}",
            "issuer": v["jwt.issuer"].value if "jwt.issuer" in v else "",
            "audiences": tuple(v["jwt.audiences"].value) if "jwt.audiences" in v else (),
            "claims_to_headers": tuple(v["jwt.claims_to_headers"].value) if "jwt.claims_to_headers" in v else (),
            "forward": "jwt.forward" in v and v["jwt.forward"].value is True,
        }
        if secret_p is not None:
            if uri_p is not None:
                report(uri_p, "ConflictingAnnotation", "and jwt-jwks-secret are both set; the Secret's keys are used "
                       "and this one is ignored. Keep one.", Severity.ERROR)
            data = self._secret(ing, secret_p, "jwks", "a JSON Web Key Set of public keys", refused)
            if data is None:
                return None
            jwks, problem = check_jwks(data)
            if problem:
                self._diag(KIND_SECRET, ns, secret_p.value, "data['jwks']", "InvalidJWKS", f"data['jwks'] {problem}.")
                self._diag(KIND_INGRESS, ns, ing.meta.name, secret_p.field, "SecretNotFound",
                           f"{secret_p.annotation} names Secret {ns}/{secret_p.value}, whose key set cannot be used "
                           f"(see its diagnostics), so {refused}.")
                return None
            return ir.JwtProvider(local_jwks=jwks, jwks_secret=f"{ns}/{secret_p.value}", **fields)
        svc, port, path = uri_p.value
        cluster = self.t.cluster_of(ing, svc, port if isinstance(port, int) else None,
                                    port if isinstance(port, str) else None, uri_p.field,
                                    f"{refused} (no key to check tokens with)")
        if cluster is None:
            return None
        tls = cluster.policy is not None and cluster.policy.tls is not None
        host = cluster.address if cluster.discovery == ir.DISCOVERY_EXTERNAL_NAME else f"{svc}.{ns}.svc"
        uri = f"{'https' if tls else 'http'}://{host}:{cluster.port}{path}"
        return ir.JwtProvider(remote_jwks_uri=uri, remote_jwks_cluster=cluster.name, **fields)



# --- the listeners -------------------------------------------------------------------------------

def listener_auth(route_configs: tuple[ir.RouteConfiguration, ...], settings: Any) -> ir.ListenerAuth | None:
    """The listeners' authentication filters: a function of the routes and the settings only, so that an
    incremental translation can tell whether a change of some hosts changes them."""
    found = global_service(settings)
    service = found[0] if found is not None else None
    auths = [r.policy.auth for rc in route_configs for vh in rc.virtual_hosts for r in vh.routes
             if r.policy is not None and r.policy.auth is not None]
    externals = [a.external for a in auths if a.external is not None and not a.external.disabled]
    per_route = any(e.service is not None for e in externals)
    has_external = service is not None or per_route
    headers = set(BASE_AUTH_REQUEST_HEADERS) if has_external else set()
    for e in externals:
        headers.update(e.request_headers)
    providers = {a.jwt.name: a.jwt for a in auths if a.jwt is not None}
    la = ir.ListenerAuth(
        external_service=service, external_per_route=per_route,
        failure_mode_allow=has_external and settings.auth_failure_mode == "open",
        allowed_headers=tuple(sorted(headers)), basic=any(a.basic is not None for a in auths),
        jwt_providers=tuple(providers[n] for n in sorted(providers)),
        strip=any(a.strip_request_headers for a in auths),
        # With nginx compatibility, the sign-in filters (off unless a route switches them on) are there whenever
        # an external authorization is: a first or last auth-signin then changes routes only, not the listeners
        # (whose change drains their connections).
        signin=(has_external and bool(getattr(settings, "nginx_compat", False)))
        or any(signin.needs_script(e) for e in externals))
    return None if la == ir.ListenerAuth() else la


def with_listener_auth(listeners: tuple[ir.Listener, ...], route_configs: tuple[ir.RouteConfiguration, ...],
                       settings: Any) -> tuple[ir.Listener, ...]:
    la = listener_auth(route_configs, settings)
    if la is None:
        return tuple(listeners)
    return tuple(dataclasses.replace(lst, auth=la) for lst in listeners)


def has_auth(routes: tuple[ir.Route, ...]) -> bool:
    return any(r.policy is not None and r.policy.auth is not None for r in routes)
