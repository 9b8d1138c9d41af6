"""ingress-nginx's auth-signin, auth-signin-redirect-param and auth-request-redirect under --nginx-compat
(translate/signin.py, envoy/signin.py): the values they accept, the sign-in URL ingress-nginx's buildAuthSignURL
makes of them, what reaches the IR, and that no value makes Envoy reject the configuration. Through a real Envoy:
tests/test_e2e_nginx_auth.py."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envoy_merge import assert_envoy_accepts
from tests.harness import k8s
from tests.test_annotations import HOSTILE
from xds_ingress import envoy
from xds_ingress.envoy import signin as envoy_signin
from xds_ingress.envoy import types
from xds_ingress.explain import explain
from xds_ingress.model import parse_objects
from xds_ingress.translate import TranslateSettings, nginx, translate
from xds_ingress.translate import parsers as p
from xds_ingress.translate import signin
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

N = nginx.PREFIX
COMPAT = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME)
URL = "http://authz:8080/verify"
RETURN = (("var", "pass_access_scheme"), ("text", "://"), ("var", "http_host"), ("var", "escaped_request_uri"))


def t(s: str) -> tuple:
    return (("text", s),)


# --- values ------------------------------------------------------------------------------------------------

def test_a_template_is_text_and_the_accepted_variables() -> None:
    assert signin.signin_url("https://$host/oauth2/start?rd=$escaped_request_uri") == (
        ("text", "https://"), ("var", "host"), ("text", "/oauth2/start?rd="), ("var", "escaped_request_uri"))
    assert signin.signin_url("https://${best_http_host}/x?a=$scheme") == (
        ("text", "https://"), ("var", "best_http_host"), ("text", "/x?a="), ("var", "scheme"))
    assert signin.request_redirect("$pass_access_scheme://$http_host$request_uri") == (
        ("var", "pass_access_scheme"), ("text", "://"), ("var", "http_host"), ("var", "request_uri"))
    assert signin.request_redirect("https://app.example.com/100%") == t("https://app.example.com/100%")


@pytest.mark.parametrize("value", [
    "https://$remote_addr/start", "https://login.example.com/start?u=$remote_user", "https://$1/x", "https://a/$",
    "https://a/${host", "https://a/$$host", "https://a/x#frag", "https://a/x y", "ftp://a/x", "/oauth2/start",
    "//a/x", "https://", "https://a/é", "https://a/x\r\nSet-Cookie: a=b", "https://a/\x00", "x" * 3000,
    "https://a/${HOST}", "https://$arg_next/x", "https://a/$cookie_session",
])
def test_a_sign_in_url_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        signin.signin_url(value)


@pytest.mark.parametrize("value", ["$remote_addr", "$http_x_forwarded_host", "a\nb", "é", "", "$", "x" * 3000])
def test_a_request_redirect_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        signin.request_redirect(value)


@pytest.mark.parametrize("value", ["next page", "", "a&b", "a=b", "x" * 65, "é", "$arg"])
def test_a_redirect_param_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        signin.redirect_param(value)


# --- ingress-nginx's buildAuthSignURL ------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "param", "want"), [
    # no query: ?PARAM=... appended
    ("https://login.example.com/start", "rd", t("https://login.example.com/start?rd=") + RETURN),
    # a query without PARAM: &PARAM=... appended
    ("https://login.example.com/start?app=web", "return_to",
     t("https://login.example.com/start?app=web&return_to=") + RETURN),
    # PARAM already there with a value: the URL as it is (oauth2-proxy's usual annotation)
    ("https://$host/oauth2/start?rd=$escaped_request_uri", "rd",
     (("text", "https://"), ("var", "host"), ("text", "/oauth2/start?rd="), ("var", "escaped_request_uri"))),
    ("https://a/s?x=1&rd=https%3A%2F%2Fhome", "rd", t("https://a/s?x=1&rd=https%3A%2F%2Fhome")),
    # Go's url.Query(): an empty first value is no value; '+' and %-escapes are decoded in names
    ("https://a/s?rd=", "rd", t("https://a/s?rd=&rd=") + RETURN),
    ("https://a/s?rd=&rd=x", "rd", t("https://a/s?rd=&rd=x&rd=") + RETURN),
    ("https://a/s?r%64=x", "rd", t("https://a/s?r%64=x")),
    ("https://a/s?next+page=x", "next page", t("https://a/s?next+page=x")),
    # pieces Go skips (a ';', a bad escape) are no parameter; an empty query none either
    ("https://a/s?a;b=1", "rd", t("https://a/s?a;b=1?rd=") + RETURN),
    ("https://a/s?a=%zz", "rd", t("https://a/s?a=%zz?rd=") + RETURN),
    ("https://a/s?", "rd", t("https://a/s??rd=") + RETURN),
    # the URL ends with a variable
    ("https://$host", "rd", (("text", "https://"), ("var", "host"), ("text", "?rd=")) + RETURN),
])
def test_the_location_is_ingress_nginx_build_auth_sign_url(url: str, param: str, want: tuple) -> None:
    assert signin.signin_location(signin.template(url, "x"), param) == want


def test_formatter_when_envoy_has_one() -> None:
    assert signin.formatter(signin.DEFAULT_REQUEST_REDIRECT) == "%REQ(:path)%"
    assert signin.formatter(signin.request_redirect("https://$http_host/100%")) == "https://%REQ(:authority)%/100%%"
    assert signin.formatter(signin.request_redirect("$scheme://$host$request_uri")) is None


# --- translation -------------------------------------------------------------------------------------------

def translated(annotations: dict[str, str], *, grpc: bool = False):
    authz = k8s.service("authz", ports=[("http", 8080)])
    if grpc:
        authz["spec"]["ports"][0]["appProtocol"] = "grpc"
    objs, diags = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
        authz, k8s.endpoint_slice("authz-1", "authz", 9000),
        k8s.ingress("app", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                    annotations=annotations)])
    assert not diags
    return translate(objs, COMPAT)


def external(tr):
    (r,) = [r for rc in tr.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes
            if r.source.name == "app"]
    return r.policy.auth.external if r.policy is not None and r.policy.auth is not None else None


def test_the_route_gets_the_location_and_the_header() -> None:
    tr = translated({N + "auth-url": URL, N + "auth-signin": "https://login.example.com/start",
                     N + "auth-signin-redirect-param": "next", N + "auth-request-redirect": "$scheme://$host/"})
    e = external(tr)
    assert e.signin == t("https://login.example.com/start?next=") + RETURN
    assert e.request_redirect == (("var", "scheme"), ("text", "://"), ("var", "host"), ("text", "/"))
    assert tr.ir.listeners[0].auth.signin and not [d for d in tr.diagnostics if d.name == "app"]
    # without auth-request-redirect, nginx's default: no Lua for it (the route does not switch the filters on)
    plain = translated({N + "auth-url": URL})
    e = external(plain)
    assert e.request_redirect == signin.DEFAULT_REQUEST_REDIRECT and not signin.needs_script(e)
    # The listeners carry the sign-in filters (off) whenever an external authorization is there, so that a first
    # or last auth-signin changes routes only: the listener is the same with it and without it.
    assert plain.ir.listeners[0].auth == tr.ir.listeners[0].auth
    from xds_ingress.envoy import listeners as envoy_listeners
    assert envoy_listeners.listener(plain.ir.listeners[0]) == envoy_listeners.listener(tr.ir.listeners[0])


def test_without_auth_url_they_are_ignored() -> None:
    tr = translated({N + "auth-signin": "https://login.example.com/start", N + "auth-signin-redirect-param": "x",
                     N + "auth-request-redirect": "/"})
    assert external(tr) is None and tr.ir.listeners[0].auth is None
    ignored = {d.field for d in tr.diagnostics if d.reason == "IgnoredAnnotation"}
    assert ignored == {f"metadata.annotations['{N}{n}']" for n in ("auth-signin", "auth-signin-redirect-param",
                                                                    "auth-request-redirect")}


def test_a_refused_sign_in_url_keeps_authentication_and_says_the_401_stays() -> None:
    tr = translated({N + "auth-url": URL, N + "auth-signin": "https://$server_name/start"})
    e = external(tr)
    assert e is not None and e.service is not None and not e.signin  # still authenticated
    (d,) = [d for d in tr.diagnostics if d.reason == "SignInIgnored"]
    assert "401" in d.message and "authentication still applies" in d.message


def test_ours_win_over_nginx_sign_in() -> None:
    tr = translated({N + "auth-url": URL, N + "auth-signin": "https://login.example.com/start",
                     "xds-ingress.io/auth-url": "authz:8080/ours"})
    e = external(tr)
    assert e.service.path_prefix == "/ours" and not e.signin and not e.request_redirect
    assert {d.field for d in tr.diagnostics if d.reason == "OverriddenAnnotation"} >= {
        f"metadata.annotations['{N}auth-signin']"}


def test_explain_says_the_401_redirects() -> None:
    tr = translated({N + "auth-url": URL, N + "auth-signin": "https://$host/start"})
    notes = explain(tr.ir, tr.diagnostics, host="a.example.com", path="/x").notes
    assert any("302 to sign in at 'https://$host/start?rd=$pass_access_scheme://$http_host$escaped_request_uri'"
               in n for n in notes), notes
    notes = explain(translated({N + "auth-url": URL}).ir, (), host="a.example.com", path="/x").notes
    assert not any("sign in" in n for n in notes)


def test_envoy_routes_without_sign_in_do_no_lua_work() -> None:
    """The sign-in filters are in the listener, off; a route without auth-signin does not switch them on."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

    tr = translated({N + "auth-url": URL})
    res = envoy.build(tr.ir)
    for rc in res[types.ROUTE].values():
        for vh in rc.virtual_hosts:
            for r in vh.routes:
                assert not {envoy_signin.SIGNIN, envoy_signin.AUTHORIZED} & set(r.typed_per_filter_config), r.name
    (lst,) = res[types.LISTENER].values()
    hcm = hcm_pb2.HttpConnectionManager()
    lst.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    filters = {f.name: f for f in hcm.http_filters}
    assert filters[envoy_signin.SIGNIN].disabled and filters[envoy_signin.AUTHORIZED].disabled


