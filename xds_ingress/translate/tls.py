"""Edge TLS: the HTTPS listener's filter chains, their route configurations, and the HTTP redirects.

What an Ingress's `spec.tls` and TLS annotations (`xds-ingress.io/` `ssl-redirect-code`, `hsts*`,
`tls-*`, `alpn`, `client-*`) make of the edge, per host: a host's TLS settings are those of the
Ingress that holds its certificate (the first by precedence to list it in `spec.tls`).

Filter chains. One per Secret and set of TLS settings, matched by SNI on the hosts that use
them: two Ingresses sharing a certificate with different settings get a chain each, so that a
host never gets the settings (a TLS minimum, a client certificate requirement) of another
Ingress. A host listed by two Ingresses with the same certificate and different settings gets
the first's, and the other a `TLSSettingsConflict` diagnostic. With `xds serve
--default-certificate`, one more chain without server names serves that certificate to every
other server name and to clients that send none.

Route configurations, one per chain (`https/<chain>`; the default certificate's is `https`). A
request is served on a chain only for a Host that, sent as the SNI, would have selected that
same chain (Envoy's selection: the exact name, then the longest `*.` suffix at any depth, then
the chain without server names); any other Host gets 421 Misdirected Request, so that a client
cannot connect with the SNI (and the TLS settings, or the absent client certificate) of host A
and then ask for host B. So each chain's configuration holds: the virtual hosts whose hosts it
selects (routes as on plain HTTP), plus the Strict-Transport-Security header of its settings;
a 421 virtual host for every more specific name that another chain selects; and a catch-all
answering 421 (the default certificate's chain serves the catch-all instead: the rules without
host, the default backend, and every host without a certificate of its own).

Plain HTTP. A host that a certificate's chain serves is redirected to HTTPS (301, or 308 with
`ssl-redirect-code`), unless the Ingress holding that certificate says `ssl-redirect: "false"`,
which is overruled when it requires client certificates (plain HTTP would bypass them).

Client certificates (`client-ca-secret`): the CA bundle (`ca.crt` of a Secret of the Ingress's
own namespace) goes to Envoy over SDS as a validation context named `namespace/secret/ca.crt`.
When it is missing or unusable and certificates are required, the Ingress's hosts are not served
over HTTPS at all (never without the verification asked for). `x-forwarded-client-cert` is
removed from every request (Envoy's SANITIZE, the default) except on a chain with
`client-cert-forward`, where it is set from the verified certificate (SANITIZE_SET).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import KIND_INGRESS, Ingress, Secret
from xds_ingress.translate.annotations import XDS, Parsed, field_of
from xds_ingress.translate.settings import TranslateSettings

__all__ = ["IngressTLS", "NO_TLS", "TLSState", "NO_TLS_STATE", "ingress_tls", "plan", "http_virtual_host",
           "route_configurations", "ordered", "ca_sds_name", "sni_owner", "select_virtual_host", "misdirected_route",
           "HSTS_HEADER", "NGINX_REDIRECT_CODE"]

Values = Mapping[str, Parsed]
Report = Callable[[Parsed, str, str, Severity], None]
HSTS_HEADER = "strict-transport-security"
NGINX_REDIRECT_CODE = 308  # ingress-nginx's redirect from HTTP to HTTPS (its ConfigMap's http-redirect-code)
MISDIRECTED_BODY = "misdirected request: this connection's TLS server name (SNI) does not serve this host\n"
ONE_YEAR_S = 365 * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressTLS:
    """What one Ingress's TLS annotations say, for the hosts it holds the certificate of."""

    redirect_code: int | None = None  # None: 301
    hsts: str | None = None  # the Strict-Transport-Security value
    options: ir.DownstreamTLS = ir.DownstreamTLS()  # client_ca_secret: still empty (see client_ca)
    client_ca: Parsed | None = None  # client-ca-secret, resolved against the namespace's Secrets when assembled
    client_ca_refused: Parsed | None = None  # client-ca-secret present with a value that was refused
    ssl_redirect_off: Parsed | None = None  # ssl-redirect: "false"
    annotations: tuple[Parsed, ...] = ()  # every https.* annotation read (to warn when it applies to nothing)


NO_TLS = IngressTLS()
_UNSERVED = ""  # the "chain" of a host whose certificate is not served (client certificates required, no CA)


