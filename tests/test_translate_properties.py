"""Properties of translation: input order never matters.

The same objects in any order give byte-identical Envoy resources (serialized
deterministically) and identical diagnostics, for a few golden cases and for a larger
generated input with many conflicts (hosts, paths, default backends, TLS hosts) and
several EndpointSlices per Service.
"""

from __future__ import annotations

import copy
import functools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.golden_support import load_objects, run_case
from xds_ingress import envoy
from xds_ingress.model import K8sObject, parse_objects
from xds_ingress.translate import TranslateSettings, translate

# Cases with many order-sensitive decisions: conflicts, merging, wildcards, TLS, several slices.
SHUFFLED_CASES = (
    "host-wildcard",
    "merge-conflict-oldest-wins",
    "merge-conflict-tie-by-name",
    "merge-duplicate-path-in-ingress",
    "default-backend-conflict",
    "endpoints-multiple-slices",
    "endpoints-ipv6",
    "tls-two-certificates",
    "tls-host-two-secrets",
    "tls-host-two-secrets-one-ingress",
    "bad-input-wrong-types",
)


def serialized(objects: list[K8sObject], ts: TranslateSettings | None = None):
    """(Envoy resources as deterministic bytes, diagnostics) of a translation."""
    t = translate(objects, ts)
    resources = envoy.build(t.ir)
    blobs = tuple((type_url, name, msgs[name].SerializeToString(deterministic=True))
                  for type_url, msgs in sorted(resources.items()) for name in sorted(msgs))
    return blobs, t.diagnostics


def _assert_same(a, b) -> None:
    (res_a, diags_a), (res_b, diags_b) = a, b
    assert [(u, n) for u, n, _ in res_a] == [(u, n) for u, n, _ in res_b]
    for (u, n, blob_a), (_, _, blob_b) in zip(res_a, res_b):
        assert blob_a == blob_b, f"{u} {n} differs"
    assert diags_a == diags_b


@pytest.mark.parametrize("case", SHUFFLED_CASES)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_golden_case_is_independent_of_object_order(case: str, data: st.DataObject) -> None:
    run = run_case(case)
    objects = list(run.objects)
    baseline = serialized(objects, run.settings)
    shuffled = data.draw(st.permutations(objects))
    _assert_same(serialized(shuffled, run.settings), baseline)


@pytest.mark.parametrize("case", SHUFFLED_CASES)
def test_parse_diagnostics_are_independent_of_document_order(case: str) -> None:
    raws, _, _ = load_objects(case)
    docs = list(raws.values())
    _, base = parse_objects(docs)
    for seed in range(3):
        random.Random(seed).shuffle(docs)
        assert sorted(parse_objects(docs)[1]) == sorted(base)


# --- a larger generated input -----------------------------------------------------------

NAMESPACES = ("alpha", "beta", "gamma")
HOSTS = ("shop.example.com", "api.example.com", "*.apps.example.com", "a.apps.example.com",
         "static.example.com", None)
PATHS = (("Prefix", "/"), ("Prefix", "/api"), ("Prefix", "/api/"), ("Exact", "/api"), ("Exact", "/"),
         ("ImplementationSpecific", "/static"), ("Prefix", "/static/v1"), ("Exact", "/healthz"))
TIMESTAMPS = ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z", "2023-06-01T12:00:00Z")
SERVICES = (("web", {"number": 80}), ("web", {"name": "http"}), ("api", {"number": 8080}),
            ("web", {"number": 9090}), ("missing", {"number": 80}), ("legacy", {"number": 443}),
            ("api", {"name": "nope"}))
TLS_SECRETS = ("a-tls", "b-tls", "wildcard-tls", "gone-tls")


def _backend(rng: random.Random) -> dict:
    name, port = rng.choice(SERVICES)
    return {"service": {"name": name, "port": dict(port)}}


def _tls_secret_templates() -> dict[str, dict]:
    """Real TLS Secrets, taken from the golden inputs (certificates generated once)."""
    out = {}
    for case in ("tls-two-certificates", "tls-wildcard-host"):
        raws, _, _ = load_objects(case)
        for (kind, _ns, name), raw in raws.items():
            if kind == "Secret":
                out[name] = raw
    return out