# --- no value makes Envoy reject the configuration ------------------------------------------------------------

NEAR = ["https://$host/oauth2/start?rd=$escaped_request_uri", "$scheme://$host$request_uri", "https://a/%%x%",
        "https://a/\"'<>\\`{}|^", "https://${http_host}/x?a=1&b=%ZZ&rd=", "https://$host$request_uri",
        "%REQ(:path)%", "https://a/%DYNAMIC_METADATA(x:y)%", "redirect_uri", "https://a/s?x=1#", "https://a/]]"]


@pytest.mark.envoy
def test_no_sign_in_value_makes_envoy_reject_the_configuration() -> None:
    drawn: list = []
    value = st.one_of(st.sampled_from(NEAR + HOSTILE), st.text(max_size=40))

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(url=value, param=st.one_of(st.none(), value), redirect=st.one_of(st.none(), value),
           grpc=st.booleans())
    def draw(url: str, param: str | None, redirect: str | None, grpc: bool) -> None:
        ann = {N + "auth-url": URL, N + "auth-signin": url}
        if param is not None:
            ann[N + "auth-signin-redirect-param"] = param
        if redirect is not None:
            ann[N + "auth-request-redirect"] = redirect
        drawn.append(envoy.build(translated(ann, grpc=grpc).ir))

    draw()
    # and the examples, certainly with the Lua filters
    for ann in ({N + "auth-url": URL, N + "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
                 N + "auth-request-redirect": "$scheme://$host$request_uri"},
                {N + "auth-url": URL, N + "auth-signin": "https://a/%x%?b=${request_uri}",
                 N + "auth-signin-redirect-param": "r"}):
        tr = translated(ann)
        assert tr.ir.listeners[0].auth.signin
        drawn.append(envoy.build(tr.ir))
    assert_envoy_accepts(drawn, batches=2)
