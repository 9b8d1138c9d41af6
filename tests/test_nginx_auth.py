"""ingress-nginx's authentication annotations under --nginx-compat (translate/nginx.py, translate/auth.py): what
they become, and the rule that an Ingress asking for a protection that cannot be given here is never served
without it (its paths answer 503, or the protection refuses every client), never open."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.harness import k8s
from xds_ingress.diagnostics import Severity
from xds_ingress.model import AUTH_MAP_MAX_KEYS, Secret, parse_objects
from xds_ingress.translate import TranslateSettings, auth, nginx, translate
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

N = nginx.PREFIX
X = "xds-ingress.io/"
COMPAT = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME)
APR1 = "$apr1$Xq8vZ2mT$Fw908AY4X4zU5n5wsym1O1"


def sha(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def secret(name: str, namespace: str = "default", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def translated(annotations: dict[str, str], *extra: dict, settings: TranslateSettings = COMPAT, tls: bool = False):
    objs, diags = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
        k8s.service("authz", ports=[("http", 8080)]), k8s.endpoint_slice("authz-1", "authz", 9000, port_name="http"),
        secret("users", auth=f"alice:{sha('pw')}\n"), secret("apr-only", auth=f"carol:{APR1}\n"), *extra,
        k8s.ingress("app", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                    annotations=annotations, tls=[{"hosts": ["a.example.com"], "secretName": "a-tls"}] if tls else None)])
    assert not diags
    return translate(objs, settings)


def routes(t) -> list:
    return [r for rc in t.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes
            if r.source.name == "app"]


def closed(t) -> bool:
    rs = routes(t)
    return bool(rs) and all(r.action.direct_status == 503 and r.action.cluster is None for r in rs)


def diags(t, name: str) -> list:
    return [d for d in t.diagnostics if d.field == f"metadata.annotations['{N}{name}']"]


# --- what they become --------------------------------------------------------------------------------

def test_basic_auth_becomes_ours() -> None:
    t = translated({N + "auth-type": "Basic", N + "auth-secret": "default/users", N + "auth-realm": "Staff"})
    (r,) = routes(t)
    assert r.action.cluster == "default/web/80" and not [d for d in t.diagnostics if d.name == "app"]
    b = r.policy.auth.basic
    assert b.secret == "default/users" and b.realm == "Staff" and b.users.value == f"alice:{sha('pw')}\n".encode()


def test_auth_map_users_are_the_secret_keys() -> None:
    t = translated({N + "auth-type": "basic", N + "auth-secret": "team", N + "auth-secret-type": "auth-map"},
                   secret("team", alice=sha("pw"), bob=APR1, carol="two\nlines"))
    (r,) = routes(t)
    assert r.policy.auth.basic.users.value == f"alice:{sha('pw')}\n".encode()
    on_secret = {d.field: d.message for d in t.diagnostics if d.kind == "Secret"}
    assert set(on_secret) == {"data['bob']", "data['carol']"} and APR1 not in str(on_secret)
    (warn,) = [d for d in diags(t, "auth-secret") if d.reason == "UnusableUsers"]
    assert "bob" in warn.message and "htpasswd -s" in warn.message and warn.severity == Severity.WARNING


def test_the_model_keeps_an_opaque_secret_of_users_only_redacted() -> None:
    objs, _ = parse_objects([
        {**secret("team", alice=sha("pw")), "stringData": {"bob": APR1, "ca.crt": "x"}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "bad", "namespace": "default"},
         "data": {"x": "not base64!"}},
        secret("many", **{f"u{i}": sha("pw") for i in range(AUTH_MAP_MAX_KEYS + 3)}),
        {**secret("cfg", config="a"), "type": "kubernetes.io/dockerconfigjson"}])
    by = {o.meta.name: o for o in objs if isinstance(o, Secret)}
    assert set(by) == {"team", "bad", "many"}  # another type than Opaque is not read for users
    assert json.loads(by["team"].auth_map.value) == {"dropped": 0, "entries": {"alice": sha("pw"), "bob": APR1}}
    assert json.loads(by["bad"].auth_map.value)["entries"] == {"x": None}
    assert sha("pw") not in repr(by["team"]) and json.loads(by["many"].auth_map.value)["dropped"] == 3
    users, problems, _ = auth.check_user_map(by["many"].auth_map.value)
    assert users.count(b"\n") == AUTH_MAP_MAX_KEYS and any("3 key(s) are not read" in p for _, p in problems)


@pytest.mark.parametrize("url", ["http://authz:8080/verify", "http://authz.default:8080/verify",
                                 "http://authz.default.svc:8080/verify/",
                                 "http://authz.default.svc.cluster.local:8080/verify"])
def test_auth_url_of_a_service_of_the_namespace(url: str) -> None:
    t = translated({N + "auth-url": url, N + "auth-response-headers": "X-User, Authorization",
                    N + "auth-method": "POST"})
    (r,) = routes(t)
    e = r.policy.auth.external
    assert r.action.cluster == "default/web/80" and e.service.cluster == "default/authz/8080"
    assert e.service.path_prefix == "/verify" and e.service.authority == "authz.default.svc:8080"
    assert e.response_headers == ("x-user", "authorization") and e.client_headers_on_success == ("set-cookie",)
    # A client's x-user is removed before the check; its Authorization is what the check reads.
    assert r.policy.auth.strip_request_headers == ("x-user",)
    assert not [d for d in t.diagnostics if d.name == "app"]


def test_enable_global_auth_false_turns_off_the_service_of_every_route() -> None:
    glob = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME,
                             auth_service="http://10.0.0.9:9000/check")
    (r,) = routes(translated({N + "enable-global-auth": "false"}, settings=glob))
    assert r.policy.auth.external.disabled
    (r,) = routes(translated({N + "enable-global-auth": "true"}, settings=glob))
    assert r.policy is None or r.policy.auth is None


def test_ours_win_over_nginx_authentication_even_a_refused_one() -> None:
    t = translated({N + "auth-url": "https://$host/oauth2/auth", N + "auth-type": "digest",
                    N + "auth-secret": "users", X + "auth-url": "authz:8080/ours", X + "basic-auth-secret": "users"})
    (r,) = routes(t)
    assert r.action.cluster == "default/web/80"
    assert r.policy.auth.external.service.path_prefix == "/ours" and r.policy.auth.basic.secret == "default/users"
    assert not [d for d in t.diagnostics if d.reason == "AuthenticationUnavailable"]
    assert {d.field for d in t.diagnostics if d.reason == "OverriddenAnnotation"} == {
        f"metadata.annotations['{N}auth-url']", f"metadata.annotations['{N}auth-type']"}


def test_a_canary_takes_the_authentication_of_its_primary() -> None:
    objs, _ = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
        *k8s.backend_service("next", [80]), secret("users", auth=f"alice:{sha('pw')}\n"),
        k8s.ingress("app", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                    annotations={N + "auth-type": "basic", N + "auth-secret": "users"}),
        k8s.ingress("next", k8s.rule("a.example.com", k8s.path("/", "next")), class_name="nginx",
                    annotations={N + "canary": "true", N + "canary-weight": "50", N + "auth-type": "digest",
                                 N + "configuration-snippet": "deny all;"})])
    t = translate(objs, COMPAT)
    (r,) = [r for rc in t.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes]
    assert {c.cluster for c in r.action.weighted_clusters} == {"default/web/80", "default/next/80"}
    assert r.policy.auth.basic.secret == "default/users"
    assert not [d for d in t.diagnostics if d.severity == Severity.ERROR]


def test_secrets_the_kube_source_reads_by_name() -> None:
    def meta(**annotations: str):
        objs, _ = parse_objects([k8s.ingress("app", k8s.rule("a.example.com", k8s.path("/", "web")),
                                             annotations={N + k.replace("_", "-"): v for k, v in annotations.items()})])
        return objs[0].meta

    m = meta(auth_type="basic", auth_secret="users", auth_tls_secret="default/ca")
    assert nginx.secret_references(m) == {("default", "users"), ("default", "ca")}
    assert nginx.whole_secret_references(m) == set()
    m = meta(auth_type="basic", auth_secret="default/team", auth_secret_type="auth-map")
    assert nginx.whole_secret_references(m) == {("default", "team")}
    assert nginx.secret_references(meta(auth_secret="other/users")) == set()  # refused, so never read
    assert nginx.whole_secret_references(meta(auth_secret="other/team", auth_secret_type="auth-map")) == set()


# --- never open ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "found"), [
    ("deny all;", ["deny"]),
    ("allow 10.0.0.0/8;\n  deny all;", ["allow", "deny"]),
    ('auth_basic "Staff";\nauth_basic_user_file /etc/htpasswd;', ["auth_basic"]),
    ("auth_request /auth;", ["auth_request"]),
    ('if ($http_x_token != "s") { return 403; }', ["return 403"]),
    ("location /admin { return 401; }", ["return 401"]),
    ('more_set_headers "X-Frame-Options: deny";', []),
    ("# deny all;\nproxy_set_header X-A b;", []),
    ("auth_basic off;", []),
    ("return 301 https://m.example.com;", []),
    ("set $denylist 1;", []),
])
def test_protective_directives_of_a_snippet(text: str, found: list[str]) -> None:
    assert nginx._protective_directives(text) == found


def _ca() -> dict:
    from tests.harness.certs import make_ca

    pem = make_ca().cert_pem.encode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "ca", "namespace": "default"},
            "data": {"ca.crt": base64.b64encode(pem).decode()}}


CA = _ca()

# Annotations asking for a protection that cannot be given here, and where the refusal is said.
NEVER_OPEN = [
    ({N + "auth-type": "digest", N + "auth-secret": "users"}, "auth-type"),
    ({N + "auth-type": "ntlm", N + "auth-secret": "users"}, "auth-type"),
    ({N + "auth-secret": "users"}, "auth-secret"),
    ({N + "auth-type": "basic"}, "auth-type"),
    ({N + "auth-type": "basic", N + "auth-secret": "other/users"}, "auth-secret"),
    ({N + "auth-type": "basic", N + "auth-secret": "nope"}, "auth-secret"),
    ({N + "auth-type": "basic", N + "auth-secret": "apr-only"}, "auth-secret"),
    ({N + "auth-type": "basic", N + "auth-secret": "users", N + "auth-secret-type": "map"}, "auth-secret-type"),
    ({N + "auth-type": "basic", N + "auth-secret": "users", N + "auth-secret-type": "auth-map"}, "auth-secret"),
    ({N + "auth-url": "http://auth.example.com/verify"}, "auth-url"),
    ({N + "auth-url": "http://10.0.0.7:8080/verify"}, "auth-url"),
    ({N + "auth-url": "http://authz.other.svc.cluster.local:8080/verify"}, "auth-url"),
    ({N + "auth-url": "https://authz.default.svc:8080/verify"}, "auth-url"),
    ({N + "auth-url": "http://authz:8080/verify?group=a"}, "auth-url"),
    ({N + "auth-url": "https://$host/oauth2/auth"}, "auth-url"),
    ({N + "auth-url": "http://nosuch:8080/verify"}, "auth-url"),
    ({N + "auth-url": "http://authz:9/verify"}, "auth-url"),
    ({N + "auth-url": "http://authz:8080/verify", N + "auth-response-headers": "x-user: 1"}, "auth-response-headers"),
    ({N + "auth-snippet": "proxy_set_header X-Key k;"}, "auth-snippet"),
    ({N + "auth-url": "http://authz:8080/", N + "auth-snippet": "if ($a) { return 401; }"}, "auth-snippet"),
    ({N + "configuration-snippet": "deny all;"}, "configuration-snippet"),
    ({N + "server-snippet": 'auth_basic "x";'}, "server-snippet"),
    ({N + "auth-tls-secret": "ca", N + "auth-tls-match-cn": "CN=alice"}, "auth-tls-match-cn"),
    ({X + "jwt-jwks-secret": "users", N + "auth-type": "basic", N + "auth-secret": "users"}, None),
]


@pytest.mark.parametrize(("annotations", "at"), NEVER_OPEN)
def test_authentication_that_cannot_be_given_fails_closed(annotations: dict[str, str], at: str | None) -> None:
    t = translated(annotations, CA)
    assert closed(t), routes(t)
    errors = [d for d in t.diagnostics if d.name == "app" and d.severity == Severity.ERROR and "503" in d.message]
    assert errors, t.diagnostics
    if at is not None:
        assert any(d.field == f"metadata.annotations['{N}{at}']" for d in errors), errors


@pytest.mark.parametrize("annotations", [
    {N + "allowlist-source-range": "intranet"}, {N + "whitelist-source-range": "10.0.0.0/33"},
    {N + "denylist-source-range": "x"}])
def test_an_address_list_that_cannot_be_read_refuses_every_client(annotations: dict[str, str]) -> None:
    (r,) = routes(translated(annotations))
    assert r.action.cluster == "default/web/80" and r.policy.source_ranges.deny == ("0.0.0.0/0", "::/0")


@pytest.mark.parametrize("annotations", [
    {N + "auth-realm": 'a"b', N + "auth-secret-type": "auth-map"},  # without auth-type and auth-secret
    {N + "auth-response-headers": "X-User"},  # without auth-url
    {N + "auth-signin": "https://login.example.com/", N + "auth-method": "GET", N + "auth-cache-key": "$remote_user"},
    {N + "configuration-snippet": 'more_set_headers "X-Frame-Options: DENY";'},
    {N + "auth-tls-match-cn": "CN=alice"},  # no client certificates asked for: nothing to match
    {N + "auth-tls-secret": "ca", N + "auth-tls-verify-client": "off", N + "auth-tls-match-cn": "CN=alice"},
])
def test_what_protects_nothing_is_only_ignored(annotations: dict[str, str]) -> None:
    t = translated(annotations, CA)
    (r,) = routes(t)
    assert r.action.cluster == "default/web/80" and (r.policy is None or r.policy.auth is None)
    assert not [d for d in t.diagnostics if d.name == "app" and d.severity == Severity.ERROR and "503" in d.message]


@pytest.mark.parametrize(("annotations", "at", "reason"), [
    ({N + "proxy-ssl-verify": "on"}, "proxy-ssl-verify", "IncompleteAnnotation"),
    ({N + "proxy-ssl-verify": "on", N + "proxy-ssl-secret": "other/ca"}, "proxy-ssl-secret", "CrossNamespaceSecret"),
    ({N + "proxy-ssl-verify": "on", N + "proxy-ssl-secret": "a/b/c"}, "proxy-ssl-secret", "InvalidAnnotation"),
    ({N + "proxy-ssl-verify": "on", N + "proxy-ssl-secret": "nope"}, None, "SecretNotFound"),
])
def test_https_backends_to_verify_without_a_ca_are_not_reached_unverified(annotations: dict[str, str],
                                                                          at: str | None, reason: str) -> None:
    t = translated({N + "backend-protocol": "HTTPS", **annotations}, CA)
    assert closed(t) and all(c.name != "default/web/80" for c in t.ir.clusters)
    (d,) = [d for d in t.diagnostics if d.reason == reason]
    assert d.severity == Severity.ERROR and (at is None or d.field == f"metadata.annotations['{N}{at}']")
    # With a CA of the namespace, they are verified; with a plain HTTP backend there is nothing to verify.
    (c,) = [c for c in translated({N + "backend-protocol": "HTTPS", N + "proxy-ssl-verify": "on",
                                   N + "proxy-ssl-secret": "ca"}, CA).ir.clusters if c.name == "default/web/80"]
    assert c.policy.tls.ca_secret == "default/ca"
    assert routes(translated({N + "proxy-ssl-verify": "on"}))[0].action.cluster == "default/web/80"
