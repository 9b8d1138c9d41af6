"""Annotation parsing: the table, the strict parsers, the generated README reference, and Envoy's verdict.

The last test is the promise that no annotation value can make Envoy reject a configuration:
hypothesis draws sets of annotation values (valid ones from the table's examples, hostile ones,
and random text) onto Ingresses and Services, and `envoy --mode validate` checks the result
(a handful of Envoy runs, each about 0.1 s).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envoy_merge import assert_envoy_accepts
from tests.harness import k8s
from xds_ingress import envoy, ir
from xds_ingress.diagnostics import Severity
from xds_ingress.envoy.routes import authority_regex
from xds_ingress.explain import guard_regex
from xds_ingress.model import MAX_WILDCARD_SUFFIX_LENGTH, parse_objects
from xds_ingress.translate import parsers as p
from xds_ingress.translate import translate
from xds_ingress.translate.annotations import XDS, markdown

README = Path(__file__).parent.parent / "README.md"
BEGIN = "<!-- BEGIN GENERATED ANNOTATION REFERENCE -->\n"
END = "<!-- END GENERATED ANNOTATION REFERENCE -->"


def test_readme_reference_is_generated_from_the_table() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert section == markdown(), ("the README's annotation reference differs from the table; regenerate it with "
                                   "python -m xds_ingress.translate --annotations-markdown")
    for a in XDS.table:
        assert f"| `{a.name}` |" in section


def test_the_generator_runs_as_a_module() -> None:
    out = subprocess.run([sys.executable, "-m", "xds_ingress.translate", "--annotations-markdown"], capture_output=True,
                         text=True, check=True, cwd=README.parent)
    assert out.stdout == markdown() and not out.stderr


def test_every_example_parses_and_names_are_unique() -> None:
    names = [a.name for a in XDS.table]
    assert len(names) == len(set(names))
    for a in XDS.table:
        a.parse(a.example)
        assert a.doc.endswith((".", ")")) and a.on in ("Ingress", "Service"), a.name


@pytest.mark.parametrize(("value", "ms"), [("0", 0), ("250ms", 250), ("5s", 5000), ("1m", 60_000),
                                           ("1m30s", 90_000), ("2h", 7_200_000), (" 5s ", 5000)])
def test_duration(value: str, ms: int) -> None:
    assert p.duration()(value) == ms


@pytest.mark.parametrize("value", ["", "5", "5x", "-1s", "1.5s", "5S", "30s1m", "1s1s", "25h", "9999999999s", "0s",
                                   "5 s", "1e3ms"])
def test_duration_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        p.duration(max_ms=24 * 3_600_000)(value) if value != "0s" else p.duration(min_ms=1000)(value)


@pytest.mark.parametrize("value", [":path", "host", "Host", "connection", "transfer-encoding", "x-envoy-retry-on",
                                   "a b", "a\x00", "é", "", "x" * 129, "te", "upgrade"])
def test_request_header_names_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        p.header_name(value, request=True)


def test_header_lines() -> None:
    parse = p.header_lines(request=True)
    assert parse("X-A: 1\n x-b :  two words \n") == (("x-a", "1"), ("x-b", "two words"))
    for bad in ("x-a 1", "x-a: 1\nx-a: 2", "x-a: b\r\nx-c: d", "x-a: \x01", "x-a: " + "v" * 1025,
                "\n".join(f"x-{i}: v" for i in range(33))):
        with pytest.raises(p.Invalid):
            parse(bad)


@pytest.mark.parametrize("value", ["^/users/([0-9]+)$", "^/(?P<id>[a-z]+)/x", "/a|/b", "^/v[0-9]{1,3}/", r"\.json$"])
def test_regex_accepted(value: str) -> None:
    assert p.regex(value) == value
    assert p.re2_program_size(value) <= p.MAX_RE2_PROGRAM_SIZE


@pytest.mark.parametrize("value", [
    "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", r"(a)\1", "(?i)abc", r"a\Z", r"\Aa", "a{1001}", "(a{10}){10}",
    "[[:alpha:]]", r"\p{L}", "(?>a)", "a++", "(?(1)a|b)", "a" * 257, "(", "[", r"\x41", "(?<name>a)", "a{2,1}",
])
def test_regex_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        p.regex(value)


@pytest.mark.parametrize(("value", "want"), [
    ("https://new.example.com/shop", ("https", "new.example.com", None, "/shop")),
    ("http://a.example.com:8080", ("http", "a.example.com", 8080, None)),
    ("https://a.example.com/?x=1", ("https", "a.example.com", None, "/?x=1")),
    ("https://[::1]/x", ("https", "[::1]", None, "/x")),
])
def test_redirect_url(value: str, want: tuple) -> None:
    assert p.redirect_url(value) == want


@pytest.mark.parametrize("value", ["javascript:alert(1)", "ftp://a.example.com/", "//a.example.com/x",
                                   "https://u:p@a.example.com/", "https://a.example.com/#x", "https://a.example.com/a b",
                                   "https://a.example.com:99999/", "https:///x", "https://a.example.com/\r\nx: y"])
def test_redirect_url_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        p.redirect_url(value)


def test_wildcard_guard_fits_envoys_regex_limit() -> None:
    """The longest wildcard suffix accepted compiles within RE2's limit, whatever its letters (found: `k` and
    `s` cost four instructions each with (?i), which made `*.` plus 24 k's a NACK of every route)."""
    for ch in "aks0-":
        suffix = (ch * MAX_WILDCARD_SUFFIX_LENGTH)[:MAX_WILDCARD_SUFFIX_LENGTH - 4] + ".com"
        suffix = "a" + suffix[1:] if ch == "-" else suffix
        assert len(suffix) == MAX_WILDCARD_SUFFIX_LENGTH
        assert p.re2_program_size(authority_regex(suffix)) <= p.MAX_RE2_PROGRAM_SIZE
        assert guard_regex(suffix) == authority_regex(suffix)
    assert re.search(authority_regex("example.com"), "A.EXAMPLE.com:80")
    assert not re.search(authority_regex("example.com"), "a.b.example.com")


