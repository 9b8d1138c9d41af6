"""Headers from ConfigMaps: ingress-nginx's custom-headers and auth-proxy-set-headers. Pure.

Both annotations name a ConfigMap ("NAMESPACE/NAME", or "NAME") of the Ingress's own namespace (another
namespace's is refused in translate/nginx.py, as Secrets are) whose `data` is a list of headers: each key a
header name, its value the header's value. `resolve` turns the reference (policy keys `REFERENCE_KEYS`, set by
nginx.py) into the policy keys the rest of translation reads:

- custom-headers -> `response_headers.set`: the headers are set (replacing the backend's of the same name) on
  every response of the Ingress's paths. As ingress-nginx (>= 1.10), a header must be on the operator's list
  (`xds serve --global-allowed-response-headers`, none by default); names are RFC 7230 tokens other than the
  hop-by-hop headers, Host and x-envoy-*, values printable text. Any header refused, a missing or too large
  ConfigMap: a diagnostic naming the ConfigMap key, and no header of it is set (all or nothing, as ingress-nginx,
  which refuses the paths instead: 503). Not protective: the paths are still served.
- auth-proxy-set-headers -> `auth.request_headers_to_add`: headers added to the request sent to the auth-url
  service. Values may use a few nginx variables that Envoy's header formatter can say (`NGINX_VARIABLES`); any
  other is refused. Protective: the authorization service may decide on these headers, so a missing ConfigMap or
  any refused header makes the Ingress's paths answer 503 (`auth.refused`, as ingress-nginx), never served with
  the check asked without them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from xds_ingress.diagnostics import Severity
from xds_ingress.model import CONFIG_MAP_MAX_BYTES, ConfigMap, Ingress
from xds_ingress.translate import parsers as p
from xds_ingress.translate.annotations import Parsed
from xds_ingress.translate.settings import TranslateSettings

# Policy keys set by translate/nginx.py: the name of a ConfigMap of the Ingress's namespace.
RESPONSE_HEADERS_REF = "configmap.response_headers"  # custom-headers
AUTH_REQUEST_HEADERS_REF = "configmap.auth_request_headers"  # auth-proxy-set-headers
REFERENCE_KEYS = (RESPONSE_HEADERS_REF, AUTH_REQUEST_HEADERS_REF)
ALLOW_FLAG = "xds serve --global-allowed-response-headers"

# nginx variables an auth-proxy-set-headers value may use, as Envoy's header formatter says them.
NGINX_VARIABLES = {
    "http_host": "%REQ(:authority)%",
    "request_uri": "%REQ(:path)%",
    "request_method": "%REQ(:method)%",
    "remote_addr": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "scheme": "%REQ(:scheme)%",
}
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_HTTP_VARIABLE = re.compile(r"http_([a-z0-9_]{1,127})")

Report = Callable[[Any, str, str, Severity], None]


def _envoy_value(value: str) -> str:
    """An auth-proxy-set-headers value in Envoy's header formatter syntax: text literal (`%` doubled), the
    variables of NGINX_VARIABLES and $http_NAME (the request's header NAME, '_' read as '-') as commands."""
    out: list[str] = []
    pos = 0
    for m in _VARIABLE.finditer(value):
        out.append(value[pos:m.start()].replace("%", "%%"))
        name = (m.group(1) or m.group(2)).lower()
        if name in NGINX_VARIABLES:
            out.append(NGINX_VARIABLES[name])
        elif (h := _HTTP_VARIABLE.fullmatch(name)) is not None:
            out.append(f"%REQ({h.group(1).replace('_', '-')})%")
        else:
            hint = "; $http_host is the Host header as the client sent it" if name == "host" else ""
            raise p.Invalid(f"text with only the nginx variables $http_NAME, ${', $'.join(NGINX_VARIABLES)} "
                            f"(${name} is not one Envoy can send{hint})")
        pos = m.end()
    rest = value[pos:]
    if "$" in rest:
        raise p.Invalid("text where '$' starts an nginx variable ($http_NAME, $" + ", $".join(NGINX_VARIABLES) + ")")
    out.append(rest.replace("%", "%%"))
    return "".join(out)


def _headers(cm: ConfigMap, at: Parsed, report: Report, *, response: bool,
             allowed: tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
    """The ConfigMap's headers (name, value), or None when one of them is refused (each diagnosed)."""
    where = f"ConfigMap {cm.meta.namespace}/{cm.meta.name}"
    if cm.too_large:
        report(at, "InvalidConfigMap", f"names {where}, whose data is larger than {CONFIG_MAP_MAX_BYTES // 1024} KiB "
               "(not kept), so none of it is used. Keep only the headers in it.", Severity.ERROR)
        return None
    if len(cm.data) > p.MAX_HEADERS:
        report(at, "InvalidConfigMap", f"names {where}, which has {len(cm.data)} keys; at most {p.MAX_HEADERS} "
               "headers are read, so none of it is used. Split it, or remove keys.", Severity.ERROR)
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for key, raw in cm.data:
        try:
            name = p.header_name(key, request=True)
        except p.Invalid as exc:
            report(at, "InvalidHeader", f"names {where}, whose key {key!r} is not a header this can set: use "
                   f"{exc.accepted}.", Severity.ERROR)
            ok = False
            continue
        if response and name not in allowed:
            report(at, "HeaderNotAllowed", f"names {where}, whose key {key!r} is not among the response headers "
                   f"allowed by {ALLOW_FLAG} ({', '.join(allowed) or 'none'}). Ask the operator to allow it, or "
                   "remove the key.", Severity.ERROR)
            ok = False
            continue
        try:
            value = p.header_value(raw)
            if not value:
                raise p.Invalid("a header value that is not empty")
            out.append((name, value if response else _envoy_value(value)))
        except p.Invalid as exc:
            report(at, "InvalidHeader", f"names {where}, whose value of key {key!r} is not valid: use "
                   f"{exc.accepted}.", Severity.ERROR)
            ok = False
    names = [n for n, _ in out]
    for n in sorted({n for n in names if names.count(n) > 1}):
        report(at, "InvalidHeader", f"names {where}, which sets header {n!r} twice (keys differing only in case); "
               "keep one.", Severity.ERROR)
        ok = False
    return tuple(sorted(out)) if ok else None


def _config_map(ing: Ingress, ref: Parsed, config_maps: Mapping[tuple[str, str], ConfigMap],
                report: Report, consequence: str) -> ConfigMap | None:
    ns = ing.meta.namespace
    cm = config_maps.get((ns, ref.value))
    if cm is None:
        report(ref, "ConfigMapNotFound", f"names ConfigMap {ns}/{ref.value}, which does not exist, so {consequence}. "
               "Create it in this namespace.", Severity.ERROR)
    return cm


def resolve(values: Mapping[str, Parsed], ing: Ingress, config_maps: Mapping[tuple[str, str], ConfigMap],
            settings: TranslateSettings, report: Report) -> Mapping[str, Parsed]:
    """`values` with the ConfigMap references (REFERENCE_KEYS) replaced by the headers they name."""
    if not any(k in values for k in REFERENCE_KEYS):
        return values
    out = {k: v for k, v in values.items() if k not in REFERENCE_KEYS}
    ref = values.get(RESPONSE_HEADERS_REF)
    if ref is not None:
        cm = _config_map(ing, ref, config_maps, report, "no header is added to the responses")
        headers = None if cm is None else _headers(cm, ref, report, response=True,
                                                   allowed=settings.global_allowed_response_headers)
        if headers and "response_headers.set" in out:
            report(ref, "OverriddenAnnotation", f"is ignored: {out['response_headers.set'].annotation} sets this "
                   "Ingress's response headers, and wins. Set the headers in one of them.", Severity.WARNING)
        elif headers:
            out["response_headers.set"] = Parsed(value=headers, field=ref.field, annotation=ref.annotation)
    ref = values.get(AUTH_REQUEST_HEADERS_REF)
    if ref is not None:
        if "auth.url" not in out:
            if not any(k in out for k in ("auth.url_refused", "auth.refused")):
                report(ref, "IgnoredAnnotation", "is ignored without auth-url (the service its headers are sent "
                       "to).", Severity.WARNING)
            return out
        consequence = "every path of this Ingress answers 503 (the authorization service would miss its headers)"
        cm = _config_map(ing, ref, config_maps, report, consequence)
        headers = None if cm is None else _headers(cm, ref, report, response=False, allowed=())
        if headers is None:
            if cm is not None:
                report(ref, "AuthenticationUnavailable", f"cannot be honoured (see above), so {consequence}.",
                       Severity.ERROR)
            out["auth.refused"] = Parsed(value=None, field=ref.field, annotation=ref.annotation)
        elif headers:
            out["auth.request_headers_to_add"] = Parsed(value=headers, field=ref.field, annotation=ref.annotation)
    return out


def references(values: Mapping[str, Parsed], namespace: str) -> set[tuple[str, str]]:
    """The ConfigMaps (namespace, name) `values` name."""
    return {(namespace, values[k].value) for k in REFERENCE_KEYS if k in values}


__all__ = ["REFERENCE_KEYS", "NGINX_VARIABLES", "resolve", "references"]