def _v(values: Values, key: str, default=None):
    p = values.get(key)
    return default if p is None else p.value


def ingress_tls(values: Values, report: Report, present: frozenset[str] = frozenset(),
                settings: TranslateSettings = TranslateSettings()) -> IngressTLS:
    """The TLS settings of an Ingress's annotations. `present`: the policy keys whose annotation is there,
    valid or not (an invalid one is diagnosed already). `settings`: the defaults of the control plane (HSTS
    flags; with nginx compatibility, ingress-nginx's 308 redirect)."""
    mine = tuple(v for k, v in sorted(values.items()) if k.startswith("https.") and k != "https.client_ca_refused")
    redirect_off = values.get("ingress.ssl_redirect")
    redirect_off = redirect_off if redirect_off is not None and redirect_off.value is False else None
    code = _v(values, "https.redirect_code")
    if code is not None and redirect_off is not None:
        report(values["https.redirect_code"], "IgnoredAnnotation",
               "is ignored because ssl-redirect is \"false\": plain HTTP is not redirected.", Severity.WARNING)
    if code is None and settings.nginx_compat:
        code = NGINX_REDIRECT_CODE  # ingress-nginx's http-redirect-code
    hsts = _hsts(values, report, present, settings)
    options = _options(values, report)
    ca = values.get("https.client_ca_secret")
    # Refused (diagnosed): the Ingress asked for client certificates, so its hosts are not served without. An
    # nginx auth-tls-secret that cannot be used says so with the key https.client_ca_refused.
    refused = values.get("https.client_ca_refused")
    if ca is None and refused is None and "https.client_ca_secret" in present:
        name = XDS.prefix + "client-ca-secret"
        refused = Parsed(value=None, field=field_of(name), annotation=name)
    if ca is None and refused is None:
        for k in ("https.client_cert_verify", "https.client_cert_forward"):
            if k in values:
                report(values[k], "IgnoredAnnotation",
                       "is ignored without client-ca-secret (the Secret whose ca.crt verifies client certificates).",
                       Severity.WARNING)
    return IngressTLS(redirect_code=None if code in (None, 301) else code, hsts=hsts, options=options, client_ca=ca,
                      client_ca_refused=refused, ssl_redirect_off=redirect_off, annotations=mine)


def _hsts(values: Values, report: Report, present: frozenset[str], settings: TranslateSettings) -> str | None:
    """The header of the Ingress's hsts* annotations; each one not set is the control plane's (xds serve
    --hsts-max-age, --hsts-include-subdomains, --hsts-preload)."""
    max_age = _v(values, "https.hsts_max_age")
    if max_age is None and "https.hsts_max_age" not in present:
        max_age = settings.hsts_max_age_s
    sub = values.get("https.hsts_include_subdomains")
    preload = values.get("https.hsts_preload")
    if max_age is None:
        for p in (sub, preload):
            if p is not None and "https.hsts_max_age" not in present:  # (an invalid hsts is diagnosed already)
                report(p, "IgnoredAnnotation", "is ignored without hsts (the max-age of the header).",
                       Severity.WARNING)
        return None
    with_sub = sub.value if sub is not None else settings.hsts_include_subdomains
    with_preload = preload.value if preload is not None else settings.hsts_preload
    value = f"max-age={max_age}"
    if with_sub:
        value += "; includeSubDomains"
    if with_preload:
        if max_age < ONE_YEAR_S or not with_sub:
            if preload is None:  # the flag's, with this Ingress's hsts or hsts-include-subdomains
                return value
            report(preload, "IncompleteAnnotation",
                   f"is refused: browsers' HSTS preload lists need hsts of at least {ONE_YEAR_S} seconds (a year) "
                   "and hsts-include-subdomains: \"true\"; the header is sent without preload.", Severity.WARNING)
        else:
            value += "; preload"
    return value


