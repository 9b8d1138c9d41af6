"""ingress-nginx's annotations (`nginx.ingress.kubernetes.io/`), read with `--nginx-compat`.

One table, `TABLE`, says for every annotation ingress-nginx documents how it is treated here:

- `exact`: translated with ingress-nginx's observable behaviour;
- `difference`: translated, with a stated difference (the row's `note`, also in the diagnostics of
  `xds migrate` and in docs/moving-from-ingress-nginx.md, which is generated from this table);
- `unsupported`: never translated; the row says why and what replaces it. Snippet annotations
  (text spliced into nginx's configuration) are never executed. A `pending` row names the
  xds-ingress.io annotation whose policy is planned; wiring it is filling in that one row
  (`parse`, `key`, `status`).

Reading (`read_ingress`) gives the dialect-neutral policy keys of `policy.py`. Most rows map onto
one key directly; a few nginx-only keys (`nginx.*`) are expanded into several (backend-protocol:
protocol and TLS; affinity: a cookie hash; proxy-next-upstream: retry conditions). When our own
`xds-ingress.io/` annotations set the same policy, ours win and the nginx annotation gets a
diagnostic.

What ingress-nginx applies per upstream (backend-protocol, load-balance, upstream-hash-by,
affinity, service-upstream, proxy-ssl-*) is applied here to the clusters of the Services the
Ingress routes to (`service_values`): a Service's clusters are shared by every Ingress that
routes to it, so when two Ingresses disagree the oldest wins (ingress-nginx does the same for
its upstream settings) and the other gets a diagnostic.

What concerns a whole host (use-regex, app-root, server-alias, from-to-www-redirect,
force-ssl-redirect) and the regex paths are applied on the assembled route configurations
(`finish`): ingress-nginx's rule that `use-regex` or `rewrite-target` on one Ingress of a host
makes every path of that host a case-insensitive regex (`location ~* "^path"`) holds here too.

What protects (authentication, client certificates, address lists, verified backends) is never dropped: an
Ingress whose annotations ask for a protection that cannot be given here (a refused value, a Secret or
Service of another namespace, digest authentication, an auth-url outside the namespace, a snippet with
auth_basic or deny, auth-tls-match-cn...) is refused with a diagnostic: its paths answer 503 (the keys
basic.refused, auth.url_refused and auth.refused, read by translate/auth.py), or the protection refuses every
client; never served open.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import KIND_INGRESS, Ingress, IngressBackend, ObjectMeta, Service, is_url_path, valid_host
from xds_ingress.translate import auth, configmaps
from xds_ingress.translate import parsers as p
from xds_ingress.translate import signin
from xds_ingress.translate.annotations import XDS, Annotation, Dialect, Parsed, field_of, present_keys, read
from xds_ingress.translate.settings import TranslateSettings
from xds_ingress.translate.tls import (
    HSTS_HEADER,
    NGINX_REDIRECT_CODE,
    NO_TLS_STATE,
    TLSState,
    misdirected_route,
    select_virtual_host,
)

__all__ = ["PREFIX", "Row", "TABLE", "NGINX", "EXACT", "DIFFERENCE", "UNSUPPORTED", "row", "read_ingress",
           "service_values", "upstream_lenders", "lending", "shared_values", "finish", "finish_memoized", "FinishMemo", "path_regex", "canary_annotation", "markdown", "secret_references",
           "whole_secret_references", "config_map_references"]

PREFIX = "nginx.ingress.kubernetes.io/"
EXACT, DIFFERENCE, UNSUPPORTED = "exact", "difference", "unsupported"
NOOP = "nginx.noop"  # a key nothing reads: the value is checked and has no effect


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One ingress-nginx annotation and how it is treated."""

    name: str  # without the prefix
    status: str  # EXACT | DIFFERENCE | UNSUPPORTED
    group: str
    doc: str  # what it does in ingress-nginx (one sentence)
    note: str = ""  # DIFFERENCE: what differs here; UNSUPPORTED: why
    replacement: str = ""  # what to use instead (UNSUPPORTED), or the xds-ingress.io equivalent
    parse: p.Parser | None = None  # None: not translated (UNSUPPORTED)
    key: str = ""  # the policy key (policy.py or an nginx.* key expanded here)
    example: str = ""
    snippet: bool = False  # nginx configuration text: never executed
    pending: bool = False  # the policy it needs is planned: wire it by filling in parse, key and status


# --- parsers for ingress-nginx's value syntax ----------------------------------------------------------------

def _seconds(lo: int, hi: int) -> p.Parser:
    """nginx's timeouts: whole seconds, optionally with an `s` (ingress-nginx reads an integer)."""
    accepted = f"a whole number of seconds from {lo} to {hi} (e.g. '60')"

    def parse(value: str) -> int:
        v = value.strip().lower().removesuffix("s")
        if not re.fullmatch(r"\d{1,7}", v) or not lo <= int(v) <= hi:
            raise p.Invalid(accepted)
        return int(v) * 1000
    return parse


def _tries(value: str) -> int:
    """proxy-next-upstream-tries counts every attempt (the first one too): retries = tries - 1."""
    v = value.strip()
    if not re.fullmatch(r"\d{1,3}", v) or not 1 <= int(v) <= 11:
        raise p.Invalid("a whole number of attempts from 1 to 11 (0, nginx's 'unlimited', is not accepted)")
    return int(v) - 1


_NEXT_UPSTREAM = {
    "error": ("connect-failure", "refused-stream", "reset"),
    "timeout": ("connect-failure", "reset"),
    "invalid_header": ("reset",),
    "http_500": (), "http_502": (), "http_503": (), "http_504": (), "http_403": (), "http_404": (), "http_429": (),
    "non_idempotent": (), "off": (),
}


def _next_upstream(value: str) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
    """(retry conditions, retriable status codes, off) of a space-separated proxy-next-upstream list."""
    parts = value.split()
    accepted = "a space-separated list of " + ", ".join(_NEXT_UPSTREAM)
    if not parts or len(parts) > 12 or any(x not in _NEXT_UPSTREAM for x in parts):
        raise p.Invalid(accepted)
    if "off" in parts:
        if len(parts) > 1:
            raise p.Invalid(accepted + " ('off' alone)")
        return (), (), True
    conds: list[str] = []
    codes: list[int] = []
    for x in parts:
        for c in _NEXT_UPSTREAM[x]:
            if c not in conds:
                conds.append(c)
        if x.startswith("http_"):
            codes.append(int(x[5:]))
    return tuple(conds), tuple(sorted(set(codes))), False


def _rewrite_target(value: str) -> str:
    """A path with $1-$9 group references, as an RE2 substitution (\\1-\\9)."""
    v = value.strip()
    if len(v) > p.MAX_PATH_LENGTH or not re.fullmatch(r"(?:[A-Za-z0-9\-._~!&'()*+,;=:@/%]|\$[1-9]|\$\{[1-9]\})*", v) \
            or not v.startswith(("/", "$")) or re.search(r"%(?![0-9A-Fa-f]{2})", v):
        raise p.Invalid("a path starting with '/' or a group reference, of URL path characters and $1-$9 references "
                        "to the groups of the path's regex (no other nginx variables, no query)")
    return re.sub(r"\$\{?([1-9])\}?", r"\\\1", v)


def _redirect(value: str) -> tuple[str, str, int | None, str | None]:
    """An absolute URL; a URL with no path redirects to exactly that (nginx's `return`), and a URL ending in
    `$request_uri` keeps the request's path and query."""
    v = value.strip()
    keep = v.endswith("$request_uri")
    if keep:
        v = v[: -len("$request_uri")]
    scheme, host, port, path = p.redirect_url(v)
    if keep:
        if path not in (None, "/"):
            raise p.Invalid("an absolute URL; '$request_uri' only right after the host (https://host$request_uri)")
        return scheme, host, port, None
    return scheme, host, port, path or "/"


def _redirect_code(value: str) -> int:
    return int(p.one_of("301", "302", "303", "307", "308")(value))


def _backend_protocol(value: str) -> str:
    v = value.strip().upper()
    if v in ("AJP", "FCGI"):
        raise p.Invalid(f"HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP ({v} backends are not supported)")
    if v not in ("HTTP", "HTTPS", "GRPC", "GRPCS", "AUTO_HTTP"):
        raise p.Invalid("HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP")
    return v


def _load_balance(value: str) -> str:
    v = value.strip().lower()
    out = {"round_robin": "round-robin", "ewma": "least-request", "least_conn": "least-request"}.get(v)
    if out is None:
        raise p.Invalid("round_robin or ewma")
    return out


def _service_upstream(value: str) -> str:
    return "service" if p.boolean(value) else "endpoints"


def _hash_by(value: str) -> tuple[str, str]:
    """One nginx variable: $remote_addr, $binary_remote_addr, $request_uri, $host, $http_NAME, $cookie_NAME."""
    v = value.strip()
    m = re.fullmatch(r"\$\{?([a-z0-9_]+)\}?", v)
    accepted = ("one nginx variable: $remote_addr, $binary_remote_addr, $request_uri, $uri, $host, $http_NAME or "
                "$cookie_NAME (combinations of variables and text are not supported)")
    if m is None:
        raise p.Invalid(accepted)
    var = m[1]
    if var in ("remote_addr", "binary_remote_addr"):
        return "source_ip", ""
    if var in ("request_uri", "uri"):
        return "header", ":path"
    if var in ("host", "http_host"):
        return "header", ":authority"
    try:
        if var.startswith("http_"):
            return "header", p.header_name(var[5:].replace("_", "-"), request=False)
        if var.startswith("cookie_"):
            return "cookie", p.cookie_name(var[7:])
    except p.Invalid:
        raise p.Invalid(accepted) from None
    raise p.Invalid(accepted)


def _affinity(value: str) -> str:
    return p.one_of("cookie")(value)


def _mirror_target(value: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `scheme://host[:port]$request_uri` (the copy keeps the request's URI)."""
    v = value.strip()
    if not v.endswith("$request_uri"):
        raise p.Invalid("'http://SERVICE[.NAMESPACE[.svc[.cluster.local]]][:PORT]$request_uri': a Service of the "
                        "Ingress's namespace, the request's URI kept")
    scheme, host, port, path = p.redirect_url(v[: -len("$request_uri")])
    if path not in (None, "/"):
        raise p.Invalid("a URL whose path is only '$request_uri'")
    return scheme, host, port


def _namespaced_secret(value: str) -> tuple[str, str]:
    v = value.strip()
    ns, sep, name = v.rpartition("/")
    try:
        if sep and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns):
            raise p.Invalid("")
        return ns if sep else "", p.secret_name(name)
    except p.Invalid:
        raise p.Invalid("'NAMESPACE/NAME' or 'NAME' of a Secret") from None


def _namespaced_config_map(value: str) -> tuple[str, str]:
    try:
        return _namespaced_secret(value)
    except p.Invalid:
        raise p.Invalid("'NAMESPACE/NAME' or 'NAME' of a ConfigMap") from None


def _auth_url(value: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port or None, path with query or "") of an absolute http(s) URL without nginx variables;
    `_expand_auth` says which of them are a Service of the Ingress's namespace."""
    accepted = ("an http URL of a Service of the Ingress's namespace, 'http://SERVICE[.NAMESPACE[.svc[.cluster.local"
                "]]][:PORT][/PATH]' (no nginx variables such as $host); for another service, an ExternalName Service "
                "of this namespace or xds serve --auth-service")
    if "$" in value:
        raise p.Invalid(accepted)
    try:
        scheme, host, port, path = p.redirect_url(value)
    except p.Invalid:
        raise p.Invalid(accepted) from None
    return scheme, host, port, path or ""


_auth_response_headers = p.header_names(request=True)  # Authorization and Cookie too: see translate/auth.py


def _http_method(value: str) -> str:
    v = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,16}", v):
        raise p.Invalid("an HTTP method (GET, POST, ...)")
    return v


def _on_off(value: str) -> bool:
    return p.one_of("on", "off")(value) == "on"