@functools.cache
def generated_objects() -> tuple[K8sObject, ...]:
    rng = random.Random(20240601)
    raws: list[dict[str, Any]] = [{
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "xds", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "xds-ingress.io/controller"},
    }]
    for i in range(50):
        ns = rng.choice(NAMESPACES)
        rules = []
        for _ in range(rng.randint(1, 3)):
            host = rng.choice(HOSTS)
            paths = [{"path": p, "pathType": t, "backend": _backend(rng)}
                     for t, p in rng.sample(PATHS, rng.randint(1, 4))]
            rule: dict[str, Any] = {"http": {"paths": paths}}
            if host is not None:
                rule["host"] = host
            rules.append(rule)
        spec: dict[str, Any] = {"rules": rules}
        if i % 3:
            spec["ingressClassName"] = "xds"
        if i % 9 == 0:
            spec["defaultBackend"] = _backend(rng)
        if i % 4 == 0:
            hosts = [r["host"] for r in rules if "host" in r]
            spec["tls"] = [{"hosts": hosts, "secretName": rng.choice(TLS_SECRETS)}] if i % 8 else \
                [{"secretName": rng.choice(TLS_SECRETS)}]
        meta: dict[str, Any] = {"name": f"ing-{i:02d}", "namespace": ns}
        # Traffic policies, and canaries (whose attachment to a primary is order-sensitive).
        if i % 5 == 0:
            meta["annotations"] = {"xds-ingress.io/request-timeout": "5s", "xds-ingress.io/retries": "2",
                                   "xds-ingress.io/mirror-service": "api:8080"}
        elif i % 7 == 0:
            meta["annotations"] = {"xds-ingress.io/canary": "true", "xds-ingress.io/canary-weight": str(i),
                                   "xds-ingress.io/canary-by-header": "x-canary"}
        ts = rng.choice(TIMESTAMPS)
        if ts:
            meta["creationTimestamp"] = ts
        raws.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})
    templates = _tls_secret_templates()
    for ns in NAMESPACES:
        for svc in ("web", "api"):
            raws.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
                         "spec": {"ports": [{"name": "http", "port": 80 if svc == "web" else 8080,
                                             "targetPort": "http"},
                                            {"name": "admin", "port": 9090}]}})
            for s in range(3):
                endpoints = []
                for _ in range(rng.randint(0, 4)):
                    ready = rng.random() < 0.7
                    endpoints.append({"addresses": [f"10.{NAMESPACES.index(ns)}.{s}.{rng.randint(1, 6)}"],
                                      "conditions": {"ready": ready, "serving": ready or rng.random() < 0.5,
                                                     "terminating": not ready and rng.random() < 0.5}})
                raws.append({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"{svc}-{s}", "namespace": ns,
                                 "labels": {"kubernetes.io/service-name": svc}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8000 + s}, {"name": "admin", "port": 9090}],
                    "endpoints": endpoints,
                })
        # ExternalName: routed by DNS (beta), or refused (localhost).
        raws.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "legacy", "namespace": ns},
                     "spec": {"type": "ExternalName",
                              "externalName": "legacy.example.net" if ns == "beta" else "localhost"}})
        for name, template in templates.items():
            secret = copy.deepcopy(template)
            secret["metadata"] = {"name": name, "namespace": ns}
            raws.append(secret)
    objects, diags = parse_objects(raws)
    assert not diags, diags
    return tuple(objects)


def test_generated_input_is_rich() -> None:
    """The generated input exercises what the shuffle test is meant to catch."""
    t = translate(generated_objects())
    reasons = {d.reason for d in t.diagnostics}
    assert {"PathConflict", "DefaultBackendConflict", "TLSHostConflict", "ServiceNotFound",
            "SecretNotFound", "UnsupportedServiceType", "ServicePortNotFound", "CanaryWithoutPrimary"} <= reasons, \
        reasons
    assert any(r.conditions for rc in t.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes)

    assert len(t.served_ingresses) >= 30
    assert len(t.ir.secrets) >= 3
    assert sum(len(cla.endpoints) for cla in t.ir.endpoints) >= 10


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_generated_input_is_independent_of_object_order(data: st.DataObject) -> None:
    objects = list(generated_objects())
    baseline = _generated_baseline()
    shuffled = data.draw(st.permutations(objects))
    _assert_same(serialized(shuffled), baseline)


@functools.cache
def _generated_baseline():
    return serialized(list(generated_objects()))


@pytest.mark.parametrize("seed", range(5))
def test_generated_input_shuffled_with_fixed_seeds(seed: int) -> None:
    objects = list(generated_objects())
    random.Random(seed).shuffle(objects)
    _assert_same(serialized(objects), _generated_baseline())