def _options(values: Values, report: Report) -> ir.DownstreamTLS:
    d = ir.DownstreamTLS()
    low = _v(values, "https.min_version", d.min_version)
    high = _v(values, "https.max_version", d.max_version)
    if low > high:
        report(values["https.max_version"], "ConflictingAnnotation",
               f"is lower than tls-min-version ({low}), so it is ignored (TLS {low} and up to {d.max_version} are "
               "offered).",
               Severity.ERROR)
        high = d.max_version
    suites: tuple[str, ...] = _v(values, "https.cipher_suites", ())
    if suites and low == ir.TLS_1_3:
        report(values["https.cipher_suites"], "IgnoredAnnotation",
               "is ignored: with tls-min-version 1.3 no TLS 1.2 suite is used, and TLS 1.3 suites are not "
               "configurable.", Severity.WARNING)
        suites = ()
    return ir.DownstreamTLS(
        min_version=low, max_version=high, cipher_suites=suites, alpn=_v(values, "https.alpn", d.alpn),
        client_cert_required=_v(values, "https.client_cert_verify", "required") == "required",
        forward_client_cert=_v(values, "https.client_cert_forward", False) is True,
        client_cert_max_depth=_v(values, "https.client_cert_max_depth"))


def ca_sds_name(namespace: str, secret: str) -> str:
    """The SDS name of the validation context made from a Secret's ca.crt (a Secret's certificate is
    `namespace/secret`: one slash, so the two never meet)."""
    return f"{namespace}/{secret}/ca.crt"


# --- SNI: which filter chain a server name selects -------------------------------------------

def _parent(name: str) -> str | None:
    """The name without its first label, or None for a single label."""
    _, dot, rest = name.partition(".")
    return rest if dot else None


def sni_owner(domain: str, exact: Mapping[str, str], wildcard: Mapping[str, str], default: str | None
              ) -> tuple[str | None, str | None]:
    """(chain, the server name that selects it) for every name of `domain` (an exact host; `*.suffix`: any
    name under suffix that no more specific name takes; `*`: any other name), as Envoy selects filter chains:
    the exact server name, then `*.` wildcards from the longest suffix down, then the chain without server
    names (`default`; its server name is None). `exact` and `wildcard` map server names (without `*.` for
    wildcards) to chains."""
    if domain == ir.CATCH_ALL_HOST:
        return default, None
    if domain.startswith("*."):
        cand: str | None = domain[2:]
    else:
        if domain in exact:
            return exact[domain], domain
        cand = _parent(domain)
    while cand is not None:
        if cand in wildcard:
            return wildcard[cand], "*." + cand
        cand = _parent(cand)
    return default, None


def _covers(wide: str, domain: str) -> bool:
    """Whether the Envoy virtual host domain `wide` matches every name of `domain` (wider or equal)."""
    if wide == ir.CATCH_ALL_HOST:
        return True
    if domain == ir.CATCH_ALL_HOST:
        return False
    suffix = wide[1:]  # ".example.com"
    name = domain[2:] if domain.startswith("*.") else domain
    if domain.startswith("*."):
        return wide == domain or name.endswith(suffix)
    return name.endswith(suffix) and len(name) > len(suffix)


def select_virtual_host(vhosts: Mapping[str, ir.VirtualHost], domain: str) -> ir.VirtualHost | None:
    """The virtual host Envoy selects for the names of `domain`: the domain itself, else the longest wildcard
    that covers it, else `*`."""
    if domain in vhosts:
        return vhosts[domain]
    best = None
    for d, vh in vhosts.items():
        if d != ir.CATCH_ALL_HOST and d.startswith("*.") and _covers(d, domain):
            if best is None or len(d) > len(best[0]):
                best = (d, vh)
    if best is not None:
        return best[1]
    return vhosts.get(ir.CATCH_ALL_HOST)


# --- assembly ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TLSState:
    """What the TLS sections decided, for the route configurations of any set of virtual hosts."""

    chains: tuple[ir.TLSFilterChain, ...] = ()  # the HTTPS listener's, the default certificate's last
    exact: Mapping[str, str] = dataclasses.field(default_factory=dict)  # server name -> chain ("": none serves it)
    wildcard: Mapping[str, str] = dataclasses.field(default_factory=dict)  # suffix of a `*.` server name -> chain
    default: str | None = None  # the chain without server names
    hsts: Mapping[str, str] = dataclasses.field(default_factory=dict)  # chain -> Strict-Transport-Security
    redirect: Mapping[str, int | None] = dataclasses.field(default_factory=dict)  # server name -> its HTTP redirect

    def owner(self, domain: str) -> tuple[str | None, str | None]:
        return sni_owner(domain, self.exact, self.wildcard, self.default)