def _aliases(value: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in value.split(","):
        h = part.strip().lower()
        if not h or valid_host(h) or len(out) >= 16:
            raise p.Invalid("a comma-separated list of at most 16 host names (an exact name or '*.' and a name)")
        if h not in out:
            out.append(h)
    return tuple(out)


def _header_pattern(value: str) -> str:
    """nginx matches a PCRE anywhere in the value; Envoy's regex must match the whole value."""
    v = p.regex(value)
    wrapped = f".*(?:{v}).*"
    size = p.re2_program_size(wrapped)
    if size is None or size > p.MAX_RE2_PROGRAM_SIZE:
        raise p.Invalid(f"a shorter regular expression (it must fit Envoy's limit of {p.MAX_RE2_PROGRAM_SIZE})")
    return wrapped


def _any(value: str) -> str:
    return value


# CORS: ingress-nginx's defaults when enable-cors is "true" and the annotation is not set
CORS_DEFAULT_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
CORS_DEFAULT_HEADERS = ("DNT", "Keep-Alive", "User-Agent", "X-Requested-With", "If-Modified-Since", "Cache-Control",
                        "Content-Type", "Range", "Authorization")
CORS_DEFAULT_MAX_AGE_S = 1_728_000
_WILDCARD_ORIGIN = re.compile(r"(https?)://\*\.([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*)"
                              r"(:\d{1,5})?")


def _cors_origins(value: str) -> tuple[tuple[str, str], ...]:
    """ingress-nginx's cors-allow-origin: a comma-separated list of 'http(s)://host[:port]',
    'http(s)://*.host[:port]' (one label in place of the *) or '*' (every origin: the whole list is then '*')."""
    accepted = ("a comma-separated list of origins 'https://host[:port]' or 'https://*.host[:port]' (http or https, "
                "no path), or '*'")
    parts = [x.strip() for x in value.split(",")]
    if not value.strip() or any(not x for x in parts) or len(parts) > p.MAX_ORIGINS:
        raise p.Invalid(accepted)
    if "*" in parts:
        return (("any", ""),)
    out: list[tuple[str, str]] = []
    for part in parts:
        m = _WILDCARD_ORIGIN.fullmatch(part.lower().rstrip("/"))
        if m is not None:
            port = m[6] or ""
            if port and not 1 <= int(port[1:]) <= 65535:
                raise p.Invalid(f"{accepted} ({part!r} is not one)")
            item = ("regex", p.regex(f"{m[1]}://[A-Za-z0-9-]+\\." + re.escape(m[2]).replace("\\-", "-")
                                     + re.escape(port)))
        else:
            try:
                item = p.origins(part)[0]
            except p.Invalid:
                raise p.Invalid(f"{accepted} ({part!r} is not one)") from None
            if item[0] != "exact":
                raise p.Invalid(f"{accepted} ({part!r} is not one)")
        if item not in out:
            out.append(item)
    return tuple(out)


def _words(pattern: str, what: str, max_items: int = 32) -> p.Parser:
    """A list of `pattern` items separated by commas and/or spaces, as ingress-nginx reads its CORS lists."""
    accepted = f"a comma-separated list of at most {max_items} {what}"

    def parse(value: str) -> tuple[str, ...]:
        items = [x for x in re.split(r"[\s,]+", value.strip()) if x]
        if not items or len(items) > max_items or not all(re.fullmatch(pattern, x) for x in items):
            raise p.Invalid(accepted)
        return tuple(dict.fromkeys(items))
    return parse


_cors_methods = _words(r"[A-Za-z]{1,32}", "HTTP methods (letters)")
_cors_headers = _words(r"[A-Za-z0-9_\-]{1,128}", "header names (letters, digits, - and _)")
_cors_expose = _words(r"[A-Za-z0-9_\-]{1,128}|\*", "header names (letters, digits, - and _) or '*'")
_CIDR_TEXT = re.compile(r"[0-9A-Fa-f:.]{2,45}(/\d{1,3})?")


def _address_ranges(value: str) -> tuple[tuple[str, str], ...]:
    """ingress-nginx's address lists: comma-separated IPv4/IPv6 addresses or CIDR ranges; a range with host bits
    set is read as its network, as nginx does ((network, the range as written) then, to say so; else (network,
    ""))."""
    import ipaddress

    accepted = (f"a comma-separated list of at most {p.MAX_SOURCE_RANGES} IPv4 or IPv6 addresses or CIDR ranges "
                "('10.0.0.0/8', '192.168.1.7', '2001:db8::/32')")
    parts = [x.strip() for x in value.split(",")]
    if not value.strip() or any(not x for x in parts) or len(parts) > p.MAX_SOURCE_RANGES:
        raise p.Invalid(accepted)
    out: dict[str, str] = {}
    for part in parts:
        if not _CIDR_TEXT.fullmatch(part):
            raise p.Invalid(f"{accepted}; {part!r} is not one")
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise p.Invalid(f"{accepted}; {part!r} is not one") from None
        if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96")):
            raise p.Invalid(f"{accepted}; {part!r} is IPv4-mapped: write the IPv4 range (Envoy sees IPv4 clients as "
                            "IPv4 addresses)")
        loose = "/" in part and ipaddress.ip_address(part.partition("/")[0]) != net.network_address
        out[str(net)] = out.get(str(net)) or (part if loose else "")
    return tuple(out.items())


def _service_name(value: str) -> str:
    v = value.strip()
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", v):
        raise p.Invalid("the name of a Service of the Ingress's namespace (a DNS label)")
    return v


_NGINX_SIZE = re.compile(r"(\d{1,10})([kKmMgG]?)")


def _body_size(value: str) -> int:
    """nginx's size syntax: bytes, or k, m, g (powers of 1024); 0: no limit."""
    m = _NGINX_SIZE.fullmatch(value.strip())
    if m is None:
        raise p.Invalid("a size: bytes ('1048576') or with k, m or g ('512k', '8m', '1g'); 0 for no limit")
    return int(m[1]) * 1024 ** " kmg".index(m[2].lower() or " ")


def _verify_client(value: str) -> str:
    v = value.strip().lower()
    if v == "optional_no_ca":
        raise p.Invalid("on, off or optional (optional_no_ca, a certificate accepted without verification, is not "
                        "supported: Envoy does not tell the backend that it was not verified, as nginx's "
                        "ssl-client-verify header does, so an unverified certificate would look verified)")
    if v not in ("on", "off", "optional"):
        raise p.Invalid("on, off or optional")
    return v


def _openssl_ciphers(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An OpenSSL cipher list of suite names separated by ':' (or commas, spaces): (the suites of the allow-list,
    in order; the names left out). Cipher string keywords (HIGH, !aNULL, EECDH+AESGCM) are not read."""
    names = [x for x in re.split(r"[:,\s]+", value.strip()) if x]
    accepted = ("cipher suite names separated by ':' (OpenSSL's names, e.g. 'ECDHE-ECDSA-AES128-GCM-SHA256:"
                "ECDHE-RSA-AES128-GCM-SHA256'); OpenSSL's keywords and operators (HIGH, !aNULL, +, @STRENGTH) are not "
                "read")
    if not names or len(names) > 64 or not all(re.fullmatch(r"[A-Z0-9_\-]{3,64}", x.upper()) and
                                               re.search(r"[A-Z0-9]-[A-Z0-9]|_", x.upper()) for x in names):
        raise p.Invalid(accepted)
    kept = tuple(dict.fromkeys(x.upper() for x in names if x.upper() in p.TLS12_CIPHER_SUITES))
    dropped = tuple(dict.fromkeys(x for x in names if x.upper() not in p.TLS12_CIPHER_SUITES))
    return kept, dropped


def _on_off_boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "off"):
        return v == "on"
    try:
        return p.boolean(v)
    except p.Invalid:
        raise p.Invalid("true, false, on or off") from None


def _boolean_text(value: str) -> bool:
    return p.boolean(value)


MAX_ERROR_CODES = 64


def _http_error_codes(value: str) -> tuple[int, ...]:
    """custom-http-errors: comma-separated HTTP statuses 400-599, each once (ingress-nginx reads 3-digit codes)."""
    accepted = (f"a comma-separated list of at most {MAX_ERROR_CODES} distinct HTTP statuses from 400 to 599 "
                "(e.g. '404,503')")
    parts = [x.strip() for x in value.split(",")]
    if not value.strip() or len(parts) > MAX_ERROR_CODES or not all(re.fullmatch(r"[45]\d\d", x) for x in parts):
        raise p.Invalid(accepted)
    codes = [int(x) for x in parts]
    if len(set(codes)) != len(codes):
        dup = sorted({c for c in codes if codes.count(c) > 1})
        raise p.Invalid(f"{accepted}; {', '.join(map(str, dup))} is listed twice")
    return tuple(sorted(codes))


# --- the table -------------------------------------------------------------------------------------------------

_X = "xds-ingress.io/"
_SVC_NOTE = ("applied to the clusters of the Services this Ingress routes to, which every Ingress routing to them "
             "shares (the oldest Ingress wins when they disagree, as ingress-nginx's upstreams)")


_RANGES_NOTE = ("the client address is the connection's peer, or with xds serve --xff-num-trusted-hops the "
                "X-Forwarded-For hop (nginx: its real-ip settings); a range with host bits set is read as its network "
                "(a warning); a list that cannot be read refuses every client (403, nginx: 503) until it is fixed")
_GLOBAL_NOTE = ("memcached is not used: global limits are counted by a rate limit service (xds serve "
                "--rate-limit-service) whose own configuration holds the limits, which an annotation cannot set")
_CONN_NOTE = ("needs xds serve --connection-limit-service HOST:PORT and the `xds connection-limiter` it names (Envoy "
              "asks it over ext_proc; without it the annotation is refused with a diagnostic); counted per limiter "
              "process (nginx: per controller pod), so Envoys sharing one limiter share the count; the limiter "
              "unreachable or slower than --connection-limit-timeout (200 ms): requests are not limited (fail open); "
              "limit-rps and limit-rpm "
              "refuse first, and a request they refuse takes no slot")
_LIMIT_NOTE = ("a token bucket per client address and per path (nginx: per Ingress) in each Envoy; over it 429 "
               "(nginx: 503, its limit-req-status-code) with x-ratelimit-* headers")


def _pending(name: str, group: str, doc: str, needs: str) -> Row:
    return Row(name=name, status=UNSUPPORTED, group=group, doc=doc, pending=True,
               note=f"needs {_X}{needs}, planned", replacement=f"{_X}{needs} (planned)")


def _snippet(name: str, doc: str, replacement: str) -> Row:
    return Row(name=name, status=UNSUPPORTED, group="Snippets", doc=doc, snippet=True,
               note="nginx configuration text is never executed", replacement=replacement)


def _none(name: str, group: str, doc: str, why: str, replacement: str = "") -> Row:
    return Row(name=name, status=UNSUPPORTED, group=group, doc=doc, note=why, replacement=replacement)


def _noop(name: str, group: str, doc: str, why: str, parse: p.Parser = _any, example: str = "") -> Row:
    """Accepted with no effect: what it tunes does not exist in Envoy (a stated difference)."""
    return Row(name=name, status=DIFFERENCE, group=group, doc=doc, note=why, parse=parse, key=NOOP, example=example)


TABLE: tuple[Row, ...] = (
    # -- paths and rewrites --
    Row(name="rewrite-target", status=DIFFERENCE, group="Paths and rewrites", parse=_rewrite_target,
        key="rewrite.target", example="/$2",
        doc="The whole path sent upstream is replaced by this, $1-$9 taken from the groups of the path's regex.",
        note="regexes are RE2 (the subset RE2 and PCRE read alike: no lookaround or backreferences); only $1-$9 "
             "of the nginx variables; makes every path of the host a case-insensitive regex, as ingress-nginx",
        replacement=f"{_X}rewrite-regex and rewrite-regex-substitution"),
    Row(name="use-regex", status=DIFFERENCE, group="Paths and rewrites", parse=p.boolean, key="nginx.use_regex",
        example="true",
        doc="The paths of the host are case-insensitive regexes anchored at the start, on every Ingress of the host.",
        note="RE2 instead of PCRE (no lookaround, backreferences or possessive repetition); a regex that is too "
             "large for Envoy is refused with a diagnostic"),
    Row(name="app-root", status=EXACT, group="Paths and rewrites", parse=p.url_path, key="nginx.app_root",
        example="/app1", doc="A request for `/` on the Ingress's hosts is redirected (302) to this path."),
    Row(name="x-forwarded-prefix", status=EXACT, group="Paths and rewrites", parse=p.header_value,
        key="nginx.x_forwarded_prefix", example="/api",
        doc="The header X-Forwarded-Prefix is set to this value on requests sent upstream.",
        replacement=f"{_X}request-headers-set"),
    Row(name="upstream-vhost", status=EXACT, group="Paths and rewrites", parse=p.host_port, key="rewrite.host",
        example="internal.example.com", doc="The Host header sent upstream.", replacement=f"{_X}rewrite-host"),
    Row(name="preserve-trailing-slash", status=DIFFERENCE, group="Paths and rewrites", parse=p.boolean, key=NOOP,
        example="true", doc="Keeps a trailing slash in the HTTPS redirect.",
        note="the HTTPS redirect always keeps the path as requested"),
    # -- redirects --
    Row(name="permanent-redirect", status=EXACT, group="Redirects", parse=_redirect, key="nginx.permanent_redirect",
        example="https://new.example.com$request_uri",
        doc="Every path of the Ingress redirects (301) to this URL; a URL ending in $request_uri keeps the "
            "request's path.", replacement=f"{_X}redirect-to"),
    Row(name="permanent-redirect-code", status=DIFFERENCE, group="Redirects", parse=_redirect_code,
        key="nginx.permanent_redirect_code", example="308", doc="The status of permanent-redirect.",
        note="301, 302, 303, 307 or 308 (not 300, 304, 305 or 306)", replacement=f"{_X}redirect-code"),
    Row(name="temporal-redirect", status=EXACT, group="Redirects", parse=_redirect, key="nginx.temporal_redirect",
        example="https://maintenance.example.com",
        doc="Every path of the Ingress redirects (302) to this URL; it takes precedence over permanent-redirect.",
        replacement=f"{_X}redirect-to"),
    Row(name="ssl-redirect", status=EXACT, group="Redirects", parse=p.boolean, key="ingress.ssl_redirect",
        example="false",
        doc="Plain HTTP to the hosts of the Ingress's spec.tls is redirected to HTTPS (default true), with 308.",
        replacement=f"{_X}ssl-redirect and ssl-redirect-code"),
    Row(name="force-ssl-redirect", status=EXACT, group="Redirects", parse=p.boolean,
        key="nginx.force_ssl_redirect", example="true",
        doc="Plain HTTP to the Ingress's hosts is redirected (308) to HTTPS even without a certificate here.",
        replacement=f"{_X}ssl-redirect-code"),
    Row(name="from-to-www-redirect", status=DIFFERENCE, group="Redirects", parse=p.boolean,
        key="nginx.from_to_www", example="true",
        doc="Requests for www.HOST redirect (308) to HOST, or for HOST to www.HOST, whichever the Ingress does not "
            "serve.",
        note="over HTTPS only when a certificate of spec.tls covers the other name too"),
    Row(name="server-alias", status=DIFFERENCE, group="Redirects", parse=_aliases, key="nginx.server_alias",
        example="www.example.com,example.net",
        doc="More host names served exactly like the Ingress's hosts.",
        note="over HTTPS only when a certificate of spec.tls covers the alias; an alias that another host or "
             "alias already has is ignored with a diagnostic"),
    # -- upstream --
    Row(name="backend-protocol", status=DIFFERENCE, group="Upstream", parse=_backend_protocol,
        key="nginx.backend_protocol", example="GRPC",
        doc="HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP to the backends.",
        note=_SVC_NOTE + "; HTTPS and GRPCS backends' certificates are not verified unless proxy-ssl-verify is on "
             "(as nginx); AUTO_HTTP is HTTP/1.1; AJP and FCGI are refused",
        replacement=f"{_X}upstream-protocol and upstream-tls on the Service"),
    Row(name="service-upstream", status=DIFFERENCE, group="Upstream", parse=_service_upstream,
        key="cluster.discovery", example="true",
        doc="The Service's ClusterIP is the upstream instead of its pods.", note=_SVC_NOTE,
        replacement=f"{_X}upstream: service on the Service"),
    Row(name="load-balance", status=DIFFERENCE, group="Upstream", parse=_load_balance, key="cluster.lb_policy",
        example="ewma", doc="round_robin or ewma.",
        note=_SVC_NOTE + "; ewma becomes Envoy's least-request (fewest active requests of two picked at random, "
             "not a latency average)", replacement=f"{_X}load-balancer on the Service"),
    Row(name="upstream-hash-by", status=DIFFERENCE, group="Upstream", parse=_hash_by, key="nginx.upstream_hash_by",
        example="$remote_addr",
        doc="Consistent hashing of the requests by an nginx variable.",
        note=_SVC_NOTE + "; one variable only ($remote_addr, $request_uri, $host, $http_NAME, $cookie_NAME); Envoy's "
             "ring hash; $cookie_NAME sets the cookie when the request has none",
        replacement=f"{_X}hash-by on the Service"),
    Row(name="affinity", status=DIFFERENCE, group="Upstream", parse=_affinity, key="nginx.affinity",
        example="cookie",
        doc="Session affinity by a cookie the proxy sets (INGRESSCOOKIE unless session-cookie-name).",
        note=_SVC_NOTE + "; the cookie's value is Envoy's hash, and its path is / unless session-cookie-path",
        replacement=f"{_X}hash-by: cookie:NAME on the Service"),
    Row(name="affinity-mode", status=DIFFERENCE, group="Upstream", parse=p.one_of("balanced", "persistent"),
        key=NOOP, example="persistent", doc="balanced (default) or persistent stickiness.",
        note="Envoy's ring hash behaves as balanced: when endpoints are added a few sessions move"),
    Row(name="session-cookie-name", status=EXACT, group="Upstream", parse=p.cookie_name,
        key="nginx.session_cookie_name", example="route", doc="The name of the affinity cookie."),
    Row(name="session-cookie-max-age", status=EXACT, group="Upstream", parse=_seconds(0, 31_536_000),
        key="nginx.session_cookie_max_age", example="172800", doc="The affinity cookie's lifetime in seconds."),
    Row(name="session-cookie-expires", status=DIFFERENCE, group="Upstream", parse=_seconds(0, 31_536_000),
        key="nginx.session_cookie_expires", example="172800",
        doc="The affinity cookie's lifetime in seconds (legacy).", note="sets Max-Age, like session-cookie-max-age"),
    Row(name="session-cookie-path", status=DIFFERENCE, group="Upstream", parse=p.url_path,
        key="nginx.session_cookie_path", example="/shop", doc="The Path attribute of the affinity cookie.",
        note="without it the path is / (nginx: the Ingress path)", replacement=f"{_X}hash-cookie-path on the Service"),
    Row(name="session-cookie-samesite", status=EXACT, group="Upstream", parse=p.same_site,
        key="nginx.session_cookie_samesite", example="Lax",
        doc="The SameSite attribute of the affinity cookie: Strict, Lax or None.",
        replacement=f"{_X}hash-cookie-samesite on the Service"),
    Row(name="session-cookie-secure", status=DIFFERENCE, group="Upstream", parse=p.boolean,
        key="nginx.session_cookie_secure", example="true",
        doc="The affinity cookie is Secure (nginx also makes it Secure on HTTPS requests).",
        note="Secure only with this annotation: Envoy sets one cookie for HTTP and HTTPS alike",
        replacement=f"{_X}hash-cookie-secure on the Service"),
    Row(name="session-cookie-domain", status=EXACT, group="Upstream", parse=p.dns_name,
        key="nginx.session_cookie_domain", example="example.com", doc="The Domain attribute of the affinity cookie.",
        replacement=f"{_X}hash-cookie-domain on the Service"),
    _none("session-cookie-change-on-failure", "Upstream", "A new affinity cookie after the backend failed.",
          "Envoy's cookie hash keeps the cookie; a failed endpoint is skipped by the ring"),
    _none("session-cookie-conditional-samesite-none", "Upstream", "SameSite=None only for browsers that accept it.",
          "browser sniffing is not done"),
    _none("affinity-canary-behavior", "Upstream", "Whether affinity keeps users on a canary.",
          "a canary's share is chosen per request, before affinity"),
    _none("upstream-hash-by-subset", "Upstream", "Hashes to a subset of the endpoints.",
          "Envoy's ring hash picks one endpoint", f"{_X}hash-by"),
    _none("upstream-hash-by-subset-size", "Upstream", "The size of the subsets of upstream-hash-by-subset.",
          "Envoy's ring hash picks one endpoint", f"{_X}hash-by"),
    Row(name="proxy-ssl-secret", status=DIFFERENCE, group="Upstream", parse=_namespaced_secret,
        key="nginx.proxy_ssl_secret", example="default/backend-ca",
        doc="A Secret whose ca.crt verifies HTTPS backends (with proxy-ssl-verify on) and whose tls.crt and tls.key "
            "are a client certificate.",
        note=_SVC_NOTE + "; the Secret must be in the Ingress's namespace (with proxy-ssl-verify on, another "
             "namespace's makes requests to the HTTPS backends answer 503, never unverified); its client certificate "
             "is not sent",
        replacement=f"{_X}upstream-tls-ca-secret on the Service"),
    Row(name="proxy-ssl-verify", status=EXACT, group="Upstream", parse=_on_off, key="nginx.proxy_ssl_verify",
        example="on", doc="Verify HTTPS backends' certificates against proxy-ssl-secret's ca.crt (default off); "
                          "without a usable CA, requests to them fail (here 503)."),
    Row(name="proxy-ssl-name", status=DIFFERENCE, group="Upstream", parse=p.dns_name, key="tls.sni",
        example="api.internal", doc="The name sent (SNI) to, and verified in the certificate of, HTTPS backends.",
        note=_SVC_NOTE, replacement=f"{_X}upstream-tls-sni on the Service"),
    Row(name="proxy-ssl-server-name", status=DIFFERENCE, group="Upstream", parse=_on_off, key=NOOP, example="on",
        doc="Send SNI to HTTPS backends.", note="SNI is sent whenever proxy-ssl-name gives a name"),
    _none("proxy-ssl-verify-depth", "Upstream", "Depth of backend certificate chains.",
          "Envoy verifies chains of any depth up to its CA"),
    _none("proxy-ssl-ciphers", "Upstream", "Ciphers towards HTTPS backends.", "Envoy's defaults (TLS 1.2+) are used"),
    _none("proxy-ssl-protocols", "Upstream", "TLS versions towards HTTPS backends.",
          "Envoy uses TLS 1.2 and 1.3 towards backends"),
    # -- timeouts and retries --
    Row(name="proxy-connect-timeout", status=DIFFERENCE, group="Timeouts and retries", parse=_seconds(1, 300),
        key="cluster.connect_timeout", example="10", doc="Time to connect to a backend (seconds, default 5).",
        note=_SVC_NOTE, replacement=f"{_X}connect-timeout on the Service"),
    Row(name="proxy-read-timeout", status=DIFFERENCE, group="Timeouts and retries", parse=_seconds(1, 86_400),
        key="nginx.proxy_read_timeout", example="120",
        doc="Longest wait between two reads from the backend (seconds, default 60).",
        note="becomes the stream's idle timeout (no data either way for this long), the larger of "
             "proxy-read-timeout and proxy-send-timeout; the whole-request timeout is then off, as nginx has none",
        replacement=f"{_X}idle-timeout"),
    Row(name="proxy-send-timeout", status=DIFFERENCE, group="Timeouts and retries", parse=_seconds(1, 86_400),
        key="nginx.proxy_send_timeout", example="120",
        doc="Longest wait between two writes to the backend (seconds, default 60).",
        note="becomes the stream's idle timeout, the larger of proxy-read-timeout and proxy-send-timeout",
        replacement=f"{_X}idle-timeout"),
    Row(name="proxy-next-upstream", status=DIFFERENCE, group="Timeouts and retries", parse=_next_upstream,
        key="nginx.next_upstream", example="error timeout http_502",
        doc="When a request is passed to the next backend: error, timeout, invalid_header, http_5xx codes, off.",
        note="error and timeout become Envoy's connect-failure, refused-stream and reset; http_NNN retriable status "
             "codes; Envoy retries non-idempotent requests (POST) too, and retries only what was set here "
             "(nginx's default 'error timeout' is not implied)",
        replacement=f"{_X}retry-on and retriable-status-codes"),
    Row(name="proxy-next-upstream-tries", status=EXACT, group="Timeouts and retries", parse=_tries,
        key="retry.num_retries", example="3", doc="Attempts in all, the first one included (0 is not accepted).",
        replacement=f"{_X}retries (one less)"),
    _none("proxy-next-upstream-timeout", "Timeouts and retries", "Time limit for passing a request on.",
          "Envoy bounds every attempt with the request timeout", f"{_X}request-timeout and per-try-timeout"),
    # -- canary --
    Row(name="canary", status=EXACT, group="Canary", parse=p.boolean, key="canary.enabled", example="true",
        doc="This Ingress is the canary of the Ingress with the same host and path.", replacement=f"{_X}canary"),
    Row(name="canary-weight", status=EXACT, group="Canary", parse=p.integer(0, 1_000_000), key="canary.weight",
        example="20", doc="Share of requests sent to the canary, out of canary-weight-total."),
    Row(name="canary-weight-total", status=EXACT, group="Canary", parse=p.integer(1, 1_000_000),
        key="canary.weight_total", example="100", doc="What canary-weight is a share of (default 100)."),
    Row(name="canary-by-header", status=EXACT, group="Canary", parse=lambda v: p.header_name(v, request=True),
        key="canary.header", example="x-canary",
        doc="A request with this header `always` goes to the canary, `never` never does."),
    Row(name="canary-by-header-value", status=EXACT, group="Canary", parse=p.header_value,
        key="canary.header_value", example="beta", doc="The value of canary-by-header that selects the canary."),
    Row(name="canary-by-header-pattern", status=DIFFERENCE, group="Canary", parse=_header_pattern,
        key="canary.header_pattern", example="^(beta|alpha)$",
        doc="A regex the value of canary-by-header matches to select the canary.",
        note="RE2 instead of PCRE; a regex nginx could not compile is refused here instead of never matching"),
    Row(name="canary-by-cookie", status=EXACT, group="Canary", parse=p.cookie_name, key="canary.cookie",
        example="canary", doc="A request with this cookie `always` goes to the canary, `never` never does."),
    # -- mirroring --
    Row(name="mirror-target", status=DIFFERENCE, group="Mirroring", parse=_mirror_target, key="nginx.mirror_target",
        example="http://shadow.default.svc.cluster.local:8080$request_uri",
        doc="A copy of each request goes to this URL; its answers are discarded.",
        note="only a Service of the Ingress's namespace (SERVICE[.NAMESPACE[.svc[.cluster.local]]]); the copy's "
             "Host is the request's with -shadow appended",
        replacement=f"{_X}mirror-service"),
    Row(name="mirror-request-body", status=DIFFERENCE, group="Mirroring", parse=_on_off, key=NOOP, example="on",
        doc="Whether the copy carries the body (default on).", note="the body is always mirrored"),
    _none("mirror-host", "Mirroring", "The Host of the mirrored copy.",
          "the copy's Host is the request's with -shadow appended"),
    # -- headers, errors, backends --
    Row(name="custom-headers", status=DIFFERENCE, group="Headers and errors", parse=_namespaced_config_map,
        key="nginx.custom_headers", example="default/security-headers",
        doc="Response headers from a ConfigMap ('namespace/name'): each key a header, its value the value.",
        note="only a ConfigMap of the Ingress's namespace; as ingress-nginx, a header must be allowed by the "
             "operator (xds serve --global-allowed-response-headers, ingress-nginx's global-allowed-response-headers; "
             "none by default; names compared without case here), and names must be tokens other than hop-by-hop "
             "headers, Host and x-envoy-*, values printable text (sent as written: no nginx variables); a missing "
             "ConfigMap or a refused header: no header of it is set and the paths are still served, with a diagnostic "
             "naming the key (nginx: the paths answer 503); a change of the ConfigMap applies at once; "
             f"{_X}response-headers-set wins over it",
        replacement=f"{_X}response-headers-set with the headers written out"),
    Row(name="custom-http-errors", status=DIFFERENCE, group="Headers and errors", parse=_http_error_codes,
        key="errors.codes", example="404,503",
        doc="Upstream error statuses answered by the default-backend Service instead.",
        note="the error backend is default-backend's Service, else xds serve --default-backend-service (without "
             "either, errors pass through, with a warning); it is asked GET / (nginx repeats the request's method) "
             "with Host and ingress-nginx's X-Code, X-Format, X-Original-URI (the path as Envoy normalized "
             "it), X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port and X-Request-ID, not the client's "
             "other headers; the client gets its status, Content-Type and body, and the original answer's other "
             "headers; when it cannot be reached or does not answer within "
             f"{ir.ERROR_BACKEND_TIMEOUT_MS // 1000} s the original error passes through (nginx: its own error "
             f"page), as it does when the error page is over {ir.ERROR_PAGE_MAX_BODY // 1024} KiB (it is held in "
             "memory); Envoy answers 503 when it cannot connect to the backend (nginx: 502) and 504 on timeouts; an "
             f"original body over {ir.ERROR_PAGE_MAX_ORIGINAL_BODY // 1024} KiB by its Content-Length passes through "
             "unchanged, and one sent chunked past the 32 KiB buffer gets Envoy's 500; gRPC requests are not "
             "intercepted (nginx: not for grpc_pass); statuses refused before the upstream (401 of authentication, "
             "403 of address lists, 413, 429) are not replaced"),
    Row(name="default-backend", status=DIFFERENCE, group="Headers and errors", parse=_service_name,
        key="fallback.service", example="errors",
        doc="A Service of the Ingress's namespace (its first port) that serves the Ingress's paths whose Service "
            "has no active endpoint (and custom-http-errors).",
        note="an aggregate cluster per path's Service: Envoy sends to the default-backend Service while the "
             "path's has no healthy endpoint (none ready, or all failing their health checks), and a share when only "
             "some are healthy (its priority spill-over), without ingress-nginx's X-Code and X-* headers; nginx "
             "decides from the ready endpoints when its configuration is built; it is also the error backend of "
             "custom-http-errors"),
    _none("proxy-intercept-errors", "Headers and errors", "Errors answered by nginx instead of the backend.",
          "ingress-nginx's annotation parsers do not read it: whether upstream errors are intercepted follows "
          "custom-http-errors and disable-proxy-intercept-errors, both translated", "disable-proxy-intercept-errors"),
    Row(name="disable-proxy-intercept-errors", status=DIFFERENCE, group="Headers and errors", parse=p.boolean,
        key="errors.upstream_off", example="true",
        doc="With custom-http-errors, the backend's own error answers pass through; only the proxy's errors in "
            "reaching it go to the error backend.",
        note="the proxy's errors are Envoy's: 503 when it cannot connect (nginx: 502), 504 on timeouts"),
    _none("proxy-cookie-domain", "Headers and errors", "Rewrites the Domain of Set-Cookie headers.",
          "Set-Cookie headers are not rewritten"),
    _none("proxy-cookie-path", "Headers and errors", "Rewrites the Path of Set-Cookie headers.",
          "Set-Cookie headers are not rewritten"),
    _none("proxy-redirect-from", "Headers and errors", "Rewrites Location headers of the backend's redirects.",
          "Location headers are not rewritten"),
    _none("proxy-redirect-to", "Headers and errors", "Rewrites Location headers of the backend's redirects.",
          "Location headers are not rewritten"),
    _noop("connection-proxy-header", "Headers and errors", "The Connection header sent upstream.",
          "Envoy manages connection headers itself", example="keep-alive"),
    # -- security (being built for xds-ingress.io/ on other branches) --
    Row(name="enable-cors", status=DIFFERENCE, group="CORS", parse=p.boolean, key="nginx.enable_cors",
        example="true",
        doc="Answers CORS preflights and adds CORS headers (by default for every origin, with ingress-nginx's "
            "default methods, headers, credentials and max age).",
        note="Envoy answers the preflights (OPTIONS with Origin and Access-Control-Request-Method) of allowed origins "
             "with 200 (nginx: 204) and puts the methods, headers and max age on preflights only; the allowed origin "
             "is echoed, also for '*' (nginx: '*'), so with '*' credentials are not allowed (browsers refuse nginx's "
             "'*' with credentials too)",
        replacement=f"{_X}cors-allow-origins and the cors-* family"),
    Row(name="cors-allow-origin", status=DIFFERENCE, group="CORS", parse=_cors_origins,
        key="nginx.cors_allow_origin", example="https://app.example.com, https://*.example.com",
        doc="Origins allowed: 'https://host[:port]', 'https://*.host' or '*' (the default).",
        note="an origin nginx would skip (not http(s)://host[:port]) refuses the whole list, and then no CORS is "
             "answered (never every origin instead); '*.host' is one label, as nginx's", replacement=f"{_X}cors-allow-origins"),
    Row(name="cors-allow-methods", status=EXACT, group="CORS", parse=_cors_methods, key="nginx.cors_allow_methods",
        example="GET, PUT, POST", doc="Methods a preflight allows (default GET, PUT, POST, DELETE, PATCH, OPTIONS).",
        replacement=f"{_X}cors-allow-methods"),
    Row(name="cors-allow-headers", status=EXACT, group="CORS", parse=_cors_headers, key="nginx.cors_allow_headers",
        example="X-Forwarded-For, X-app123-XPTO",
        doc="Request headers a preflight allows (default DNT, Keep-Alive, User-Agent, X-Requested-With, "
            "If-Modified-Since, Cache-Control, Content-Type, Range, Authorization).",
        replacement=f"{_X}cors-allow-headers"),
    Row(name="cors-expose-headers", status=EXACT, group="CORS", parse=_cors_expose, key="nginx.cors_expose_headers",
        example="*, X-CustomResponseHeader", doc="Response headers the page may read (default none).",
        replacement=f"{_X}cors-expose-headers"),
    Row(name="cors-allow-credentials", status=DIFFERENCE, group="CORS", parse=p.boolean,
        key="nginx.cors_allow_credentials", example="false",
        doc="Whether requests with credentials are allowed (default true).",
        note="not with cors-allow-origin '*' (browsers refuse credentials with nginx's '*' as well)",
        replacement=f"{_X}cors-allow-credentials"),
    Row(name="cors-max-age", status=EXACT, group="CORS", parse=p.integer(0, 31_536_000), key="nginx.cors_max_age",
        example="600", doc="How long a preflight's answer may be cached, in seconds (default 1728000).",
        replacement=f"{_X}cors-max-age"),
    Row(name="auth-type", status=DIFFERENCE, group="Authentication", parse=p.one_of("basic", "digest"),
        key="nginx.auth_type", example="basic",
        doc="basic (or digest) authentication of every path of the Ingress against the users of auth-secret.",
        note="a request without valid credentials gets 401 with the realm, as in ingress-nginx; digest is refused "
             "(Envoy has no digest authentication), and so is auth-secret without "
             "auth-type (ingress-nginx would serve that Ingress without authentication): the paths answer 503",
        replacement=f"{_X}basic-auth-secret"),
    Row(name="auth-secret", status=DIFFERENCE, group="Authentication", parse=_namespaced_secret,
        key="nginx.auth_secret", example="basic-auth",
        doc="The Secret of the users ('name' or 'namespace/name'): htpasswd lines in its key auth, or a key per "
            "user (auth-secret-type).",
        note="Envoy checks SHA-1 hashes only ({SHA}, made by `htpasswd -s`): a user hashed with apr1 ($apr1$, "
             "htpasswd's default), bcrypt or crypt cannot log in (a diagnostic names the line), and a Secret without "
             "a usable user makes the paths answer 503: re-hash the passwords with `htpasswd -s`; a Secret of "
             "another namespace is refused (503); the backend gets the user in x-forwarded-user, not the "
             "Authorization header",
        replacement=f"{_X}basic-auth-secret"),
    Row(name="auth-secret-type", status=EXACT, group="Authentication", parse=p.one_of("auth-file", "auth-map"),
        key="nginx.auth_secret_type", example="auth-map",
        doc="auth-file (the default: htpasswd lines in the Secret's key auth) or auth-map (each key of the Secret "
            "a user, its value the password hash).", replacement=f"{_X}basic-auth-secret (an auth file)"),
    Row(name="auth-realm", status=DIFFERENCE, group="Authentication", parse=auth.realm, key="nginx.auth_realm",
        example="Authentication Required", doc="The realm of the 401 answer's WWW-Authenticate header.",
        note="without it the realm is Envoy's default (the request's URL); a realm with '\"' or '\\' or of more "
             "than 128 characters is refused and the default applies", replacement=f"{_X}basic-auth-realm"),
    Row(name="auth-url", status=DIFFERENCE, group="Authentication", parse=_auth_url, key="nginx.auth_url",
        example="http://auth.default.svc.cluster.local:8080/verify",
        doc="An HTTP service asked about every request first: a 2xx answer lets it through, a 401 or 403 is the "
            "client's answer.",
        note="only a Service of the Ingress's namespace, by its in-cluster URL (http://SERVICE[.NAMESPACE[.svc["
             ".cluster.local]]][:PORT][/PATH]); any other URL (another namespace, an outside host, https, a query, "
             "nginx variables such as $host) is refused and the paths answer 503: reach another service through an "
             "ExternalName Service of the namespace, or use xds serve --auth-service. Envoy asks PATH followed by "
             "the request's path (nginx: PATH), with the request's method, Host, Authorization, Cookie, "
             f"X-Auth-Request-Redirect and the headers of {_X}auth-request-headers (nginx: every header, and "
             "X-Original-URL, X-Original-Method); any answer other than 2xx is the client's (nginx: 500 for other "
             "than 401 and 403), an unreachable service 403 (nginx: 500); the Set-Cookie of a 2xx answer reaches the client, "
             "as nginx's", replacement=f"{_X}auth-url"),
    Row(name="auth-response-headers", status=DIFFERENCE, group="Authentication", parse=_auth_response_headers,
        key="nginx.auth_response_headers", example="X-Auth-Request-User, X-Auth-Request-Email",
        doc="Headers of the auth-url's answer set on the request sent upstream.",
        note="the client's own headers of these names are removed before the check, so a client cannot send them "
             "itself (nginx replaces them; neither sends a header the answer lacks), except Authorization and "
             "Cookie, which the check reads: those the answer replaces, and without them in the answer the "
             "client's go upstream (nginx: none)", replacement=f"{_X}auth-response-headers"),
    _noop("auth-method", "Authentication", "The method of the auth-url request (default: the request's).",
          "the authorization request always has the client request's method (Envoy's external authorization "
          "cannot set another)", parse=_http_method, example="GET"),
    Row(name="auth-signin", status=DIFFERENCE, group="Authentication", parse=signin.signin_url,
        key="nginx.auth_signin", example="https://$host/oauth2/start?rd=$escaped_request_uri",
        doc="Where a request the auth-url refuses with 401 is redirected to sign in (302), with "
            "rd=$pass_access_scheme://$http_host$escaped_request_uri appended unless the URL has rd.",
        note="nginx variables in the URL: only $host, $http_host, $best_http_host (the Host header: X-Forwarded-Host "
             "is not trusted), $scheme, $pass_access_scheme, $request_uri and $escaped_request_uri; another variable "
             "makes the annotation refused, and then the auth-url's 401 is the client's answer (authentication still "
             "applies); $request_uri is the path Envoy routes (normalized: /a/../b is /b, non-ASCII bytes "
             "percent-encoded) and not the raw request line; only the service's 401 is redirected, with its "
             "Set-Cookie (never an upstream's 401); the service's other headers do not reach the client on a refusal "
             "(also a 403) but its Content-Type and Set-Cookie; needs auth-url"),
    Row(name="auth-signin-redirect-param", status=EXACT, group="Authentication", parse=signin.redirect_param,
        key="nginx.auth_signin_redirect_param", example="redirect_uri",
        doc="The query parameter of auth-signin that carries the original URL (default rd)."),
    Row(name="auth-request-redirect", status=DIFFERENCE, group="Authentication", parse=signin.request_redirect,
        key="nginx.auth_request_redirect", example="$scheme://$host$request_uri",
        doc="The X-Auth-Request-Redirect header sent to the auth-url (default $request_uri).",
        note="the variables of auth-signin only; not sent to a Service that speaks gRPC (appProtocol or "
             "upstream-protocol)"),
    _noop("auth-cache-key", "Authentication", "Caches the auth-url's answers under this key.",
          "answers are not cached: every request is asked", example="$remote_user$http_authorization"),
    _noop("auth-cache-duration", "Authentication", "How long the auth-url's answers are cached, per status.",
          "answers are not cached: every request is asked", example="200 202 401 5m"),
    Row(name="auth-proxy-set-headers", status=DIFFERENCE, group="Authentication", parse=_namespaced_config_map,
        key="nginx.auth_proxy_set_headers", example="default/auth-headers",
        doc="Headers added to the auth-url request, from a ConfigMap ('namespace/name'): each key a header, its "
            "value the value.",
        note="only a ConfigMap of the Ingress's namespace, with an auth-url of an HTTP service; values may use the "
             "nginx variables $http_NAME, $http_host, $request_uri (as Envoy normalized it), $request_method, "
             "$remote_addr and $scheme, no other ($host: use $http_host, which keeps a port the client sent); a "
             "missing ConfigMap, another namespace's, a header name that is not a token (or hop-by-hop, Host, "
             "x-envoy-*) or another variable makes the paths answer 503, as ingress-nginx; a change of the ConfigMap "
             "applies at once", replacement=f"{_X}auth-request-headers (headers of the client's request it receives)"),
    _noop("auth-keepalive", "Authentication", "Idle keep-alive connections to the auth-url's host.",
          "Envoy keeps connections to the authorization service's cluster itself", example="10"),
    _noop("auth-keepalive-share-vars", "Authentication", "Whether keep-alive auth requests share variables.",
          "Envoy keeps connections to the authorization service's cluster itself", parse=p.boolean,
          example="false"),
    _noop("auth-keepalive-requests", "Authentication", "Requests per keep-alive connection to the auth-url.",
          "Envoy keeps connections to the authorization service's cluster itself", example="1000"),
    _noop("auth-keepalive-timeout", "Authentication", "Idle timeout of keep-alive connections to the auth-url.",
          "Envoy keeps connections to the authorization service's cluster itself", example="60"),
    _noop("auth-always-set-cookie", "Authentication", "The Set-Cookie of the auth-url's answer reaches the client "
          "also when it refuses.", "the cookies of a refusing answer always reach the client (Envoy passes every "
          "header of a refusal), as with \"true\"", parse=p.boolean, example="true"),
    Row(name="enable-global-auth", status=DIFFERENCE, group="Authentication", parse=p.boolean,
        key="nginx.enable_global_auth", example="false",
        doc="\"false\": the global authorization service (the ConfigMap's global-auth-url) does not check this "
            "Ingress.",
        note="the global authorization service is xds serve --auth-service", replacement=f"{_X}auth: \"off\""),
    Row(name="auth-tls-secret", status=DIFFERENCE, group="Client certificates", parse=_namespaced_secret,
        key="nginx.auth_tls_secret", example="default/client-ca",
        doc="Mutual TLS: clients of the Ingress's TLS hosts must present a certificate signed by a CA of this "
            "Secret's ca.crt ('namespace/name').",
        note="the Secret must be in the Ingress's namespace (another namespace is refused, and then its hosts are "
             "not served over HTTPS at all); a client without a valid certificate fails the TLS handshake (nginx "
             "completes it and answers 400)",
        replacement=f"{_X}client-ca-secret"),
    Row(name="auth-tls-verify-client", status=DIFFERENCE, group="Client certificates", parse=_verify_client,
        key="nginx.auth_tls_verify_client", example="optional",
        doc="on (the default: a certificate is required), optional (verified when sent) or off.",
        note="optional_no_ca is refused (the default, on, applies): Envoy would forward an unverified certificate "
             "without nginx's ssl-client-verify header saying so", replacement=f"{_X}client-cert-verify"),
    Row(name="auth-tls-verify-depth", status=DIFFERENCE, group="Client certificates", parse=p.integer(1, 16),
        key="nginx.auth_tls_verify_depth", example="2",
        doc="Intermediate CA certificates accepted between a client certificate and the CA (default 1).",
        note="as nginx with OpenSSL 1.1 and later (the trust anchor not counted); Envoy's max_verify_depth is one more"),
    Row(name="auth-tls-pass-certificate-to-upstream", status=DIFFERENCE, group="Client certificates",
        parse=p.boolean, key="nginx.auth_tls_pass_certificate", example="true",
        doc="The client certificate is sent upstream (in the header ssl-client-cert).",
        note="the header is x-forwarded-client-cert (Hash, Subject, URI and DNS SANs, and the URL-encoded PEM as "
             "Cert), not nginx's ssl-client-cert; nginx's ssl-client-verify, ssl-client-subject-dn and "
             "ssl-client-issuer-dn headers are not sent", replacement=f"{_X}client-cert-forward"),
    _none("auth-tls-match-cn", "Client certificates", "Only client certificates whose subject matches this CN regex.",
          "Envoy cannot match the subject of a client certificate: with client certificates asked for "
          "(auth-tls-secret), the Ingress's paths answer 503 rather than admit every certificate the CA signed",
          "a CA (auth-tls-secret) that signs only the certificates to admit"),
    _none("auth-tls-error-page", "Client certificates", "Where a failed client certificate is redirected.",
          "a failed client certificate fails the request"),
    Row(name="whitelist-source-range", status=DIFFERENCE, group="Access and rate limits", parse=_address_ranges,
        key="nginx.whitelist_source_range", example="10.0.0.0/8, 192.168.1.7",
        doc="Only these client addresses (CIDRs) are served; the others get 403.",
        note=_RANGES_NOTE, replacement=f"{_X}allow-source-ranges"),
    Row(name="allowlist-source-range", status=DIFFERENCE, group="Access and rate limits", parse=_address_ranges,
        key="nginx.allowlist_source_range", example="10.0.0.0/8",
        doc="Only these client addresses (CIDRs) are served; the others get 403 (the new name of "
            "whitelist-source-range, which it wins over).",
        note=_RANGES_NOTE, replacement=f"{_X}allow-source-ranges"),
    Row(name="denylist-source-range", status=DIFFERENCE, group="Access and rate limits", parse=_address_ranges,
        key="nginx.denylist_source_range", example="203.0.113.0/24",
        doc="These client addresses (CIDRs) get 403.", note=_RANGES_NOTE, replacement=f"{_X}deny-source-ranges"),
    Row(name="limit-rps", status=DIFFERENCE, group="Access and rate limits", parse=p.integer(1, 100_000),
        key="nginx.limit_rps", example="5",
        doc="Requests per second from one client address; limit-burst-multiplier times as many at once.",
        note=_LIMIT_NOTE, replacement=f"{_X}rate-limit: N/s, rate-limit-burst, rate-limit-key: client-ip"),
    Row(name="limit-rpm", status=DIFFERENCE, group="Access and rate limits", parse=p.integer(1, 100_000),
        key="nginx.limit_rpm", example="300",
        doc="Requests per minute from one client address; limit-burst-multiplier times as many at once.",
        note=_LIMIT_NOTE + "; with limit-rps too, only the lower rate applies (nginx applies both)",
        replacement=f"{_X}rate-limit: N/m, rate-limit-burst, rate-limit-key: client-ip"),
    Row(name="limit-burst-multiplier", status=EXACT, group="Access and rate limits", parse=p.integer(1, 100),
        key="nginx.limit_burst_multiplier", example="3",
        doc="The burst of limit-rps and limit-rpm: the rate times this (default 5); nginx then admits one request "
            "more at once, and so does the bucket here.", replacement=f"{_X}rate-limit-burst"),
    Row(name="limit-connections", status=DIFFERENCE, group="Access and rate limits", parse=p.integer(1, 100_000),
        key="nginx.limit_connections", example="10",
        doc="Requests in progress at once from one client address on the Ingress's paths (each HTTP/2 stream "
            "counts); 503 above.",
        note=_CONN_NOTE),
    Row(name="limit-whitelist", status=DIFFERENCE, group="Access and rate limits", parse=_address_ranges,
        key="nginx.limit_whitelist", example="10.0.0.0/8, 192.168.0.0/16",
        doc="Client addresses (CIDRs) that limit-rps, limit-rpm and limit-connections do not count.",
        note="the client address is the connection's peer, or with xds serve --xff-num-trusted-hops the "
             "X-Forwarded-For hop (nginx: its real-ip settings); a range with host bits set is read as its network "
             "(a warning)", replacement=f"{_X}rate-limit-exempt-ranges"),
    _none("limit-rate", "Access and rate limits", "Kilobytes per second sent to one connection.",
          "bandwidth limits are not supported"),
    _none("limit-rate-after", "Access and rate limits", "Kilobytes sent before limit-rate applies.",
          "bandwidth limits are not supported"),
    _none("global-rate-limit", "Access and rate limits", "Requests per window counted in memcached.",
          _GLOBAL_NOTE, f"{_X}global-rate-limit (the limits in the rate limit service), or rate-limit per Envoy"),
    _none("global-rate-limit-window", "Access and rate limits", "The window of global-rate-limit.", _GLOBAL_NOTE,
          f"{_X}global-rate-limit"),
    _none("global-rate-limit-key", "Access and rate limits", "The key of global-rate-limit.", _GLOBAL_NOTE,
          f"{_X}global-rate-limit"),
    _none("global-rate-limit-ignored-cidrs", "Access and rate limits", "Addresses exempt from global-rate-limit.",
          _GLOBAL_NOTE, f"{_X}global-rate-limit"),
    _none("satisfy", "Access and rate limits", "any: either the address list or authentication admits a request.",
          "every configured check applies (all)"),
    Row(name="proxy-body-size", status=DIFFERENCE, group="Bodies and buffers", parse=_body_size,
        key="nginx.proxy_body_size", example="8m",
        doc="Largest request body accepted (413 above); 0 for no limit.",
        note="Envoy buffers the body of these paths in memory up to the limit before it goes upstream (nginx "
             "buffers it too, on disk beyond client-body-buffer-size), so limits above 64m are not enforced (a "
             "warning; bodies then stream, as with 0); ingress-nginx's default of 1m (its ConfigMap) is not applied",
        replacement=f"{_X}max-request-body"),
    _noop("client-body-buffer-size", "Bodies and buffers", "Memory buffer for request bodies.",
          "Envoy streams bodies through bounded buffers", example="1m"),
    _noop("proxy-buffering", "Bodies and buffers", "Whether responses are buffered.",
          "Envoy streams responses", example="off"),
    _noop("proxy-request-buffering", "Bodies and buffers", "Whether request bodies are buffered.",
          "Envoy streams requests", example="off"),
    _noop("proxy-buffer-size", "Bodies and buffers", "Buffer for the response headers.",
          "Envoy's header limits apply", example="8k"),
    _noop("proxy-buffers-number", "Bodies and buffers", "Number of response buffers.", "Envoy streams responses",
          example="4"),
    _noop("proxy-max-temp-file-size", "Bodies and buffers", "Largest response spooled to disk.",
          "Envoy never spools to disk", example="1024m"),
    _noop("proxy-http-version", "Bodies and buffers", "HTTP version to the backends (1.0 or 1.1).",
          "HTTP/1.1 (or HTTP/2 with backend-protocol GRPC)", example="1.1"),
    # -- TLS and other listeners --
    Row(name="ssl-passthrough", status=DIFFERENCE, group="TLS", parse=p.boolean, key=NOOP, example="true",
        doc="TLS connections for the Ingress's hosts go to the backend undecrypted, chosen by SNI: the backend of "
            "the rule's path `/` (else its first path).",
        note="always on (ingress-nginx needs --enable-ssl-passthrough); the host's certificate in spec.tls, if any, "
             "is not used; plain HTTP to the host is still routed by its paths"),
    Row(name="ssl-ciphers", status=DIFFERENCE, group="TLS", parse=_openssl_ciphers, key="nginx.ssl_ciphers",
        example="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
        doc="TLS 1.2 cipher suites offered to clients of the Ingress's TLS hosts (an OpenSSL cipher list).",
        note="only names of the allow-list (" + ", ".join(p.TLS12_CIPHER_SUITES) + ") are offered, in the order "
             "given; others (DHE, CBC, RSA key exchange, TLS 1.3 names) are left out with a diagnostic, and "
             "OpenSSL's keywords (HIGH, !aNULL) are refused", replacement=f"{_X}tls-cipher-suites"),
    _noop("ssl-prefer-server-ciphers", "TLS", "Whether the server's cipher order is preferred.",
          "the server's order is always preferred (as 'true')", parse=_on_off_boolean, example="true"),
    _noop("http2-push-preload", "TLS", "HTTP/2 server push of preload links.", "browsers dropped HTTP/2 push",
          parse=p.boolean, example="false"),
    # -- observability --
    _noop("enable-access-log", "Observability", "Access logs of this Ingress.",
          "Envoy's access log is configured for the whole proxy", parse=p.boolean, example="false"),
    _noop("enable-rewrite-log", "Observability", "Logs of rewrites.", "there is no rewrite log",
          parse=p.boolean, example="true"),
    _noop("enable-opentracing", "Observability", "OpenTracing spans.", "tracing is configured for the whole proxy",
          parse=p.boolean, example="true"),
    _noop("enable-opentelemetry", "Observability", "OpenTelemetry spans.", "tracing is configured for the whole "
          "proxy", parse=p.boolean, example="true"),
    _noop("opentracing-trust-incoming-span", "Observability", "Continue incoming traces.",
          "tracing is configured for the whole proxy", parse=p.boolean, example="true"),
    _noop("opentelemetry-trust-incoming-span", "Observability", "Continue incoming traces.",
          "tracing is configured for the whole proxy", parse=p.boolean, example="true"),
    _none("enable-influxdb", "Observability", "Sends metrics to InfluxDB.", "metrics come from Envoy's stats",
          "Envoy's /stats/prometheus"),
    _none("influxdb-measurement", "Observability", "InfluxDB measurement.", "metrics come from Envoy's stats"),
    _none("influxdb-port", "Observability", "InfluxDB port.", "metrics come from Envoy's stats"),
    _none("influxdb-host", "Observability", "InfluxDB host.", "metrics come from Envoy's stats"),
    _none("influxdb-server-name", "Observability", "InfluxDB server name.", "metrics come from Envoy's stats"),
    _none("enable-modsecurity", "Observability", "The ModSecurity web application firewall.", "no WAF is built in"),
    _none("enable-owasp-core-rules", "Observability", "OWASP core rules in ModSecurity.", "no WAF is built in"),
    _none("modsecurity-transaction-id", "Observability", "ModSecurity transaction id.", "no WAF is built in"),
    # -- snippets: never executed --
    _snippet("configuration-snippet", "nginx directives added to each location of the Ingress.",
             f"the {_X} annotation for what it did (headers: request-headers-set / response-headers-set; "
             "redirects: redirect-to; rewrites: rewrite-regex)"),
    _snippet("server-snippet", "nginx directives added to the server of the Ingress's hosts.",
             f"the {_X} annotation for what it did"),
    _snippet("auth-snippet", "nginx directives added to the auth-url location.", "none"),
    _snippet("stream-snippet", "nginx stream (TCP) configuration.", "none"),
    _snippet("modsecurity-snippet", "ModSecurity rules.", "none"),
    _none("grpc-backend", "Upstream", "Removed from ingress-nginx: gRPC backends.", "removed from ingress-nginx",
          f"{PREFIX}backend-protocol: GRPC"),
    _none("secure-backends", "Upstream", "Removed from ingress-nginx: HTTPS backends.", "removed from ingress-nginx",
          f"{PREFIX}backend-protocol: HTTPS"),
)

_BY_NAME = {r.name: r for r in TABLE}

NGINX = Dialect(name="ingress-nginx", prefix=PREFIX, table=tuple(
    Annotation(name=r.name, on=KIND_INGRESS, parse=r.parse, key=r.key if r.key != NOOP else f"{NOOP}.{r.name}",
               doc=r.doc, example=r.example, group=r.group)
    for r in TABLE if r.parse is not None))


def row(name: str) -> Row | None:
    """The row of an annotation (without the prefix), None when ingress-nginx has no such annotation."""
    return _BY_NAME.get(name)


# --- reading ---------------------------------------------------------------------------------------------------

SERVICE_PREFIXES = ("cluster.", "tls.", "hash.", "hc.", "outlier.", "cb.")
# Policy keys that go together: when ours set one of a family, the nginx annotations of that family are ignored.
_FAMILIES = (("rewrite.prefix", "rewrite.regex", "rewrite.substitution", "rewrite.target"),
             ("route.timeout", "route.idle_timeout"),
             ("redirect.url", "redirect.code", "direct.status", "direct.body"),
             ("canary.",), ("hash.",), ("tls.",), ("cors.",), ("source.",),
             ("ratelimit.rate", "ratelimit.burst", "ratelimit.key", "ratelimit.exempt"),
             ("https.client_ca_secret", "https.client_ca_refused", "https.client_cert_verify",
              "https.client_cert_forward", "https.client_cert_max_depth"))


def _family(key: str) -> str:
    for fam in _FAMILIES:
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in fam):
            return fam[0]
    return key


def _snippet_actions(text: str) -> str:
    """What a snippet does, in words, from the nginx directives it uses."""
    said = []
    for pattern, words in ((r"\bmore_set_headers\b|\badd_header\b", "sets response headers"),
                           (r"\bproxy_set_header\b|\bmore_set_input_headers\b", "sets request headers"),
                           (r"\breturn\s+30[1278]\b", "redirects"), (r"\brewrite\b", "rewrites the path"),
                           (r"\b(allow|deny)\b", "allows or denies client addresses"),
                           (r"\blimit_req\b|\blimit_conn\b", "limits rates"),
                           (r"\bproxy_\w*timeout\b", "sets timeouts"), (r"\bauth_basic\b", "asks for a password"),
                           (r"\bset\b|\bif\b", "sets variables or tests conditions")):
        if re.search(pattern, text):
            said.append(words)
    return ", ".join(said)


# nginx directives that protect a location (authentication, address lists, refusals): a snippet with one of them
# cannot be ignored without opening what it protected. Matched where a directive starts (after ; { } or a line).
_PROTECTIVE_DIRECTIVE = re.compile(r"(?:^|[;{}])\s*(auth_basic|auth_request|auth_jwt|allow|deny|return\s+40[13])\b"
                                   r"\s*([^;{}\s]*)", re.MULTILINE)


def _protective_directives(text: str) -> list[str]:
    """The protective directives of nginx configuration text (comments removed), in order, each once."""
    code = re.sub(r"(?m)(^|\s)#.*$", r"\1", text)
    found: list[str] = []
    for m in _PROTECTIVE_DIRECTIVE.finditer(code):
        name = re.sub(r"\s+", " ", m[1])
        if name in ("auth_basic", "auth_request", "auth_jwt") and m[2].strip("'\"") == "off":
            continue
        if name not in found:
            found.append(name)
    return found


def _is_canary(meta: ObjectMeta) -> bool:
    raw = meta.annotation(PREFIX + "canary")
    try:
        return raw is not None and p.boolean(raw)
    except p.Invalid:
        return False


def _refusal(name: str, raw: str, meta: ObjectMeta) -> str:
    """Why an annotation that is not translated cannot be ignored either (it protects the Ingress's paths), as
    the end of its diagnostic; "" when ignoring it opens nothing (a canary's paths take the policies of the
    Ingress they are a canary of)."""
    if _is_canary(meta):
        return ""
    if name in ("configuration-snippet", "server-snippet", "auth-snippet"):
        found = _protective_directives(raw)
        if found:
            return (f"; it protects the paths ({', '.join(found)}), so every path of this Ingress answers 503 rather "
                    "than be served without that protection. Replace it with auth-type and auth-secret (auth_basic), "
                    "auth-url (auth_request), whitelist-source-range or denylist-source-range (allow, deny)")
        if name == "auth-snippet" and meta.annotation(PREFIX + "auth-url") is None:
            return ("; it is meant for authentication, and without auth-url there is none it could belong to, so "
                    "every path of this Ingress answers 503 rather than be served without authentication (ingress-"
                    "nginx ignores it). Remove it, or ask for authentication with auth-url or auth-type and "
                    "auth-secret")
        return ""
    if name == "auth-tls-match-cn" and meta.annotation(PREFIX + "auth-tls-secret") is not None:
        raw_verify = meta.annotation(PREFIX + "auth-tls-verify-client")
        if (raw_verify or "on").strip().lower() != "off":
            return (": Envoy cannot match the subject of a client certificate, so every path of this Ingress answers "
                    "503 rather than admit every certificate the CA signed. Remove it, and let the CA of "
                    "auth-tls-secret sign only the certificates to admit")
    return ""


def _unsupported(kind: str, meta: ObjectMeta, key: str, r: Row, raw: str, refusal: str = "") -> Diagnostic:
    if refusal:
        head = f"{key} is nginx configuration text, which xds-ingress never executes" if r.snippet else \
            f"{key} is not supported"
        return Diagnostic(kind=kind, namespace=meta.namespace, name=meta.name, field=field_of(key),
                          reason="AuthenticationUnavailable", message=f"{head}{refusal}.", severity=Severity.ERROR)
    if r.snippet:
        did = _snippet_actions(raw)
        msg = (f"{key} is nginx configuration text; xds-ingress never executes it, so it is ignored"
               f"{' (it ' + did + ')' if did else ''}. Replacement: {r.replacement}.")
        return Diagnostic(kind=kind, namespace=meta.namespace, name=meta.name, field=field_of(key),
                          reason="SnippetIgnored", message=msg, severity=Severity.WARNING)
    repl = f" Use {r.replacement} instead." if r.replacement else ""
    return Diagnostic(kind=kind, namespace=meta.namespace, name=meta.name, field=field_of(key),
                      reason="UnsupportedAnnotation", message=f"{key} is not supported ({r.note}), so it is ignored."
                      f"{repl}", severity=Severity.WARNING)


def _read_nginx(meta: ObjectMeta, kind: str) -> tuple[dict[str, Parsed], list[Diagnostic]]:
    """The nginx annotations of `meta` as policy keys (nginx.* keys expanded), and their diagnostics. An annotation
    that is not translated but protects the paths (see `_refusal`) gives the key auth.refused: the Ingress is not
    served (translate/auth.py)."""
    diags: list[Diagnostic] = []
    kept = []
    refused: Parsed | None = None
    for key, raw in meta.annotations:
        if not key.startswith(PREFIX):
            continue
        r = _BY_NAME.get(key[len(PREFIX):])
        if r is not None and r.parse is None:
            why = _refusal(r.name, raw, meta) if kind == KIND_INGRESS else ""
            diags.append(_unsupported(kind, meta, key, r, raw, why))
            if why and refused is None:
                refused = Parsed(value=None, field=field_of(key), annotation=key)
            continue
        kept.append((key, raw))
    out: dict[str, Parsed] = {}
    if kept and kind != KIND_INGRESS:
        for key, _raw in kept:
            diags.append(Diagnostic(kind=kind, namespace=meta.namespace, name=meta.name, field=field_of(key),
                                    reason="MisplacedAnnotation", severity=Severity.WARNING,
                                    message=f"{key} is read on Ingresses, not on {kind}s, so it is ignored here."))
        return {}, diags
    if kept:
        values, read_diags = read(NGINX, kind, dataclasses.replace(meta, annotations=tuple(kept)))
        diags += read_diags
        out = _expand(values, meta, diags)
    if refused is not None:
        out["auth.refused"] = refused
    return out, diags


def _report(meta: ObjectMeta, diags: list[Diagnostic]):
    def report(parsed: Parsed, reason: str, message: str, severity: Severity = Severity.WARNING) -> None:
        diags.append(Diagnostic(kind=KIND_INGRESS, namespace=meta.namespace, name=meta.name, field=parsed.field,
                                reason=reason, message=f"{parsed.annotation} {message}", severity=severity))
    return report


def _expand(values: dict[str, Parsed], meta: ObjectMeta, diags: list[Diagnostic]) -> dict[str, Parsed]:
    """nginx-only keys into the policy keys of policy.py."""
    out = {k: v for k, v in values.items() if not k.startswith("nginx.")}
    report = _report(meta, diags)

    def put(key: str, value, src: Parsed) -> None:
        out[key] = Parsed(value=value, field=src.field, annotation=src.annotation)

    g = values.get
    # redirects: temporal-redirect wins over permanent-redirect, as in ingress-nginx
    temporal, permanent, code = g("nginx.temporal_redirect"), g("nginx.permanent_redirect"), \
        g("nginx.permanent_redirect_code")
    if temporal is not None:
        put("redirect.url", temporal.value, temporal)
        put("redirect.code", 302, temporal)
        if permanent is not None:
            report(permanent, "ConflictingAnnotation", "is ignored: temporal-redirect is set and takes precedence.")
    elif permanent is not None:
        put("redirect.url", permanent.value, permanent)
        put("redirect.code", code.value if code is not None else 301, code or permanent)
    if code is not None and permanent is None:
        report(code, "IgnoredAnnotation", "is ignored without permanent-redirect.")
    # timeouts: nginx's are between two reads or writes; the closest is the stream's idle timeout
    tmo = [t for t in (g("nginx.proxy_read_timeout"), g("nginx.proxy_send_timeout")) if t is not None]
    if tmo:
        top = max(tmo, key=lambda t: t.value)
        put("route.idle_timeout", top.value, top)
        put("route.timeout", 0, top)
    # retries
    nu = g("nginx.next_upstream")
    if nu is not None:
        conds, codes, off = nu.value
        if off:
            put("retry.num_retries", 0, nu)
        else:
            if conds:
                put("retry.retry_on", conds, nu)
            if codes:
                put("retry.retriable_status_codes", codes, nu)
            if "retry.num_retries" not in out:
                put("retry.num_retries", 2, nu)  # nginx's default proxy-next-upstream-tries is 3
    # headers
    xfp = g("nginx.x_forwarded_prefix")
    if xfp is not None:
        put("request_headers.set", (("x-forwarded-prefix", xfp.value),), xfp)
    # upstream: protocol and TLS
    bp = g("nginx.backend_protocol")
    if bp is not None:
        proto = {"HTTP": ir.PROTOCOL_HTTP1, "HTTPS": ir.PROTOCOL_HTTP1, "AUTO_HTTP": ir.PROTOCOL_HTTP1,
                 "GRPC": ir.PROTOCOL_GRPC, "GRPCS": ir.PROTOCOL_GRPC}[bp.value]
        put("cluster.protocol", proto, bp)
        if bp.value in ("HTTPS", "GRPCS"):
            put("tls.enabled", True, bp)
    secret, verify = g("nginx.proxy_ssl_secret"), g("nginx.proxy_ssl_verify")
    # proxy-ssl-verify on, towards HTTPS backends, without a CA to verify them against: their requests get 503
    # rather than go to backends that are not verified (ingress-nginx cannot verify them either).
    unverified = verify is not None and verify.value and "tls.enabled" in out
    closed = "; with proxy-ssl-verify on, requests to its HTTPS backends get 503 rather than go unverified" \
        if unverified else ""
    if secret is not None:
        ns, name = secret.value
        if ns and ns != meta.namespace:
            report(secret, "CrossNamespaceSecret",
                   f"names a Secret of namespace {ns!r}; only Secrets of the Ingress's namespace ({meta.namespace}) "
                   f"are read, so it is ignored{closed}. Copy the Secret into this namespace.", Severity.ERROR)
        elif verify is not None and verify.value:
            put("tls.ca_secret", name, secret)
    if verify is not None and verify.value and "tls.ca_secret" not in out and secret is None:
        if not unverified:
            report(verify, "IgnoredAnnotation", "is ignored without proxy-ssl-secret (the CA to verify against).")
        elif meta.annotation(PREFIX + "proxy-ssl-secret") is None:
            report(verify, "IncompleteAnnotation",
                   "is on without proxy-ssl-secret (the CA to verify HTTPS backends against), so requests to the "
                   "backends get 503 rather than go unverified. Name the Secret of the CA in proxy-ssl-secret.",
                   Severity.ERROR)
    if unverified and "tls.ca_secret" not in out:
        put("tls.ca_refused", True, verify)
    if "tls.sni" in out and "tls.enabled" not in out:
        out.pop("tls.sni")  # proxy-ssl-name with a plain HTTP backend: nothing to send it on
    # upstream: hashing and affinity
    hb, aff = g("nginx.upstream_hash_by"), g("nginx.affinity")
    attributes = (("nginx.session_cookie_path", "hash.cookie_path"), ("nginx.session_cookie_domain",
                                                                        "hash.cookie_domain"),
                  ("nginx.session_cookie_samesite", "hash.cookie_samesite"),
                  ("nginx.session_cookie_secure", "hash.cookie_secure"))
    cookie_keys = ("nginx.session_cookie_name", "nginx.session_cookie_max_age", "nginx.session_cookie_expires",
                   *(k for k, _ in attributes))
    if aff is not None:
        name = g("nginx.session_cookie_name")
        ttl = g("nginx.session_cookie_max_age") or g("nginx.session_cookie_expires")
        put("hash.by", ("cookie", name.value if name is not None else "INGRESSCOOKIE"), aff)
        if ttl is not None:
            put("hash.cookie_ttl", ttl.value, ttl)
        for theirs, ours in attributes:
            if theirs in values:
                put(ours, values[theirs].value, values[theirs])
        if hb is not None:
            report(hb, "ConflictingAnnotation", "is ignored: affinity is set and takes precedence.")
    else:
        for k in cookie_keys:
            if k in values:
                report(values[k], "IgnoredAnnotation", "is ignored without affinity: cookie.")
        if hb is not None:
            put("hash.by", hb.value, hb)
    if "hash.by" in out and out.get("cluster.lb_policy") is not None:
        lb = out.pop("cluster.lb_policy")
        report(lb, "IgnoredAnnotation", "is ignored: upstream-hash-by or affinity takes precedence.")
    size = g("nginx.proxy_body_size")
    if size is not None and size.value > p.MAX_REQUEST_BODY_BYTES:
        report(size, "LimitNotEnforced",
               f"is more than {p.MAX_REQUEST_BODY_BYTES // 1024 ** 2}m, which Envoy would buffer in memory for each "
               "request, so it is not enforced: bodies of any size are streamed to the backends (as with 0). Set "
               "64m or less to have larger bodies refused (413).")
    elif size is not None and size.value > 0:
        put("route.max_request_bytes", size.value, size)
    _expand_cors(values, meta, put, report)
    _expand_access(values, meta, put, report)
    _expand_client_certificates(values, meta, put, report)
    _expand_auth(values, meta, put, report)
    _expand_config_maps(values, meta, put, report)
    ciphers = g("nginx.ssl_ciphers")
    if ciphers is not None:
        kept, dropped = ciphers.value
        if dropped:
            report(ciphers, "IgnoredCipherSuites",
                   f"names {', '.join(dropped)}, which {'is' if len(dropped) == 1 else 'are'} not offered here (only "
                   f"forward-secret AEAD suites: {', '.join(p.TLS12_CIPHER_SUITES)}; TLS 1.3 suites are not "
                   "configurable)" + ("; the others are offered in the order given." if kept else
                                      ", so Envoy's default suites are offered."))
        if kept:
            put("https.cipher_suites", kept, ciphers)
    # mirroring
    mt = g("nginx.mirror_target")
    if mt is not None:
        _scheme, host, port = mt.value
        labels = host.split(".")
        svc_ns = labels[1] if len(labels) > 1 else meta.namespace
        local = len(labels) == 1 or (svc_ns == meta.namespace and labels[2:] in ([], ["svc"], ["svc", "cluster",
                                                                                                  "local"]))
        if not local:
            report(mt, "UnsupportedAnnotation",
                   f"names {host!r}, which is not a Service of namespace {meta.namespace}, so nothing is mirrored; "
                   "only Services of the Ingress's namespace can receive copies (SERVICE[.NAMESPACE[.svc]]).",
                   Severity.ERROR)
        else:
            put("mirror.service", (labels[0], port or 80), mt)
    return out


Put = Callable[[str, object, Parsed], None]
Report = Callable[..., None]


def _at(name: str) -> Parsed:
    """Where an nginx annotation is (for a diagnostic or a default value that stands for it)."""
    return Parsed(value=None, field=field_of(PREFIX + name), annotation=PREFIX + name)


def _expand_cors(values: dict[str, Parsed], meta: ObjectMeta, put: Put, report: Report) -> None:
    """enable-cors and the cors-* family, with ingress-nginx's defaults."""
    g = values.get
    enabled = g("nginx.enable_cors")
    family = [v for k, v in sorted(values.items()) if k.startswith("nginx.cors_")]
    if enabled is None or not enabled.value:
        for v in family:
            report(v, "IgnoredAnnotation", f"is ignored without {PREFIX}enable-cors: \"true\".")
        return
    origins = g("nginx.cors_allow_origin")
    if origins is None and meta.annotation(PREFIX + "cors-allow-origin") is not None:
        report(enabled, "IgnoredAnnotation",
               "is not applied: cors-allow-origin is refused (see its diagnostic), and CORS is then answered for no "
               "origin rather than for every one. Fix cors-allow-origin.", Severity.ERROR)
        return
    allow = origins.value if origins is not None else (("any", ""),)
    put("cors.allow_origins", allow, origins or enabled)
    for key, name, default in (("cors.allow_methods", "nginx.cors_allow_methods", CORS_DEFAULT_METHODS),
                               ("cors.allow_headers", "nginx.cors_allow_headers", CORS_DEFAULT_HEADERS),
                               ("cors.max_age", "nginx.cors_max_age", CORS_DEFAULT_MAX_AGE_S)):
        v = g(name)
        put(key, v.value if v is not None else default, v or enabled)
    expose = g("nginx.cors_expose_headers")
    if expose is not None:
        put("cors.expose_headers", expose.value, expose)
    credentials = g("nginx.cors_allow_credentials")
    if credentials is None or credentials.value:
        if allow == (("any", ""),):
            if credentials is not None:
                report(credentials, "IgnoredAnnotation",
                       "is not applied with cors-allow-origin '*': every site could read responses made with the "
                       "user's cookies (browsers refuse nginx's '*' with credentials, so they never worked). List the "
                       "origins that may.")
        else:
            put("cors.allow_credentials", True, credentials or enabled)


def _expand_access(values: dict[str, Parsed], meta: ObjectMeta, put: Put, report: Report) -> None:
    """The client address lists and the rate limits per client address."""
    g = values.get
    allow, legacy, deny = g("nginx.allowlist_source_range"), g("nginx.whitelist_source_range"), \
        g("nginx.denylist_source_range")
    if allow is not None and legacy is not None:
        report(legacy, "ConflictingAnnotation", "is ignored: allowlist-source-range is set and takes precedence.")
    allow = allow or legacy
    unreadable = [n for n, k in (("allowlist-source-range", "nginx.allowlist_source_range"),
                                 ("whitelist-source-range", "nginx.whitelist_source_range"),
                                 ("denylist-source-range", "nginx.denylist_source_range"))
                  if meta.annotation(PREFIX + n) is not None and k not in values]
    exempt = g("nginx.limit_whitelist")
    for lst in (allow, deny, exempt):
        loose = [(net, written) for net, written in (lst.value if lst is not None else ()) if written]
        if loose:
            report(lst, "HostBitsIgnored",
                   f"has bits set after the prefix length in {', '.join(repr(w) for _, w in loose)}; as nginx, "
                   f"{', '.join(net for net, _ in loose)} {'is' if len(loose) == 1 else 'are'} used. Write "
                   f"{'it' if len(loose) == 1 else 'them'} so.")
    for kind, lst in (("source.allow", allow), ("source.deny", deny)):
        if lst is not None:
            put(kind, tuple(net for net, _ in lst.value), lst)
    if unreadable:
        at = _at(unreadable[0])
        report(at, "AccessDenied",
               "cannot be read (see its diagnostic), so every client gets 403 on this Ingress's paths until it is "
               "fixed, rather than none (ingress-nginx refuses the location likewise).", Severity.ERROR)
        put("source.deny", ("0.0.0.0/0", "::/0"), at)
    conns = g("nginx.limit_connections")
    if conns is not None:
        put("connlimit.limit", conns.value, conns)
        put("connlimit.zone", f"{meta.namespace}/{meta.name}", conns)
        if exempt is not None:
            put("connlimit.exempt", tuple(net for net, _ in exempt.value), exempt)
    rps, rpm, mult = g("nginx.limit_rps"), g("nginx.limit_rpm"), g("nginx.limit_burst_multiplier")
    chosen: tuple[Parsed, str] | None = None
    if rps is not None and rpm is not None:
        lower, other = (rpm, rps) if rpm.value < rps.value * 60 else (rps, rpm)
        report(other, "IgnoredAnnotation",
               f"is not applied: {lower.annotation.rsplit('/', 1)[1]} sets a lower rate, and a path has one rate "
               "limit here (nginx applies both).")
        chosen = (lower, "m" if lower is rpm else "s")
    elif rps is not None or rpm is not None:
        chosen = (rps, "s") if rps is not None else (rpm, "m")
    if chosen is None:
        if mult is not None:
            report(mult, "IgnoredAnnotation", "is ignored without limit-rps or limit-rpm.")
        if exempt is not None and conns is None:
            report(exempt, "IgnoredAnnotation", "is ignored without limit-rps, limit-rpm or limit-connections.")
        return
    rate, unit = chosen
    if exempt is not None:
        put("ratelimit.exempt", tuple(net for net, _ in exempt.value), exempt)
    multiplier = mult.value if mult is not None else 5
    put("ratelimit.rate", (rate.value, unit), rate)
    # nginx's limit_req with burst=B nodelay admits B + 1 requests at once.
    put("ratelimit.burst", rate.value * multiplier + 1, mult or rate)
    put("ratelimit.key", ("client_ip", ""), rate)


def _expand_client_certificates(values: dict[str, Parsed], meta: ObjectMeta, put: Put, report: Report) -> None:
    """auth-tls-*: client certificates verified against a CA Secret of the Ingress's namespace."""
    g = values.get
    secret, verify, depth, forward = (g("nginx.auth_tls_secret"), g("nginx.auth_tls_verify_client"),
                                      g("nginx.auth_tls_verify_depth"), g("nginx.auth_tls_pass_certificate"))
    mode = verify.value if verify is not None else "on"
    others = [x for x in (depth, forward) if x is not None]
    if mode == "off":
        for x in others + ([secret] if secret is not None else []):
            report(x, "IgnoredAnnotation", "is ignored: auth-tls-verify-client is \"off\".")
        return
    if secret is None:
        if meta.annotation(PREFIX + "auth-tls-secret") is not None:
            # Refused (diagnosed): client certificates were asked for; the hosts are not served without them.
            put("https.client_ca_refused", None, _at("auth-tls-secret"))
            return
        for x in others + ([verify] if verify is not None else []):
            report(x, "IgnoredAnnotation", "is ignored without auth-tls-secret (the CA that verifies client "
                                           "certificates).")
        return
    ns, name = secret.value
    if ns and ns != meta.namespace:
        report(secret, "CrossNamespaceSecret",
               f"names a Secret of namespace {ns!r}; only Secrets of the Ingress's namespace ({meta.namespace}) are "
               "read, so client certificates cannot be verified and HTTPS is not served for this Ingress's TLS hosts "
               "(never without the client certificates asked for). Copy the Secret into this namespace.",
               Severity.ERROR)
        put("https.client_ca_refused", None, secret)
        return
    put("https.client_ca_secret", name, secret)
    put("https.client_cert_verify", "required" if mode == "on" else "optional", verify or secret)
    if forward is not None:
        put("https.client_cert_forward", forward.value, forward)
    # nginx (OpenSSL 1.1+) counts the intermediates; Envoy counts the trust anchor too. nginx's default is 1.
    put("https.client_cert_max_depth", (depth.value if depth is not None else 1) + 1, depth or secret)


def _expand_config_maps(values: dict[str, Parsed], meta: ObjectMeta, put: Put, report: Report) -> None:
    """custom-headers and auth-proxy-set-headers: the name of a ConfigMap of the Ingress's namespace, resolved
    against the ConfigMaps by translate/configmaps.py. auth-proxy-set-headers that cannot be honoured refuses the
    auth-url check (auth.refused: the paths answer 503), as ingress-nginx."""
    with_auth = meta.annotation(PREFIX + "auth-url") is not None
    for name, nkey, key in (("custom-headers", "nginx.custom_headers", configmaps.RESPONSE_HEADERS_REF),
                            ("auth-proxy-set-headers", "nginx.auth_proxy_set_headers",
                             configmaps.AUTH_REQUEST_HEADERS_REF)):
        protective = key == configmaps.AUTH_REQUEST_HEADERS_REF and with_auth
        ref = values.get(nkey)
        if ref is None:
            if protective and meta.annotation(PREFIX + name) is not None:
                put("auth.refused", None, _at(name))  # an invalid value (diagnosed): not checked without it
            continue
        ns, cm = ref.value
        if ns and ns != meta.namespace:
            report(ref, "CrossNamespaceConfigMap",
                   f"names a ConfigMap of namespace {ns!r}; only ConfigMaps of the Ingress's namespace "
                   f"({meta.namespace}) are read, so "
                   + ("every path of this Ingress answers 503 (the authorization service would miss its headers)"
                      if protective else "no header of it is added")
                   + ". Copy the ConfigMap into this namespace.", Severity.ERROR)
            if protective:
                put("auth.refused", None, ref)
            continue
        put(key, cm, ref)


def config_map_references(meta: ObjectMeta) -> set[tuple[str, str]]:
    """The ConfigMaps (namespace, name) an Ingress's custom-headers and auth-proxy-set-headers name, of the
    Ingress's own namespace only (another namespace's is refused, so never read)."""
    return _local_references(meta, ("custom-headers", "auth-proxy-set-headers"))


def _local_references(meta: ObjectMeta, names: tuple[str, ...]) -> set[tuple[str, str]]:
    """(namespace, name) of the objects the annotations `names` of `meta` name as [NAMESPACE/]NAME, those of
    its own namespace only."""
    out = set()
    for name in names:
        raw = meta.annotation(PREFIX + name)
        if raw is None:
            continue
        try:
            ns, obj = _namespaced_secret(raw)  # the same syntax for a ConfigMap
        except p.Invalid:
            continue
        if ns in ("", meta.namespace):
            out.add((meta.namespace, obj))
    return out


def _local_service(host: str, namespace: str) -> tuple[str, str] | None:
    """(service, its namespace) of an in-cluster Service host name (SERVICE, SERVICE.NAMESPACE,
    SERVICE.NAMESPACE.svc, SERVICE.NAMESPACE.svc.cluster.local), None for any other host."""
    labels = host.split(".")
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", labels[0]):
        return None
    if len(labels) == 1:
        return labels[0], namespace
    if len(labels) == 2 or labels[2:] in (["svc"], ["svc", "cluster", "local"]):
        return labels[0], labels[1]
    return None


def _expand_auth(values: dict[str, Parsed], meta: ObjectMeta, put: Put, report: Report) -> None:
    """auth-type basic with auth-secret, and auth-url: our basic.* and auth.* keys. An Ingress that asks for
    authentication that cannot be given here gets basic.refused or auth.url_refused (with a diagnostic saying
    why): its paths answer 503 (translate/auth.py), never served without it."""
    g = values.get
    ns = meta.namespace
    canary = _is_canary(meta)  # its paths take the authentication of the Ingress they are a canary of
    # Ours of the same kind win over a refused nginx authentication (_merge says so): no 503 to announce then.
    ours = {"auth.url_refused": meta.annotation(XDS.prefix + "auth-url") is not None,
            "basic.refused": meta.annotation(XDS.prefix + "basic-auth-secret") is not None}

    def refuse(key: str, at: Parsed, reason: str, problem: str, fix: str) -> None:
        if not canary and not ours[key]:
            report(at, reason, f"{problem}, so every path of this Ingress answers 503 rather than be served without "
                               f"authentication. {fix}", Severity.ERROR)
        put(key, None, at)  # (on a canary, ignored with the other route policies: translate/__init__.py)

    def unreadable(name: str) -> bool:
        return meta.annotation(PREFIX + name) is not None and f"nginx.{name.replace('-', '_')}" not in values

    # -- basic authentication --
    atype, secret, stype, realm = (g("nginx.auth_type"), g("nginx.auth_secret"), g("nginx.auth_secret_type"),
                                   g("nginx.auth_realm"))
    if any(meta.annotation(PREFIX + n) is not None for n in ("auth-type", "auth-secret")):
        bad = next((n for n in ("auth-type", "auth-secret", "auth-secret-type") if unreadable(n)), None)
        if bad is not None:
            refuse("basic.refused", _at(bad), "AuthenticationUnavailable", "cannot be read (see its diagnostic)",
                   "Fix the value.")
        elif atype is None:
            refuse("basic.refused", secret, "AuthenticationUnavailable",
                   "names the users of basic authentication without auth-type (ingress-nginx would serve the Ingress "
                   "without authentication)", "Add auth-type: basic, or remove auth-secret.")
        elif atype.value == "digest":
            refuse("basic.refused", atype, "AuthenticationUnavailable",
                   "asks for digest authentication, which Envoy does not have", "Use basic (over HTTPS).")
        elif secret is None:
            refuse("basic.refused", atype, "AuthenticationUnavailable",
                   "asks for basic authentication without auth-secret", "Name the Secret of the users in auth-secret.")
        elif secret.value[0] and secret.value[0] != ns:
            refuse("basic.refused", secret, "CrossNamespaceSecret",
                   f"names a Secret of namespace {secret.value[0]!r}, and only Secrets of the Ingress's namespace "
                   f"({ns}) are read", "Copy the Secret into this namespace.")
        else:
            put("basic.secret", secret.value[1], secret)
            if stype is not None and stype.value == "auth-map":
                put("basic.secret_type", "auth-map", stype)
            if realm is not None:
                put("basic.realm", realm.value, realm)
    else:
        for x in (stype, realm):
            if x is not None:
                report(x, "IgnoredAnnotation", "is ignored without auth-type and auth-secret.")
    # -- external authentication --
    url, headers = g("nginx.auth_url"), g("nginx.auth_response_headers")
    if meta.annotation(PREFIX + "auth-url") is not None:
        other = ("Reach it through an ExternalName Service of this namespace (its externalName the service's host; "
                 "for a Service of another namespace, SERVICE.NAMESPACE.svc.cluster.local), named here as "
                 "http://THAT-SERVICE:PORT/PATH; or use xds serve --auth-service, which every route asks.")
        bad = next((n for n in ("auth-url", "auth-response-headers") if unreadable(n)), None)
        if bad is not None:
            refuse("auth.url_refused", _at(bad), "AuthenticationUnavailable", "cannot be read (see its diagnostic)",
                   "Fix the value." if bad != "auth-url" else other)
        else:
            scheme, host, port, path = url.value
            local = _local_service(host, ns)
            if scheme != "http":
                refuse("auth.url_refused", url, "AuthenticationUnavailable", "is an https URL, which is not translated",
                       f"Name the Service by an http URL, and put {_X}upstream-tls: \"true\" on it for TLS.")
            elif "?" in path:
                refuse("auth.url_refused", url, "AuthenticationUnavailable",
                       "has a query, which Envoy cannot send (it asks the URL's path followed by the request's path)",
                       "Let the service read what it needs from the request's headers.")
            elif local is None:
                refuse("auth.url_refused", url, "AuthenticationUnavailable",
                       f"names {host!r}, which is not a Service: an authorization service is reached here only as a "
                       f"Service of the Ingress's namespace ({ns})", other)
            elif local[1] != ns:
                refuse("auth.url_refused", url, "AuthenticationUnavailable",
                       f"names Service {local[0]} of namespace {local[1]!r}, and only Services of the Ingress's "
                       f"namespace ({ns}) are reached", other)
            else:
                put("auth.url", (local[0], port or 80, path), url)
                put("auth.client_cookies", True, url)
                if headers is not None:
                    put("auth.response_headers", headers.value, headers)
                _expand_signin(values, meta, put, report, url)
    else:
        for x in (headers, *(g(k) for k in _SIGNIN_KEYS)):
            if x is not None:
                report(x, "IgnoredAnnotation", "is ignored without auth-url.")
    glob = g("nginx.enable_global_auth")
    if glob is not None and glob.value is False:
        put("auth.mode", "off", glob)


_SIGNIN_KEYS = ("nginx.auth_signin", "nginx.auth_signin_redirect_param", "nginx.auth_request_redirect")


def _expand_signin(values: dict[str, Parsed], meta: ObjectMeta, put: Put, report: Report, url: Parsed) -> None:
    """auth-signin (with auth-signin-redirect-param) and auth-request-redirect of a usable auth-url
    (translate/signin.py)."""
    g = values.get
    at, param = g("nginx.auth_signin"), g("nginx.auth_signin_redirect_param")
    if at is not None:
        put("auth.signin", signin.signin_location(at.value, param.value if param is not None else
                                                  signin.DEFAULT_REDIRECT_PARAM), at)
    elif meta.annotation(PREFIX + "auth-signin") is not None:
        report(_at("auth-signin"), "SignInIgnored", "cannot be read (see its diagnostic), so a request the auth-url "
               "refuses gets the service's 401 rather than a redirect to sign in; authentication still applies.",
               Severity.WARNING)
    elif param is not None:
        report(param, "IgnoredAnnotation", "is ignored without auth-signin.")
    redirect = g("nginx.auth_request_redirect")
    put("auth.request_redirect", redirect.value if redirect is not None else signin.DEFAULT_REQUEST_REDIRECT,
        redirect or url)


# What our own annotations override of the nginx ones besides their own keys (see _merge): the authentication
# that one of ours sets replaces the nginx authentication of the same kind, including a refused one.
_OVERRIDES = {"auth.url": ("auth.url_refused", "auth.response_headers", "auth.client_cookies", "auth.signin",
                          "auth.request_redirect", "configmap.auth_request_headers"),
              "basic.secret": ("basic.refused", "basic.realm", "basic.secret_type")}


def _merge(ours: dict[str, Parsed], theirs: dict[str, Parsed], meta: ObjectMeta, kind: str,
           diags: list[Diagnostic]) -> dict[str, Parsed]:
    """Ours and the nginx values: for each policy family ours set, the nginx values are ignored (a diagnostic)."""
    fams = {_family(k): ours[k] for k in ours}
    for k, covered in _OVERRIDES.items():
        if k in ours:
            fams.update({c: ours[k] for c in covered})
    out = dict(ours)
    said: set[str] = set()
    for k, v in theirs.items():
        mine = fams.get(_family(k))
        if mine is None:
            out[k] = v
            continue
        if v.annotation not in said:
            said.add(v.annotation)
            diags.append(Diagnostic(
                kind=kind, namespace=meta.namespace, name=meta.name, field=v.field, reason="OverriddenAnnotation",
                severity=Severity.WARNING,
                message=f"{v.annotation} is ignored: {mine.annotation} sets the same policy and wins. Remove one."))
    return out


def secret_references(meta: ObjectMeta) -> set[tuple[str, str]]:
    """The Secrets (namespace, name) an Ingress's nginx annotations name that a Kubernetes source must read by
    name (CA bundles and users are rarely kubernetes.io/tls Secrets): auth-tls-secret, proxy-ssl-secret and
    auth-secret, of the Ingress's own namespace only (another namespace's is refused, so never read)."""
    return _local_references(meta, ("auth-tls-secret", "proxy-ssl-secret", "auth-secret"))


def passthrough_backends(ing: Ingress) -> list[tuple[str, IngressBackend]]:
    """(host, backend) of each rule of an Ingress with ssl-passthrough: true: the backend of its path `/`, else of
    its first path (as ingress-nginx, which sends the connection to one backend per host)."""
    if _silent(ing, "ssl-passthrough") is not True or _silent(ing, "canary") is True:
        return []
    out = []
    for rule in ing.rules:
        if not rule.host or not rule.paths:
            continue
        root = next((hp for hp in rule.paths if hp.path.rstrip("/") == ""), rule.paths[0])
        out.append((rule.host, root.backend))
    return out


def whole_secret_references(meta: ObjectMeta) -> set[tuple[str, str]]:
    """The Secrets of secret_references whose every key is read, not only ca.crt, auth and jwks: an auth-secret of
    auth-secret-type auth-map (each key a user)."""
    raw = meta.annotation(PREFIX + "auth-secret-type")
    if raw is None or raw.strip().lower() != "auth-map":
        return set()
    try:
        ns, secret = _namespaced_secret(meta.annotation(PREFIX + "auth-secret") or "")
    except p.Invalid:
        return set()
    return {(meta.namespace, secret)} if ns in ("", meta.namespace) else set()


def canary_annotation(settings: TranslateSettings, meta: ObjectMeta) -> str | None:
    """The canary annotation of `meta` that the translator reads (ours first), None without one."""
    for prefix in (XDS.prefix, *((PREFIX,) if settings.nginx_compat else ())):
        if meta.annotation(prefix + "canary") is not None:
            return prefix + "canary"
    return None


def read_ingress(settings: TranslateSettings, meta: ObjectMeta
                 ) -> tuple[dict[str, Parsed], list[Diagnostic], frozenset[str]]:
    """The route policy values of an Ingress from the dialects `settings` enable (ours win), the diagnostics, and
    the policy keys whose annotation is present (valid or not). Upstream keys (applied to the Services the
    Ingress routes to, see `service_values`) are not in the values."""
    values, diags = read(XDS, KIND_INGRESS, meta)
    present = set(present_keys(XDS, meta))
    if settings.nginx_compat:
        theirs, more = _read_nginx(meta, KIND_INGRESS)
        diags += more
        theirs = {k: v for k, v in theirs.items() if not k.startswith(SERVICE_PREFIXES)}
        values = _merge(values, theirs, meta, KIND_INGRESS, diags)
        present |= {r.key for k, _ in meta.annotations
                    if k.startswith(PREFIX) and (r := _BY_NAME.get(k[len(PREFIX):])) is not None and r.key}
    return values, diags, frozenset(present)


def _upstream_values(ing: Ingress) -> dict[str, Parsed]:
    values, _ = _read_nginx(ing.meta, KIND_INGRESS)
    where = f" (from Ingress {ing.meta.namespace}/{ing.meta.name})"
    return {k: dataclasses.replace(v, annotation=v.annotation + where) for k, v in values.items()
            if k.startswith(SERVICE_PREFIXES)}


Lender = tuple[Ingress, dict[str, Parsed]]  # a served Ingress with upstream annotations, and their values


def upstream_lenders(served: Iterable[Ingress]) -> dict[tuple[str, str], tuple[Lender, ...]]:
    """Service (namespace, name) -> the Ingresses of `served` (in precedence order) that route to it and have
    upstream annotations, with those annotations' values: what `service_values` reads, made in one pass."""
    out: dict[tuple[str, str], list[Lender]] = {}
    for ing in served:
        up = _upstream_values(ing)
        if not up:
            continue
        for name in _backend_services(ing):
            out.setdefault((ing.meta.namespace, name), []).append((ing, up))
    return {k: tuple(v) for k, v in out.items()}


def shared_values(meta: ObjectMeta) -> tuple:
    """The values of an Ingress's nginx annotations that apply beyond its own hosts' routes: its TLS settings and
    ssl-redirect, which shape the listeners' filter chains and redirects (translate/tls.py), as ours do."""
    values, _ = _read_nginx(meta, KIND_INGRESS)
    return tuple(sorted((k, v.value) for k, v in values.items() if k.startswith(("https.", "ingress."))))


def _backend_services(ing: Ingress) -> list[str]:
    backends = [p.backend for r in ing.rules for p in r.paths]
    if ing.default_backend is not None:
        backends.append(ing.default_backend)
    return list(dict.fromkeys(b.service.name for b in backends if b.service is not None))


def lending(ing: Ingress) -> tuple | None:
    """What an Ingress lends to the Services it routes to (of any host): the Services and its upstream
    annotations' values; None when it has none. Two versions of an Ingress that lend the same (and keep their
    precedence) leave every Service's values as they were."""
    up = _upstream_values(ing)
    if not up:
        return None
    # Whether it is served at all (an invalid canary annotation excludes it) is read from these two.
    canary = (ing.meta.annotation(PREFIX + "canary"), ing.meta.annotation(XDS.prefix + "canary"))
    return tuple(sorted(_backend_services(ing))), up, canary


def service_values(settings: TranslateSettings, svc: Service, lenders: Iterable[Lender]
                   ) -> tuple[dict[str, Parsed], list[Diagnostic]]:
    """The cluster policy values of a Service: its own annotations, and with nginx compatibility the upstream
    annotations of the oldest served Ingress that routes to it and has any (`lenders`: those Ingresses, in
    precedence order, see `upstream_lenders`). Ours win; a later Ingress that asks for other upstream settings
    gets a diagnostic."""
    values, diags = read(XDS, "Service", svc.meta)
    if not settings.nginx_compat:
        return values, diags
    _, more = _read_nginx(svc.meta, "Service")
    diags += more
    chosen: Lender | None = None
    for ing, up in lenders:
        if chosen is None:
            chosen = (ing, up)
            continue
        first, taken = chosen
        if {k: v.value for k, v in up.items()} != {k: v.value for k, v in taken.items()}:
            for v in up.values():
                diags.append(Diagnostic(
                    kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name, field=v.field,
                    reason="UpstreamConflict", severity=Severity.WARNING,
                    message=(f"{v.annotation.split(' (from')[0]} is not applied to Service {svc.meta.namespace}/"
                             f"{svc.meta.name}: its clusters take their upstream settings from Ingress "
                             f"{first.meta.namespace}/{first.meta.name}, which is older. Set the same upstream "
                             "annotations on both, or put xds-ingress.io/ annotations on the Service.")))
    if chosen is None:
        return values, diags
    return _merge(values, chosen[1], svc.meta, "Service", diags), diags


# --- regex paths ----------------------------------------------------------------------------------------------

def _fold_class(body: str) -> str:
    """A character class body with both cases of its ASCII letters (a-f: a-fA-F)."""
    extra = []
    for m in re.finditer(r"\\.|(.)-(.)|(.)", body):
        if m[1] is not None and m[1].isalpha() and m[2].isalpha() and m[1].islower() == m[2].islower():
            extra.append(f"{m[1].swapcase()}-{m[2].swapcase()}")
        elif m[3] is not None and m[3].isalpha() and m[3].isascii():
            extra.append(m[3].swapcase())
    return body + "".join(extra)


def _fold(pattern: str) -> str:
    """`pattern` matching either case of ASCII letters, as nginx's `~*` (letters as [aA], not RE2's (?i), whose
    Unicode case folding makes programs too large for Envoy)."""
    out = []
    pos = 0
    while pos < len(pattern):
        m = p._RE_TOKEN.match(pattern, pos)
        if m is None:
            raise p.Invalid("a regex")
        tok = m[0]
        if len(tok) == 1 and tok.isascii() and tok.isalpha():
            tok = f"[{tok.lower()}{tok.upper()}]"
        elif tok.startswith("[") and len(tok) > 2:
            neg = tok.startswith("[^")
            body = tok[2:-1] if neg else tok[1:-1]
            tok = ("[^" if neg else "[") + _fold_class(body) + "]"
        out.append(tok)
        pos = m.end()
    return "".join(out)


@functools.lru_cache(maxsize=16384)  # a pure function, and RE2 compiles each path twice: every change of a regex host
def path_regex(path: str) -> tuple[str, str]:
    """(RE2 pattern matching the whole path, as Envoy's safe_regex, or "", why not). nginx's location is
    `~* "^PATH"`: case-insensitive, anchored at the start, any rest of the path."""
    try:
        p.regex(path)
    except p.Invalid as exc:
        return "", exc.accepted
    folded = f"(?:{_fold(path)}).*"
    size = p.re2_program_size(folded)
    if size is None or size > p.MAX_RE2_PROGRAM_SIZE:
        return "", (f"a regex whose case-insensitive form fits Envoy's program size limit of "
                    f"{p.MAX_RE2_PROGRAM_SIZE} (this one: {size}); shorten it")
    size = p.re2_program_size("^" + folded)
    if size is None or size > p.MAX_RE2_PROGRAM_SIZE:
        return "", f"a shorter regex (its rewrite form does not fit Envoy's limit of {p.MAX_RE2_PROGRAM_SIZE})"
    return folded, ""


# --- host-wide settings on the assembled route configurations ------------------------------------------------

@dataclass(frozen=True, slots=True)
class _HostOptions:
    regex: bool
    app_root: str | None
    force_ssl: bool
    aliases: tuple[str, ...]
    www: bool
    redirect_code: int = NGINX_REDIRECT_CODE  # of force-ssl-redirect: ingress-nginx's 308, or ours


def _silent(ing: Ingress, name: str):
    r = _BY_NAME[name]
    raw = ing.meta.annotation(PREFIX + name)
    if raw is None or r.parse is None:
        return None
    try:
        return r.parse(raw)
    except p.Invalid:
        return None


def _options(ing: Ingress) -> _HostOptions:
    canary = _silent(ing, "canary") is True
    # rewrite-target counts unless our own path rewrite overrides it (see _merge)
    target = _silent(ing, "rewrite-target") is not None and not any(
        ing.meta.annotation(XDS.prefix + n) is not None for n in ("rewrite-prefix", "rewrite-regex"))
    return _HostOptions(
        regex=not canary and (_silent(ing, "use-regex") is True or target),
        app_root=None if canary else _silent(ing, "app-root"),
        force_ssl=not canary and _silent(ing, "force-ssl-redirect") is True,
        aliases=() if canary else (_silent(ing, "server-alias") or ()),
        www=not canary and _silent(ing, "from-to-www-redirect") is True,
        redirect_code=_own_redirect_code(ing))


def _own_redirect_code(ing: Ingress) -> int:
    """The HTTP-to-HTTPS redirect code of our own ssl-redirect-code on the Ingress, else ingress-nginx's."""
    a = XDS.get("ssl-redirect-code")
    raw = ing.meta.annotation(XDS.prefix + "ssl-redirect-code")
    try:
        return int(a.parse(raw)) if a is not None and raw is not None else NGINX_REDIRECT_CODE
    except p.Invalid:
        return NGINX_REDIRECT_CODE


def _original_path(ing: Ingress | None, source: ir.Source) -> tuple[str, str] | None:
    """(path, field) of the Ingress path a route was made from."""
    if ing is None or not source.field.endswith(".backend"):
        return None
    want = source.field[: -len(".backend")]
    for rule in ing.rules:
        for hp in rule.paths:
            if hp.field == want:
                return hp.path, hp.field
    return None


def _diag(ing: Ingress, field: str, reason: str, message: str, severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name, field=field,
                      reason=reason, message=message, severity=severity)


def _resolve_rewrite(route: ir.Route, ing: Ingress | None, diagnostics: list[Diagnostic]) -> ir.Route:
    pol = route.policy
    if pol is None or pol.rewrite_target is None:
        return route
    if route.match is None or route.match.type != "Regex":
        return dataclasses.replace(route, policy=dataclasses.replace(pol, rewrite_target=None))
    pattern = "^" + route.match.regex
    groups = re.compile(pattern).groups
    target = pol.rewrite_target
    refs = [int(d) for d in re.findall(r"\\(\d)", target)]
    if any(r > groups for r in refs) and ing is not None:
        key = PREFIX + "rewrite-target"
        diagnostics.append(_diag(ing, field_of(key), "MissingGroup",
                                 f"{key} refers to group \\{max(refs)} (${max(refs)}), but path "
                                 f"{route.match.path!r} has {groups} group(s); nginx inserts nothing for it, and so "
                                 "does this rewrite.", Severity.WARNING))
        target = re.sub(r"\\(\d)", lambda m: m[0] if int(m[1]) <= groups else "", target)
    return dataclasses.replace(route, policy=dataclasses.replace(
        pol, rewrite_target=None, prefix_rewrite=None, regex_rewrite=ir.RegexRewrite(pattern=pattern,
                                                                                      substitution=target)))


@dataclass(frozen=True, slots=True)
class _Staged:
    """What `_host_settings` made of one virtual host of one route configuration, and what it read: reused by the
    next finish while the virtual host is the very same object, the Ingresses of its routes the same objects and
    its regex flags the same."""

    before: ir.VirtualHost
    sources: frozenset[tuple[str, str]]  # the Ingresses of its routes
    regex: tuple[bool, bool]  # (its host is a regex host, the host-less rules' host is)
    owners: tuple[tuple[str, str], ...]  # of `before`
    owners_regex: bool  # whether one of them asks for regex paths
    after: ir.VirtualHost
    after_owners: tuple[tuple[str, str], ...]
    names: bool  # whether one of `after_owners` asks for server aliases or a www name
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class FinishMemo:
    ingresses: Mapping[tuple[str, str], Ingress]
    options: Mapping[tuple[str, str], _HostOptions]
    staged: Mapping[str, Mapping[str, _Staged]]  # route configuration -> virtual host -> its staging
    final: Mapping[str, Mapping[str, ir.VirtualHost]]  # route configuration -> virtual host -> as finished


def finish(configs: tuple[ir.RouteConfiguration, ...], served: Iterable[Ingress], settings: TranslateSettings,
           diagnostics: list[Diagnostic], tls_state: TLSState = NO_TLS_STATE) -> tuple[ir.RouteConfiguration, ...]:
    """`finish_memoized` without a memo."""
    return finish_memoized(configs, served, settings, diagnostics, tls_state)[0]


def finish_memoized(configs: tuple[ir.RouteConfiguration, ...],
                    served: Iterable[Ingress] | Mapping[tuple[str, str], Ingress],
                    settings: TranslateSettings, diagnostics: list[Diagnostic], tls_state: TLSState = NO_TLS_STATE,
                    memo: FinishMemo | None = None, changed: Iterable[tuple[str, str]] | None = None
                    ) -> tuple[tuple[ir.RouteConfiguration, ...], FinishMemo]:
    """Regex paths (ingress-nginx's use-regex, host-wide) and the nginx host settings (app-root, server-alias,
    from-to-www-redirect, force-ssl-redirect) on the assembled route configurations. Without nginx
    compatibility, only refuses the ImplementationSpecific paths that are no URL path (regex syntax).

    Aliases and www names are decided once, on the plain HTTP configuration (where every host is), and then
    served over HTTPS by the filter chain that their TLS server name selects (`tls_state`), only when that is
    the chain of their host: anywhere else they get 421, as any name of another chain does (translate/tls.py).

    `memo` (of the previous finish): each virtual host that is the same object, with the same Ingresses behind
    its routes, is not staged again (an incremental translation changes a few); the result is the same.
    `changed`, with a memo: the keys of the Ingresses that are not the very objects the memo's finish had (new,
    changed or gone), when the caller knows them; else they are found by comparing every one."""
    ings = served if isinstance(served, Mapping) else {(i.meta.namespace, i.meta.name): i for i in served}
    was = memo.ingresses if memo is not None else {}
    if memo is None or changed is None:
        dirty = {k for k, i in ings.items() if was.get(k) is not i}
        dirty.update(k for k in was if k not in ings)
    else:
        dirty = set(changed)
    opts: dict[tuple[str, str], _HostOptions] = {}
    if settings.nginx_compat:
        if memo is not None:
            opts = dict(memo.options)
            for k in dirty:
                opts.pop(k, None)
        for k in dirty if memo is not None else ings:
            if k in ings:
                opts[k] = _options(ings[k])

    def precedence(k: tuple[str, str]) -> tuple[str, str, str]:  # oldest first (translate._precedence)
        return (ings[k].meta.creation_timestamp, k[0], k[1])

    def ing_of(route: ir.Route) -> Ingress | None:
        return ings.get((route.source.namespace, route.source.name)) if route.source.kind == KIND_INGRESS else None

    def owners(vh: ir.VirtualHost) -> tuple[tuple[str, str], ...]:
        keys = {(r.source.namespace, r.source.name) for r in vh.routes
                if r.guard is None or not r.guard.invert}
        return tuple(sorted(keys & ings.keys(), key=precedence))

    def sources(vh: ir.VirtualHost) -> frozenset[tuple[str, str]]:
        return frozenset((r.source.namespace, r.source.name) for r in vh.routes if r.source.kind == KIND_INGRESS)

    def asks_regex(keys: Iterable[tuple[str, str]]) -> bool:
        return any(opts.get(k, None) is not None and opts[k].regex for k in keys)

    def names_of(keys: Iterable[tuple[str, str]]) -> bool:
        return any((o := opts.get(k)) is not None and (o.aliases or o.www) for k in keys)

    # What of the previous staging still holds (see _Staged), and every virtual host's owners.
    previous = memo.staged if memo is not None else {}
    regex_hosts: set[str] = set()
    plan = []
    for rc in configs:
        before_rc = previous.get(rc.name, {})
        items = []
        for vh in rc.virtual_hosts:
            old = before_rc.get(vh.name)
            if old is not None and old.before is vh and dirty.isdisjoint(old.sources):
                if old.owners_regex:
                    regex_hosts.add(vh.name)
                items.append((vh, old, old.owners))
            else:
                keys = owners(vh)
                if asks_regex(keys):
                    regex_hosts.add(vh.name)
                items.append((vh, None, keys))
        plan.append((rc, items))
    regex_all = ir.CATCH_ALL_HOST in regex_hosts
    staged_by: dict[str, dict[str, _Staged]] = {}
    staged = []
    named: list[tuple[ir.VirtualHost, tuple[tuple[str, str], ...]]] = []  # HTTP hosts whose owners add names
    for rc, items in plan:
        by_host: dict[str, _Staged] = {}
        out_vhosts = []
        for vh, st, keys in items:
            regex = (vh.name in regex_hosts, regex_all)
            if st is None or st.regex != regex:
                mine: list[Diagnostic] = []
                after = _host_settings(rc, vh, regex_hosts, ing_of, owners, opts, mine)
                after_keys = owners(after)
                st = _Staged(before=vh, sources=sources(vh), regex=regex, owners=keys,
                             owners_regex=asks_regex(keys), after=after, after_owners=after_keys,
                             names=names_of(after_keys), diagnostics=tuple(mine))
            by_host[vh.name] = st
            if st.diagnostics:
                diagnostics.extend(st.diagnostics)
            if st.names and rc.name == ir.HTTP_ROUTE_CONFIG:
                named.append((st.after, st.after_owners))
            out_vhosts.append(st.after)
        staged_by[rc.name] = by_host
        staged.append((rc, out_vhosts))
    http = next((vhosts for rc, vhosts in staged if rc.name == ir.HTTP_ROUTE_CONFIG), [])
    aliases, www = _host_names(http, named, opts, ings, diagnostics)
    if aliases or www:
        _alias_warnings(aliases, tls_state, ings, diagnostics)
    chains = {tc.route_config_name: tc for tc in tls_state.chains}
    known = memo.final if memo is not None else {}
    final: dict[str, dict[str, ir.VirtualHost]] = {}
    out = []
    for rc, vhosts in staged:
        if rc.name == ir.HTTP_ROUTE_CONFIG:
            vhosts = _http_names(vhosts, aliases, www)
        elif rc.name in chains:
            vhosts = _chain_names(vhosts, chains[rc.name], tls_state, aliases, www)
        # The names made here (aliases added to a host, www hosts) are new objects each time: an equal one of the
        # previous finish is kept instead, so that what encodes virtual hosts finds it already encoded.
        known_rc = known.get(rc.name, {})
        final_rc: dict[str, ir.VirtualHost] = {}
        kept = []
        for vh in vhosts:
            before = known_rc.get(vh.name)
            if before is not None and before is not vh and before == vh:
                vh = before
            final_rc[vh.name] = vh
            kept.append(vh)
        final[rc.name] = final_rc
        catch = [vh for vh in kept if vh.name == ir.CATCH_ALL_HOST]
        rest = sorted([vh for vh in kept if vh.name != ir.CATCH_ALL_HOST], key=lambda v: v.name)
        out.append(dataclasses.replace(rc, virtual_hosts=tuple(rest + catch)))
    return tuple(out), FinishMemo(ingresses=ings, options=opts, staged=staged_by, final=final)


def _host_settings(rc: ir.RouteConfiguration, vh: ir.VirtualHost, regex_hosts: set[str],
                   ing_of: Callable[[ir.Route], Ingress | None], owners: Callable[[ir.VirtualHost], list],
                   opts: Mapping[tuple[str, str], _HostOptions], diagnostics: list[Diagnostic]) -> ir.VirtualHost:
    """One virtual host with its regex paths, app-root and (plain HTTP) force-ssl-redirect."""
    routes = []
    for r in vh.routes:
        inverted = r.guard is not None and r.guard.invert
        regex = (ir.CATCH_ALL_HOST in regex_hosts) if inverted else (vh.name in regex_hosts)
        ing = ing_of(r)
        if r.match is not None:
            orig = _original_path(ing, r.source)
            path, field = orig if orig is not None else (r.match.path, r.source.field)
            if regex:
                rx, why = path_regex(path)
                if not rx:
                    if ing is not None:
                        diagnostics.append(_diag(ing, f"{field}.path", "InvalidRegexPath",
                                                 f"{field}.path {path!r} is a regex on host {vh.name!r} (use-regex), "
                                                 f"and is not accepted: use {why}. The path is not served."))
                    continue
                r = dataclasses.replace(r, match=ir.PathMatch(type="Regex", path=path, regex=rx))
            elif not is_url_path(r.match.path):
                if ing is not None:
                    diagnostics.append(_diag(ing, f"{field}.path", "InvalidPath",
                                             f"{field}.path {path!r} has characters a URL path cannot contain; it is "
                                             f"read as a regex only with --nginx-compat on a host with "
                                             f"{PREFIX}use-regex. The path is not served."))
                continue
        routes.append(_resolve_rewrite(r, ing, diagnostics))
    vh = dataclasses.replace(vh, routes=tuple(routes))
    keys = owners(vh)
    mine = [(k, opts[k]) for k in keys if k in opts]
    force = next((o for _k, o in mine if o.force_ssl), None)
    if force is not None and rc.name == ir.HTTP_ROUTE_CONFIG and not vh.require_tls:
        vh = dataclasses.replace(vh, require_tls=True,
                                 redirect_code=None if force.redirect_code == 301 else force.redirect_code)
    root = next(((k, o.app_root) for k, o in mine if o.app_root), None)
    if root is not None:
        k, path = root
        src = ir.Source(kind=KIND_INGRESS, namespace=k[0], name=k[1], field=field_of(PREFIX + "app-root"))
        vh = dataclasses.replace(vh, routes=(ir.Route(
            name=f"{k[0]}/{k[1]}/app-root", match=ir.PathMatch(type="Exact", path="/"), source=src,
            action=ir.RouteAction(redirect=ir.Redirect(scheme="", host="", path=path, code=302))), *vh.routes))
    return vh


@dataclass(frozen=True, slots=True)
class _Www:
    host: str  # the host it redirects to
    ingress: tuple[str, str]


def _host_names(http: list[ir.VirtualHost], named: list[tuple[ir.VirtualHost, tuple[tuple[str, str], ...]]],
                opts: Mapping[tuple[str, str], _HostOptions], ings: Mapping[tuple[str, str], Ingress],
                diagnostics: list[Diagnostic]) -> tuple[dict[str, str], dict[str, _Www]]:
    """The server aliases (alias -> host) and from-to-www names (name -> redirect) of the hosts, decided on the
    plain HTTP configuration (`http`; `named`: those of its virtual hosts, in its order, whose owners, in
    precedence order, ask for names): no name twice (a host's own names first, then by host name and Ingress
    age; aliases before from-to-www names)."""
    taken = {d for vh in http for d in vh.domains}
    aliases: dict[str, str] = {}
    www: dict[str, _Www] = {}
    for vh, keys in named:
        if vh.name == ir.CATCH_ALL_HOST:
            continue
        for k in keys:
            o = opts.get(k)
            if o is None:
                continue
            for alias in o.aliases:
                if alias in vh.domains or aliases.get(alias) == vh.name:
                    continue
                if alias in taken:
                    diagnostics.append(_diag(ings[k], field_of(PREFIX + "server-alias"), "AliasConflict",
                                             f"{PREFIX}server-alias {alias!r} is already a host or an alias of another "
                                             "host, so it is ignored here.", Severity.WARNING))
                    continue
                taken.add(alias)
                aliases[alias] = vh.name
            if o.www and not vh.name.startswith("*."):
                other = vh.name[4:] if vh.name.startswith("www.") else "www." + vh.name
                if other not in taken:
                    taken.add(other)
                    www[other] = _Www(host=vh.name, ingress=k)
    return aliases, www


def _www_host(name: str, w: _Www, like: ir.VirtualHost | None, headers: ir.HeaderMutation | None = None
              ) -> ir.VirtualHost:
    src = ir.Source(kind=KIND_INGRESS, namespace=w.ingress[0], name=w.ingress[1],
                    field=field_of(PREFIX + "from-to-www-redirect"))
    return ir.VirtualHost(name=name, domains=(name,), routes=(ir.Route(
        name=f"{w.ingress[0]}/{w.ingress[1]}/from-to-www", match=None, source=src,
        action=ir.RouteAction(redirect=ir.Redirect(scheme="", host=w.host, code=308))),),
        require_tls=like.require_tls if like is not None else False,
        redirect_code=like.redirect_code if like is not None else None, response_headers=headers)


def _http_names(vhosts: list[ir.VirtualHost], aliases: Mapping[str, str], www: Mapping[str, _Www]
                ) -> list[ir.VirtualHost]:
    """Plain HTTP: every alias on its host, every from-to-www name redirected (as its host, to HTTPS first when
    its host is)."""
    by_host: dict[str, list[str]] = {}
    for alias, host in aliases.items():
        by_host.setdefault(host, []).append(alias)
    out = [dataclasses.replace(vh, domains=(*vh.domains, *by_host[vh.name])) if vh.name in by_host else vh
           for vh in vhosts]
    named = {vh.name: vh for vh in vhosts}
    return out + [_www_host(name, w, named.get(w.host)) for name, w in www.items()]


def _misdirected_only(vh: ir.VirtualHost) -> bool:
    return bool(vh.routes) and all(r.name == ir.MISDIRECTED_ROUTE for r in vh.routes)


def _chain_names(vhosts: list[ir.VirtualHost], tc: ir.TLSFilterChain, state: TLSState,
                 aliases: Mapping[str, str], www: Mapping[str, _Www]) -> list[ir.VirtualHost]:
    """One HTTPS filter chain's configuration: an alias is served on its host's virtual host where the alias, as
    a TLS server name, selects this chain and so does its host; a from-to-www name is redirected where it selects
    this chain. Elsewhere such a name gets 421 where a virtual host of this chain would otherwise serve it. A
    virtual host this chain had made for the name (from a wider one: its certificate lists the alias) is
    replaced."""
    names = set(aliases) | set(www)
    kept = [vh for vh in vhosts if vh.name not in names]
    by_domain = {d: vh for vh in kept for d in vh.domains}
    headers = ir.HeaderMutation(set=((HSTS_HEADER, state.hsts[tc.name]),)) if tc.name in state.hsts else None
    add: dict[str, list[str]] = {}
    extra: list[ir.VirtualHost] = []

    def misdirected(name: str) -> None:
        found = select_virtual_host(by_domain, name)
        if found is not None and not _misdirected_only(found):
            extra.append(ir.VirtualHost(name=name, domains=(name,), routes=(misdirected_route(tc),)))

    for alias, host in aliases.items():
        if state.owner(alias)[0] == tc.name and state.owner(host)[0] == tc.name and host in by_domain:
            add.setdefault(by_domain[host].name, []).append(alias)
        else:
            misdirected(alias)
    for name, w in www.items():
        if state.owner(name)[0] == tc.name:
            extra.append(_www_host(name, w, None, headers))
        else:
            misdirected(name)
    out = [dataclasses.replace(vh, domains=(*vh.domains, *add[vh.name])) if vh.name in add else vh for vh in kept]
    return out + extra


def _alias_warnings(aliases: Mapping[str, str], state: TLSState, ings: Mapping[tuple[str, str], Ingress],
                    diagnostics: list[Diagnostic]) -> None:
    """An alias of a host served over HTTPS with a certificate of its own that the alias's TLS server name does
    not select: HTTPS requests for the alias get 421 (or no handshake)."""
    by_host: dict[str, list[Ingress]] | None = None
    for alias, host in sorted(aliases.items()):
        chain, server_name = state.owner(host)
        if chain is None or server_name is None or state.owner(alias)[0] == chain:
            continue
        if by_host is None:  # the Ingresses with a rule for each host, oldest first (translate._precedence)
            by_host = {}
            for ing in sorted(ings.values(), key=lambda i: (i.meta.creation_timestamp, i.meta.namespace,
                                                             i.meta.name)):
                for h in dict.fromkeys(r.host for r in ing.rules):
                    by_host.setdefault(h, []).append(ing)
        for ing in by_host.get(host, ()):
            if alias in (_silent(ing, "server-alias") or ()):
                diagnostics.append(_diag(
                    ing, field_of(PREFIX + "server-alias"), "AliasWithoutCertificate",
                    f"{PREFIX}server-alias {alias!r} is not served over HTTPS: the certificate of host {host!r} does "
                    "not cover it, so HTTPS requests for it get 421 Misdirected Request (or no TLS handshake), and "
                    "plain HTTP ones are redirected there when the host's are. List it in the hosts of that "
                    "certificate's spec.tls entry.", Severity.WARNING))
                break


# --- the generated docs page -------------------------------------------------------------------------------

_STATUS_WORDS = {EXACT: "exact", DIFFERENCE: "with a difference", UNSUPPORTED: "unsupported"}


def status_of(r: Row) -> str:
    if r.snippet:
        return "never executed"
    if r.pending:
        return "pending"
    return _STATUS_WORDS[r.status]


def markdown() -> str:
    """The table of docs/moving-from-ingress-nginx.md (between its generated markers)."""
    out = []
    group = None
    for r in TABLE:
        if r.group != group:
            group = r.group
            out.append(f"\n### {group}\n\n| Annotation | Here | In ingress-nginx | What differs, or why not | Instead |"
                       "\n|---|---|---|---|---|")
        note = r.note if r.status != EXACT else ""
        out.append(f"| `{r.name}` | {status_of(r)} | {r.doc} | {note} | "
                   f"{('`' + r.replacement + '`') if r.replacement and r.replacement != 'none' else ''} |")
    return "\n".join(out).lstrip("\n") + "\n"


def counts() -> Mapping[str, int]:
    out: dict[str, int] = {}
    for r in TABLE:
        out[status_of(r)] = out.get(status_of(r), 0) + 1
    return out