def test_canary_cookie_regex_is_python_and_re2_alike() -> None:
    rx = ir.cookie_regex("canary", "always")
    assert p.re2_program_size(rx) <= p.MAX_RE2_PROGRAM_SIZE
    assert re.fullmatch(rx, "a=1; canary=always") and re.fullmatch(rx, "canary=always,b=2")
    assert re.fullmatch(rx, "canary=always") and re.fullmatch(rx, "a=1;canary=always ; b=2")
    assert not re.fullmatch(rx, "xcanary=always") and not re.fullmatch(rx, "canary=alwaysx")
    assert p.re2_program_size(ir.cookie_regex("k" * 32, "always")) <= p.MAX_RE2_PROGRAM_SIZE


def test_a_bad_value_is_one_diagnostic_and_the_rest_is_served() -> None:
    objs, diags = parse_objects([
        k8s.ingress_class(),
        k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")),
                    annotations={"xds-ingress.io/request-timeout": "soon", "xds-ingress.io/retries": "2",
                                 "xds-ingress.io/retrys": "3"}),
        *k8s.backend_service("web", [8080]),
    ])
    t = translate(objs)
    by_field = {d.field: d for d in t.diagnostics}
    bad = by_field["metadata.annotations['xds-ingress.io/request-timeout']"]
    assert bad.reason == "InvalidAnnotation" and bad.severity == Severity.ERROR and "duration" in bad.message
    typo = by_field["metadata.annotations['xds-ingress.io/retrys']"]
    assert typo.reason == "UnknownAnnotation" and "xds-ingress.io/retries?" in typo.message
    route = t.ir.route_configurations[0].virtual_hosts[0].routes[0]
    assert route.action.cluster == "default/web/80"
    assert route.policy is not None and route.policy.timeout_ms is None and route.policy.retry.num_retries == 2


# --- no annotation value makes Envoy reject the configuration -------------------------------

HOSTILE = ["", " ", "0", "-1", "1e9", "999999999999", "true", "yes", "%", "%DOWNSTREAM_REMOTE_ADDRESS%", "100%",
           "a\r\nb: c", "\x00", "é", "x" * 5000, "(?=a)", "(a{10}){10}", "a{1001}", "\\", "/../etc", "//x",
           "javascript:alert(1)", "https://[::1", ":path: /x", "host: evil", "x-envoy-retry-on: 5xx", "localhost:80",
           "x-a: 100%", "x-a: %BOGUS%", "x-a: %", "header:", "cookie:a b", "source-ip", "grpc", "http", "ring-hash", "service", "5s", "250ms", "/"]