NO_TLS_STATE = TLSState()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    """An Ingress's TLS settings as applied to the hosts it holds."""

    options: ir.DownstreamTLS
    hsts: str | None
    redirect_code: int | None
    redirect: bool
    serve: bool  # False: client certificates required and the CA is unusable: no HTTPS for its hosts
    ca: ir.ValidationSecret | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Chain:
    name: str
    secret: tuple[str, str]
    settings: _Settings
    holder: Ingress  # the first Ingress (by precedence) whose hosts it serves


def _split(ref: str) -> tuple[str, str]:
    ns, _, name = ref.partition("/")
    return ns, name


def _diag(ing: Ingress, field: str, reason: str, message: str, severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name, field=field,
                      reason=reason, message=message, severity=severity)


def _ref(ing: Ingress) -> str:
    return f"Ingress {ing.meta.namespace}/{ing.meta.name}"


def _differences(a: _Settings, b: _Settings) -> list[str]:
    out = []
    names = {"min_version": "tls-min-version", "max_version": "tls-max-version", "cipher_suites": "tls-cipher-suites",
             "alpn": "alpn", "client_ca_secret": "client-ca-secret", "client_cert_required": "client-cert-verify",
             "forward_client_cert": "client-cert-forward", "client_cert_max_depth": "auth-tls-verify-depth"}
    for f, label in names.items():
        if getattr(a.options, f) != getattr(b.options, f):
            out.append(label)
    if a.hsts != b.hsts:
        out.append("hsts")
    if a.redirect_code != b.redirect_code:
        out.append("ssl-redirect-code")
    if a.serve != b.serve:
        out.append("client-ca-secret")
    return sorted(set(out))


