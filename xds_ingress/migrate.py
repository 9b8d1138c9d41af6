"""`xds migrate`: what becomes of ingress-nginx's annotations here, per Ingress and across all of them.

Every Ingress is translated with nginx compatibility (the same translation `xds serve --nginx-compat`
runs), and each `nginx.ingress.kubernetes.io/` annotation is reported as

- `exact`: translated with ingress-nginx's behaviour;
- `difference`: translated, with the stated difference (from the table in translate/nginx.py);
- `unsupported`: not translated (its reason and replacement; snippets are never executed; `pending`
  ones wait for a policy that is planned);
- `invalid`: its value is refused (the diagnostic says what is accepted);
- `unknown`: ingress-nginx has no such annotation.

Anything unsupported, invalid or unknown makes the exit code 1 unless `--allow-unsupported`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import yaml

from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import Ingress, IngressClass, K8sObject, ObjectMeta, parse_objects
from xds_ingress.translate import TranslateSettings, translate
from xds_ingress.translate import nginx
from xds_ingress.translate.annotations import field_of

EXACT, DIFFERENCE, UNSUPPORTED, INVALID, UNKNOWN = "exact", "difference", "unsupported", "invalid", "unknown"
BLOCKING = (UNSUPPORTED, INVALID, UNKNOWN)
MAX_VALUE = 120


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnotationResult:
    annotation: str
    value: str
    status: str
    note: str = ""  # the difference, or why not
    replacement: str = ""
    pending: bool = False
    snippet: bool = False
    messages: tuple[str, ...] = ()  # the translation's diagnostics on this annotation

    def as_dict(self) -> dict:
        out = {"annotation": self.annotation, "value": self.value, "status": self.status}
        for k in ("note", "replacement", "pending", "snippet", "messages"):
            v = getattr(self, k)
            if v:
                out[k] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressResult:
    namespace: str
    name: str
    served: bool
    annotations: tuple[AnnotationResult, ...]
    other: tuple[str, ...] = ()  # other error diagnostics of the Ingress (a missing Service, a bad path...)

    def as_dict(self) -> dict:
        out = {"namespace": self.namespace, "name": self.name, "served": self.served,
               "annotations": [a.as_dict() for a in self.annotations]}
        if self.other:
            out["other"] = list(self.other)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    ingresses: tuple[IngressResult, ...]
    summary: tuple[dict, ...] = field(default=())

    @property
    def blocking(self) -> int:
        return sum(1 for i in self.ingresses for a in i.annotations if a.status in BLOCKING)

    def totals(self) -> dict[str, int]:
        out = {s: 0 for s in (EXACT, DIFFERENCE, UNSUPPORTED, INVALID, UNKNOWN)}
        for i in self.ingresses:
            for a in i.annotations:
                out[a.status] += 1
        return out

    def as_dict(self) -> dict:
        return {"ingresses": [i.as_dict() for i in self.ingresses], "summary": list(self.summary),
                "totals": self.totals(), "blocking": self.blocking}


def _short(value: str) -> str:
    v = value.strip()
    return v if len(v) <= MAX_VALUE else v[: MAX_VALUE - 3] + "..."


def _classify(ing: Ingress, key: str, raw: str, diags: Sequence[Diagnostic]) -> AnnotationResult:
    name = key[len(nginx.PREFIX):]
    row = nginx.row(name)
    here = [d for d in diags if d.field == field_of(key)]
    messages = tuple(d.message for d in here)
    if row is None:
        return AnnotationResult(annotation=key, value=_short(raw), status=UNKNOWN,
                                note="ingress-nginx has no such annotation", messages=messages)
    if row.parse is None:
        return AnnotationResult(annotation=key, value=_short(raw), status=UNSUPPORTED, note=row.note,
                                replacement=row.replacement, pending=row.pending, snippet=row.snippet,
                                messages=messages)
    if any(d.severity == Severity.ERROR for d in here):
        return AnnotationResult(annotation=key, value=_short(raw), status=INVALID, replacement=row.replacement,
                                note=row.note if row.status == DIFFERENCE else "", messages=messages)
    return AnnotationResult(annotation=key, value=_short(raw), status=row.status,
                            note=row.note if row.status == DIFFERENCE else "", replacement=row.replacement,
                            messages=messages)


def _with_class(objects: list[K8sObject], settings: TranslateSettings) -> list[K8sObject]:
    """The objects, with the IngressClass of `settings` added when the manifests do not have it (a migration
    report is usually made from Ingress manifests alone)."""
    if any(isinstance(o, IngressClass) and o.meta.name == settings.ingress_class for o in objects):
        return objects
    return [*objects, IngressClass(meta=ObjectMeta(namespace="", name=settings.ingress_class),
                                   controller=settings.controller, is_default=False)]


def migrate(objects: Iterable[K8sObject], settings: TranslateSettings) -> Report:
    objs = _with_class(list(objects), settings)
    t = translate(objs, settings)
    served = set(t.served_ingresses)
    by_ingress: dict[tuple[str, str], list[Diagnostic]] = {}
    for d in t.diagnostics:
        if d.kind == "Ingress":
            by_ingress.setdefault((d.namespace, d.name), []).append(d)
    results = []
    for ing in sorted((o for o in objs if isinstance(o, Ingress)), key=lambda i: (i.meta.namespace, i.meta.name)):
        key = (ing.meta.namespace, ing.meta.name)
        diags = by_ingress.get(key, [])
        anns = tuple(_classify(ing, k, v, diags) for k, v in sorted(ing.meta.annotations)
                     if k.startswith(nginx.PREFIX))
        fields = {a_field for a_field in (field_of(a.annotation) for a in anns)}
        other = tuple(sorted({f"{d.field}: {d.message}" if d.field else d.message for d in diags
                              if d.severity == Severity.ERROR and d.field not in fields}))
        results.append(IngressResult(namespace=ing.meta.namespace, name=ing.meta.name, served=key in served,
                                     annotations=anns, other=other))
    return Report(ingresses=tuple(results), summary=_summary(results))


def _summary(results: Sequence[IngressResult]) -> tuple[dict, ...]:
    rows: dict[str, dict] = {}
    for i in results:
        for a in i.annotations:
            r = rows.setdefault(a.annotation, {"annotation": a.annotation, "objects": 0,
                                               **{s: 0 for s in (EXACT, DIFFERENCE, UNSUPPORTED, INVALID, UNKNOWN)}})
            r["objects"] += 1
            r[a.status] += 1
            if a.note and "note" not in r:
                r["note"] = a.note
            if a.replacement and "replacement" not in r:
                r["replacement"] = a.replacement
    return tuple(sorted(rows.values(), key=lambda r: (-r["objects"], r["annotation"])))


# --- output -------------------------------------------------------------------------------------------------

def render_text(report: Report, out: TextIO) -> None:
    for i in report.ingresses:
        out.write(f"Ingress {i.namespace}/{i.name}{'' if i.served else ' (not served: another ingress class)'}\n")
        if not i.annotations:
            out.write("  no nginx.ingress.kubernetes.io/ annotations\n")
        for a in i.annotations:
            line = f"  {a.status:<11} {a.annotation[len(nginx.PREFIX):]}: {a.value!r}"
            if a.note:
                line += f"\n              {'pending: ' if a.pending else ''}{a.note}"
            if a.replacement and a.status in BLOCKING:
                line += f"\n              instead: {a.replacement}"
            for m in a.messages:
                line += f"\n              - {m}"
            out.write(line + "\n")
        for m in i.other:
            out.write(f"  also: {m}\n")
    out.write("\nSummary by annotation\n")
    if report.summary:
        width = max(len(r["annotation"]) - len(nginx.PREFIX) for r in report.summary)
        out.write(f"  {'annotation':<{width}}  objects  exact  difference  unsupported  invalid  unknown\n")
        for r in report.summary:
            out.write(f"  {r['annotation'][len(nginx.PREFIX):]:<{width}}  {r['objects']:>7}  {r[EXACT]:>5}  "
                      f"{r[DIFFERENCE]:>10}  {r[UNSUPPORTED]:>11}  {r[INVALID]:>7}  {r[UNKNOWN]:>7}\n")
    t = report.totals()
    out.write(f"\n{len(report.ingresses)} Ingress(es): {t[EXACT]} exact, {t[DIFFERENCE]} with a difference, "
              f"{t[UNSUPPORTED]} unsupported, {t[INVALID]} invalid, {t[UNKNOWN]} unknown\n")


def objects_from_cluster(kubeconfig: str | None) -> tuple[list[K8sObject], list[Diagnostic]]:
    """One list of every kind the controller reads, through the Kubernetes source's reflectors."""
    import threading

    from xds_ingress.app import kube_api_client
    from xds_ingress.sources.kube import CONFIG_MAP_SPEC, KIND_SPECS, Reflector, WatchSettings
    from xds_ingress.store import Store

    store = Store()
    client = kube_api_client(kubeconfig)
    for spec in KIND_SPECS + (CONFIG_MAP_SPEC,):  # ConfigMaps: custom-headers, auth-proxy-set-headers
        Reflector(spec, None, client, store, WatchSettings(), threading.Event(), lambda: None).list()
    return store.objects(), store.diagnostics()