# Values that are nearly right for one annotation: what would reach Envoy if a check were missing.
NEAR = {
    "header_lines": ["x-a: 100%", "x-a: %BOGUS%", "x-a: %", "x-a: %DOWNSTREAM_REMOTE_ADDRESS%", "x-a: %%", "x-a: é"],
    "regex": ["(a{10}){10}", "a{1000}", "[^/]+[^/]+[^/]+[^/]+[^/]+[^/]+[^/]+[^/]+", "(?P<x>a)", "^$", "\\d+"],
    "substitution": ["/\\9", "\\0", "/%", "/a%zz"],
    "url": ["https://a.example.com:0/", "http://a.example.com/%zz", "https://a.example.com/?%"],
    "rate": ["1000000/s", "1/h", "7/s", "999999/m", "1000001/s"],
    "cidr": ["10.0.0.1/8", "::ffff:10.0.0.0/104", "0.0.0.0/0", "::/0", "fe80::%eth0/64", "10.0.0.0/32,::1"],
    "origins": ["regex:(a{10}){10}", "https://a.example.com:0", "regex:^https://[a-z]{1,3}\\.x$,*", "*",
                "https://[::1]:8443", "null", "regex:.*"],
}
_NEAR_OF = {"request-headers-add": "header_lines", "request-headers-set": "header_lines",
            "response-headers-add": "header_lines", "response-headers-set": "header_lines",
            "rewrite-regex": "regex", "rewrite-regex-substitution": "substitution", "redirect-to": "url",
            "rate-limit": "rate", "allow-source-ranges": "cidr", "deny-source-ranges": "cidr",
            "cors-allow-origins": "origins"}


def _value(a) -> st.SearchStrategy[str]:
    # Half valid (the table's example), so that annotations that work together are drawn together.
    near = NEAR.get(_NEAR_OF.get(a.name, ""), [])
    return st.one_of(st.just(a.example), st.just(a.example), st.sampled_from(HOSTILE + near),
                     *([st.sampled_from(near)] if near else []), st.text(max_size=40))


def _annotations(on: str) -> st.SearchStrategy[dict[str, str]]:
    # Each annotation of the kind present with a chance of one in three (hypothesis would favour few).
    table = [a for a in XDS.table if a.on == on]
    # Fixed responses replace the backends (and so hide the other policies): rarer.
    rare = {"redirect-to", "direct-response-status", "canary"}
    return st.fixed_dictionaries({
        XDS.full(a): st.one_of(*[st.none()] * (8 if a.name in rare else 2), _value(a)) for a in table
    }).map(lambda d: {k: v for k, v in d.items() if v is not None})


def _objects(ing_ann: dict, canary_ann: dict, svc_ann: dict, app_protocol: str | None) -> list[dict]:
    svc = k8s.service("web", annotations=svc_ann)
    svc["spec"]["clusterIP"] = "10.96.0.1"
    if app_protocol:
        svc["spec"]["ports"][0]["appProtocol"] = app_protocol
    shadow = k8s.service("shadow")
    canary = dict(canary_ann, **{"xds-ingress.io/canary": "true"})
    return [
        k8s.ingress_class(), svc, k8s.endpoint_slice("web-1", "web", 8080, ["10.0.0.1", "10.0.0.2"]),
        shadow, k8s.endpoint_slice("shadow-1", "shadow", 8080, ["10.0.0.3"]),
        k8s.ingress("main", k8s.rule("a.example.com", k8s.path("/api", "web"), k8s.path("/", "web"),
                                     k8s.path("/x", "web", path_type="Exact")),
                    k8s.rule("*.w.example.com", k8s.path("/", "web")), default_backend=("web", 80),
                    annotations=ing_ann),
        k8s.ingress("main-canary", k8s.rule("a.example.com", k8s.path("/", "shadow")), annotations=canary),
    ]


@pytest.mark.envoy
def test_no_annotation_value_makes_envoy_reject_the_configuration() -> None:
    """Any annotation values translate without an exception, and Envoy accepts the result: hypothesis draws
    the sets, then a few Envoy runs validate them, many sets merged into each configuration."""
    drawn: list = []

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(ing=_annotations("Ingress"), canary=_annotations("Ingress"), svc=_annotations("Service"),
           app=st.sampled_from([None, "grpc", "kubernetes.io/h2c", "http", "bogus"]))
    def draw(ing: dict, canary: dict, svc: dict, app: str | None) -> None:
        objs, _ = parse_objects(_objects(ing, canary, svc, app))
        drawn.append(envoy.build(translate(objs).ir))

    draw()
    assert_envoy_accepts(drawn, batches=4)