class _Assembler:
    def __init__(self, *, tls_hosts: Mapping[str, tuple[Ingress, str, str]],
                 claims: Iterable[tuple[str, Ingress, str, str]], policies: Mapping[tuple[str, str], IngressTLS],
                 ssl_redirect: Callable[[Ingress], bool], secrets: Mapping[tuple[str, str], Secret],
                 settings: TranslateSettings, why_first: Callable[[Ingress, Ingress], str]) -> None:
        self.tls_hosts = tls_hosts
        self.claims = list(claims)
        self.policies = policies
        self.ssl_redirect = ssl_redirect
        self.secrets = secrets
        self.settings = settings
        self.why_first = why_first
        self.diagnostics: list[Diagnostic] = []
        self._resolved: dict[tuple[str, str], _Settings] = {}

    def policy(self, ing: Ingress) -> IngressTLS:
        return self.policies.get((ing.meta.namespace, ing.meta.name), NO_TLS)

    def resolve(self, ing: Ingress) -> _Settings:
        """The Ingress's settings with its client CA looked up (diagnosed once)."""
        key = (ing.meta.namespace, ing.meta.name)
        found = self._resolved.get(key)
        if found is not None:
            return found
        pol = self.policy(ing)
        ns = ing.meta.namespace
        options, ca, serve = pol.options, None, True
        if pol.client_ca is not None:
            secret = self.secrets.get((ns, pol.client_ca.value))
            if secret is not None and secret.ca_certificates:
                ca = ir.ValidationSecret(name=ca_sds_name(ns, pol.client_ca.value),
                                         ca_certificates=secret.ca_certificates)
                options = dataclasses.replace(options, client_ca_secret=ca.name)
            else:
                serve = not options.client_cert_required
                then = ("HTTPS is not served for the hosts of this Ingress's spec.tls (never without the client "
                        "certificates it requires)" if not serve else
                        "no client certificate is asked for (client-cert-verify is optional)")
                self.diagnostics.append(_diag(
                    ing, pol.client_ca.field, "SecretNotFound",
                    f"{pol.client_ca.annotation} names Secret {ns}/{pol.client_ca.value}, which does not exist or has "
                    f"no valid ca.crt, so {then}. Create the Secret with the CA certificates in ca.crt."))
        elif pol.client_ca_refused is not None:
            serve = not options.client_cert_required
            if not serve:
                p = pol.client_ca_refused
                self.diagnostics.append(_diag(
                    ing, p.field, "ClientCertificatesUnavailable",
                    f"{p.annotation} is not a usable Secret name (see its diagnostic) and client certificates are "
                    "required, so HTTPS is not served for the hosts of this Ingress's spec.tls (never without the "
                    "client certificates it requires). Name a Secret of this namespace."))
        if not options.client_ca_secret:  # no CA to verify against: nothing asked, nothing forwarded
            options = dataclasses.replace(options, client_cert_required=True, forward_client_cert=False,
                                          client_cert_max_depth=None)
        redirect = self.ssl_redirect(ing)
        wants_certs = (pol.client_ca is not None or pol.client_ca_refused is not None) and \
            pol.options.client_cert_required
        if not redirect and wants_certs and pol.ssl_redirect_off is not None:
            # Plain HTTP would serve the hosts without the client certificates required over HTTPS.
            self.diagnostics.append(_diag(
                ing, pol.ssl_redirect_off.field, "ConflictingAnnotation",
                f"{pol.ssl_redirect_off.annotation} is ignored because this Ingress requires client certificates "
                "(client-ca-secret): plain HTTP to its hosts is redirected to HTTPS, never served without them."))
            redirect = True
        found = _Settings(options=options, hsts=pol.hsts, redirect_code=pol.redirect_code, redirect=redirect,
                          serve=serve, ca=ca)
        self._resolved[key] = found
        return found

    def run(self) -> tuple[TLSState, tuple[ir.Listener, ...], tuple[ir.TLSSecret, ...],
                           tuple[ir.ValidationSecret, ...]]:
        # Chains: per Secret, TLS settings and HSTS, in the order of the hosts' holders (precedence).
        groups: dict[tuple, list[str]] = {}
        first: dict[tuple, Ingress] = {}
        exact: dict[str, str] = {}
        wildcard: dict[str, str] = {}
        redirect: dict[str, int | None] = {}
        for host, (ing, secret_name, _field) in self.tls_hosts.items():
            s = self.resolve(ing)
            if s.redirect:
                redirect[host] = s.redirect_code
            if s.serve:
                key = (ing.meta.namespace, secret_name, s.options, s.hsts)
                groups.setdefault(key, []).append(host)
                first.setdefault(key, ing)
            else:
                # No chain serves it, and no other chain (the default certificate's) may: 421 everywhere.
                (wildcard if host.startswith("*.") else exact)[host.removeprefix("*.")] = _UNSERVED
        self._conflicts()
        self._unused()
        chains: dict[str, _Chain] = {}
        server_names: dict[str, tuple[str, ...]] = {}
        named: set[tuple[str, str]] = set()
        for key, ing in first.items():
            ns, secret_name, _options, _hsts = key
            base = f"{ns}/{secret_name}"
            name = base if (ns, secret_name) not in named else f"{base}/{ing.meta.name}"
            named.add((ns, secret_name))
            chains[name] = _Chain(name=name, secret=(ns, secret_name), settings=self.resolve(ing), holder=ing)
            server_names[name] = tuple(sorted(groups[key]))
            for h in groups[key]:
                (wildcard if h.startswith("*.") else exact)[h.removeprefix("*.")] = name
        default = self._default_chain()
        ir_chains = [ir.TLSFilterChain(name=c.name, server_names=server_names[c.name],
                                       secret_name=f"{c.secret[0]}/{c.secret[1]}",
                                       route_config_name=f"{ir.HTTPS_ROUTE_CONFIG}/{c.name}",
                                       tls=None if c.settings.options == ir.DownstreamTLS() else c.settings.options)
                     for c in sorted(chains.values(), key=lambda c: c.name)]
        if default is not None:
            ir_chains.append(default)
        state = TLSState(chains=tuple(ir_chains), exact=exact, wildcard=wildcard,
                         default=default.name if default is not None else None,
                         hsts={n: c.settings.hsts for n, c in chains.items() if c.settings.hsts is not None},
                         redirect=redirect)
        secret_keys = sorted({c.secret for c in chains.values()}
                             | ({_split(default.secret_name)} if default is not None else set()))
        tls_secrets = tuple(ir.TLSSecret(name=f"{ns}/{name}",
                                         certificate_chain=self.secrets[(ns, name)].certificate_chain,
                                         private_key=self.secrets[(ns, name)].private_key)
                            for ns, name in secret_keys)
        cas = {c.settings.ca.name: c.settings.ca for c in chains.values() if c.settings.ca is not None}
        validation = tuple(cas[n] for n in sorted(cas))
        listeners = [ir.Listener(name=ir.HTTP_LISTENER, address=self.settings.listen_address,
                                 port=self.settings.http_port, route_config_name=ir.HTTP_ROUTE_CONFIG)]
        if ir_chains:
            listeners.append(ir.Listener(name=ir.HTTPS_LISTENER, address=self.settings.listen_address,
                                         port=self.settings.https_port,
                                         route_config_name=ir.HTTPS_ROUTE_CONFIG if default is not None else "",
                                         tls_chains=tuple(ir_chains)))
        return state, tuple(listeners), tls_secrets, validation

    def _default_chain(self) -> ir.TLSFilterChain | None:
        ref = self.settings.default_certificate
        if not ref:
            return None
        ns, _, name = ref.partition("/")
        secret = self.secrets.get((ns, name))
        if secret is None or not secret.is_tls:
            self.diagnostics.append(Diagnostic(
                kind="Secret", namespace=ns, name=name, field="", reason="DefaultCertificateNotFound",
                severity=Severity.ERROR,
                message=(f"xds serve --default-certificate names Secret {ns}/{name}, which does not exist or is not a "
                         "valid kubernetes.io/tls Secret (see its own diagnostics), so a TLS client whose server name "
                         "(SNI) has no certificate of its own, or that sends none, fails the handshake. Create it.")))
            return None
        return ir.TLSFilterChain(name=ir.DEFAULT_TLS_CHAIN, server_names=(), secret_name=f"{ns}/{name}",
                                 route_config_name=ir.HTTPS_ROUTE_CONFIG)

    def _conflicts(self) -> None:
        """A host listed with the same certificate by an Ingress that does not hold it, with other settings."""
        seen: set[tuple[str, str, str]] = set()
        for host, ing, secret_name, field in self.claims:
            holder, held_secret, _ = self.tls_hosts[host]
            if holder is ing or (holder.meta.namespace, held_secret) != (ing.meta.namespace, secret_name):
                continue  # its own, or another certificate (TLSHostConflict)
            diff = _differences(self.resolve(holder), self.resolve(ing))
            key = (ing.meta.namespace, ing.meta.name, host)
            if not diff or key in seen:
                continue
            seen.add(key)
            self.diagnostics.append(_diag(
                ing, f"{field}.hosts", "TLSSettingsConflict",
                f"host {host!r} is served with the TLS settings of {_ref(holder)}, which also lists it with Secret "
                f"{ing.meta.namespace}/{secret_name} and wins because {self.why_first(holder, ing)}; this Ingress's "
                f"{', '.join(diff)} do not apply to it. Set the same values on both, or list the host in one.",
                Severity.WARNING))

    def _unused(self) -> None:
        """TLS annotations on an Ingress whose spec.tls gives no host a certificate."""
        with_tls = {(ing.meta.namespace, ing.meta.name) for _h, ing, _s, _f in self.claims}
        for key, pol in sorted(self.policies.items()):
            if key in with_tls:
                continue
            for p in pol.annotations:
                self.diagnostics.append(Diagnostic(
                    kind=KIND_INGRESS, namespace=key[0], name=key[1], field=p.field, reason="IgnoredAnnotation",
                    message=(f"{p.annotation} is ignored: this Ingress's spec.tls gives no host a certificate (no "
                             "entry with a valid secretName), and it applies to those hosts only."),
                    severity=Severity.WARNING))


