"""ingress-nginx's auth-signin, auth-signin-redirect-param and auth-request-redirect: their values as templates
(ir.Template: literal text and nginx variables, computed per request by Envoy, see envoy/signin.py). Pure.

ingress-nginx turns a 401 of the auth-url into `return 302 URL` where URL is auth-signin with
`PARAM=$pass_access_scheme://$http_host$escaped_request_uri` appended (PARAM: auth-signin-redirect-param,
default rd), unless the URL's query already has a non-empty PARAM (`buildAuthSignURL`); the variables of the
URL are nginx's. It sends the auth-url X-Auth-Request-Redirect: auth-request-redirect (with its variables), by
default $request_uri.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from xds_ingress import ir
from xds_ingress.translate import parsers as p

# The nginx variables accepted, and their Envoy header formatter when Envoy has one (None: only the Lua script of
# envoy/signin.py computes them).
VARIABLES: dict[str, str | None] = {
    "request_uri": "%REQ(:path)%",  # the request's path and query
    "escaped_request_uri": None,  # the same, URL-escaped as nginx's set_escape_uri
    "http_host": "%REQ(:authority)%",  # the Host header, with its port
    "best_http_host": "%REQ(:authority)%",  # ingress-nginx: the Host header (X-Forwarded-Host is not trusted)
    "host": None,  # the Host header in lower case, without the port
    "scheme": None,  # http or https: the client's connection
    "pass_access_scheme": "%REQ(x-forwarded-proto)%",  # the scheme, or a trusted hop's X-Forwarded-Proto
}
DEFAULT_REDIRECT_PARAM = "rd"
DEFAULT_REQUEST_REDIRECT: ir.Template = (("var", "request_uri"),)
# What ingress-nginx appends to the sign-in URL: PARAM=$pass_access_scheme://$http_host$escaped_request_uri
_RETURN_URL: ir.Template = (("var", "pass_access_scheme"), ("text", "://"), ("var", "http_host"),
                            ("var", "escaped_request_uri"))
MAX_LENGTH = 2048

_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_NAMES = ", ".join("$" + v for v in VARIABLES)


def template(value: str, what: str) -> ir.Template:
    """`value` as literal text and the nginx variables of VARIABLES ($name or ${name}); raises p.Invalid for any
    other `$`, a control character or a value longer than MAX_LENGTH. `what`: what the value must be, for the
    sentence."""
    accepted = f"{what}, with no nginx variable other than {_NAMES}"
    if not value or len(value) > MAX_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise p.Invalid(accepted)
    parts: list[tuple[str, str]] = []
    at = 0
    for m in _VAR.finditer(value):
        name = m[1] or m[2]
        if name not in VARIABLES:
            raise p.Invalid(accepted + f" (${name} is not one)")
        if m.start() > at:
            parts.append(("text", value[at:m.start()]))
        parts.append(("var", name))
        at = m.end()
    if "$" in value[at:] or any("$" in t for k, t in parts if k == "text"):
        raise p.Invalid(accepted)
    if at < len(value):
        parts.append(("text", value[at:]))
    return tuple(parts)


def text(parts: ir.Template) -> str:
    """The template written back with its variables as $name."""
    return "".join(v if k == "text" else "$" + v for k, v in parts)


_SIGNIN_URL = re.compile(r"https?://[^/?#\s]+(?:[/?][^#\s]*)?", re.IGNORECASE)


def signin_url(value: str) -> ir.Template:
    """auth-signin: an absolute http(s) URL (no fragment, no spaces) whose host, path and query may hold the
    variables of VARIABLES."""
    what = "an absolute http(s) URL without spaces or a #fragment (e.g. 'https://$host/oauth2/start?rd=" \
           "$escaped_request_uri')"
    v = value.strip()
    parts = template(v, what)
    if not _SIGNIN_URL.fullmatch(v) or any(ord(c) >= 127 for c in v):
        raise p.Invalid(f"{what}, with no nginx variable other than {_NAMES}")
    return parts


def redirect_param(value: str) -> str:
    """auth-signin-redirect-param: a query parameter name."""
    v = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.~-]{1,64}", v):
        raise p.Invalid("a query parameter name of letters, digits, '_', '.', '~' and '-' (at most 64), e.g. "
                        "'redirect_uri'")
    return v


def request_redirect(value: str) -> ir.Template:
    """auth-request-redirect: the header's value, printable ASCII."""
    v = value.strip()
    parts = template(v, "a header value of printable ASCII (e.g. '$scheme://$host$request_uri')")
    if any(ord(c) >= 127 for c in v):
        raise p.Invalid(f"a header value of printable ASCII, with no nginx variable other than {_NAMES}")
    return parts


def _unescape(s: str) -> bytes | None:
    """Go's url.QueryUnescape: '+' is a space; None for a bad %-escape."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", s):
        return None
    return unquote_to_bytes(s.replace("+", " "))


def _has_param(query: str, param: str) -> tuple[bool, bool]:
    """(the query has a parameter, the first value of `param` is not empty), as Go's url.Query() reads it:
    ingress-nginx's buildAuthSignURL reads the sign-in URL so, before nginx expands its variables."""
    values: dict[bytes, list[bytes]] = {}
    for piece in query.split("&"):
        if not piece or ";" in piece:
            continue
        key, _, val = piece.partition("=")
        k, v = _unescape(key), _unescape(val)
        if k is None or v is None:
            continue
        values.setdefault(k, []).append(v)
    first = values.get(param.encode(), [b""])[0]
    return bool(values), first != b""


def signin_location(parts: ir.Template, param: str = DEFAULT_REDIRECT_PARAM) -> ir.Template:
    """The Location of the redirect: ingress-nginx's buildAuthSignURL on the sign-in URL."""
    raw = text(parts)
    _, q, query = raw.partition("?")
    any_param, has = _has_param(query, param) if q else (False, False)
    if has:
        return parts
    sep = "&" if any_param else "?"
    out = list(parts)
    if out and out[-1][0] == "text":
        out[-1] = ("text", out[-1][1] + f"{sep}{param}=")
    else:
        out.append(("text", f"{sep}{param}="))
    return tuple(out) + _RETURN_URL


def formatter(parts: ir.Template) -> str | None:
    """The template as an Envoy header formatter, or None when one of its variables needs the Lua script."""
    out = []
    for kind, value in parts:
        if kind == "text":
            out.append(value.replace("%", "%%"))
        elif VARIABLES.get(value) is None:
            return None
        else:
            out.append(VARIABLES[value])
    return "".join(out)


def needs_script(e: ir.ExternalAuth) -> bool:
    """Whether a route's external authorization needs envoy/signin.py's Lua filters: a sign-in URL, or an
    X-Auth-Request-Redirect only the script can compute."""
    if e.disabled or e.service is None or e.service.protocol != "http" and not e.signin:
        return False
    return bool(e.signin) or (bool(e.request_redirect) and formatter(e.request_redirect) is None)