def migrate_cmd(paths: Sequence[str], settings: TranslateSettings, *, from_cluster: bool = False,
                kubeconfig: str | None = None, output: str = "text", allow_unsupported: bool = False,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    from xds_ingress.ops import EXIT_FAIL, EXIT_OK, EXIT_USAGE, check_paths, load_paths

    out = out or sys.stdout
    err = err or sys.stderr
    if from_cluster:
        try:
            objects, _ = objects_from_cluster(kubeconfig)
        except Exception as exc:  # noqa: BLE001 - no kubeconfig, API unreachable
            err.write(f"xds migrate: cannot read the cluster ({type(exc).__name__}: {exc})\n")
            return EXIT_USAGE
    else:
        if not paths:
            err.write("xds migrate: give -f PATH or --from-cluster\n")
            return EXIT_USAGE
        if not check_paths("migrate", paths):
            return EXIT_USAGE
        docs, _ = load_paths(paths)
        objects, _ = parse_objects(d.raw for d in docs.values())
    report = migrate(objects, settings)
    if output == "json":
        out.write(json.dumps(report.as_dict(), indent=2, sort_keys=False) + "\n")
    elif output == "yaml":
        out.write(yaml.safe_dump(report.as_dict(), sort_keys=False))
    else:
        render_text(report, out)
    if report.blocking and not allow_unsupported:
        err.write(f"xds migrate: {report.blocking} annotation(s) unsupported, invalid or unknown "
                  "(--allow-unsupported to accept)\n")
        return EXIT_FAIL
    return EXIT_OK