def plan(**kw) -> tuple[TLSState, tuple[ir.Listener, ...], tuple[ir.TLSSecret, ...],
                        tuple[ir.ValidationSecret, ...], tuple[Diagnostic, ...]]:
    """What the Ingresses' spec.tls and TLS annotations make of the listeners, whatever the hosts' routes:
    (the state that `http_virtual_host` and `route_configurations` apply to virtual hosts, the listeners,
    the TLS secrets, the validation secrets, diagnostics); see _Assembler for the arguments."""
    a = _Assembler(**kw)
    state, listeners, tls_secrets, validation = a.run()
    return state, listeners, tls_secrets, validation, tuple(a.diagnostics)


def http_virtual_host(state: TLSState, vh: ir.VirtualHost) -> ir.VirtualHost:
    """A host's virtual host on plain HTTP: redirected to HTTPS when a certificate serves it (or would, but for
    its unusable client CA) and the Ingress holding that certificate (of the server name that selects it) says
    so. Hosts only the default certificate serves are not."""
    if not state.redirect:
        return vh
    chain, server_name = state.owner(vh.name)
    if chain is None or server_name is None or server_name not in state.redirect:
        return vh
    return dataclasses.replace(vh, require_tls=True, redirect_code=state.redirect[server_name])


def ordered(vhosts: Mapping[str, ir.VirtualHost]) -> list[str]:
    """Virtual hosts in their order in a route configuration: by name, the catch-all last."""
    names = sorted(h for h in vhosts if h != ir.CATCH_ALL_HOST)
    if ir.CATCH_ALL_HOST in vhosts:
        names.append(ir.CATCH_ALL_HOST)
    return names


def route_configurations(vhosts: Mapping[str, ir.VirtualHost], http_vhosts: Mapping[str, ir.VirtualHost],
                         state: TLSState) -> tuple[ir.RouteConfiguration, ...]:
    """The http route configuration (of `http_vhosts`), then one per filter chain: the virtual hosts (of
    `vhosts`, as served over HTTPS) whose names select that chain, 421 for the rest (see the module doc)."""
    out = [ir.RouteConfiguration(name=ir.HTTP_ROUTE_CONFIG,
                                 virtual_hosts=tuple(http_vhosts[h] for h in ordered(http_vhosts)))]
    if not state.chains:
        return tuple(out)
    domains = set(vhosts) | set(state.exact) | {"*." + w for w in state.wildcard} | {ir.CATCH_ALL_HOST}
    owners = {d: state.owner(d) for d in domains}
    owned: dict[str | None, list[str]] = {}
    for d, (chain, _name) in owners.items():
        owned.setdefault(chain, []).append(d)
    for tc in state.chains:
        out.append(ir.RouteConfiguration(name=tc.route_config_name, virtual_hosts=_chain_vhosts(
            tc, owners, owned.get(tc.name, ()), vhosts, state.hsts.get(tc.name))))
    return tuple(out)


def _chain_vhosts(tc: ir.TLSFilterChain, owners: Mapping[str, tuple[str | None, str | None]], owned: Iterable[str],
                  vhosts: Mapping[str, ir.VirtualHost], hsts: str | None) -> tuple[ir.VirtualHost, ...]:
    """The virtual hosts of one chain's route configuration; `owned`: the domains whose names select it."""
    headers = ir.HeaderMutation(set=((HSTS_HEADER, hsts),)) if hsts is not None else None
    out: dict[str, ir.VirtualHost] = {}
    for d in owned:
        vh = select_virtual_host(vhosts, d)
        if vh is None:
            continue  # nothing routes these names (no catch-all): 404 as on plain HTTP
        if vh.name == d and headers is None:
            out[d] = vh  # the very same object (the route encoder caches its bytes)
        else:
            out[d] = ir.VirtualHost(name=d, domains=(d,), routes=vh.routes, response_headers=headers)
    misdirected = misdirected_route(tc)
    wide = [w for w in out if w == ir.CATCH_ALL_HOST or w.startswith("*.")]
    if wide:
        # A 421 for a more specific name of another chain where a served wildcard would otherwise match.
        for d, (chain, _name) in owners.items():
            if chain != tc.name and any(_covers(w, d) for w in wide if w != d):
                out[d] = ir.VirtualHost(name=d, domains=(d,), routes=(misdirected,))
    if ir.CATCH_ALL_HOST not in out:
        out[ir.CATCH_ALL_HOST] = ir.VirtualHost(name=ir.CATCH_ALL_HOST, domains=(ir.CATCH_ALL_HOST,),
                                                routes=(misdirected,))
    return tuple(out[d] for d in ordered(out))


def misdirected_route(tc: ir.TLSFilterChain) -> ir.Route:
    """The route of a virtual host that answers 421 on chain `tc`."""
    ns, _, name = tc.secret_name.partition("/")
    return ir.Route(name=ir.MISDIRECTED_ROUTE, match=None,
                    action=ir.RouteAction(direct_status=421, direct_body=MISDIRECTED_BODY),
                    source=ir.Source(kind="Secret", namespace=ns, name=name))
