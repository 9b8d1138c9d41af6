"""Which Ingresses are ours: IngressClass selection as the Ingress v1 API defines it."""

from __future__ import annotations

from collections.abc import Mapping

from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import KIND_INGRESS, LEGACY_CLASS_ANNOTATION, Ingress, IngressClass
from xds_ingress.translate.settings import TranslateSettings


def is_ours(ingress: Ingress, classes: Mapping[str, IngressClass], settings: TranslateSettings,
            diagnostics: list[Diagnostic]) -> bool:
    """True when `ingress` is served by this controller.

    - spec.ingressClassName names our class, and that IngressClass has our controller;
    - or the legacy kubernetes.io/ingress.class annotation names our class;
    - or no class at all, and our IngressClass is marked as the cluster default.
    """
    meta = ingress.meta
    name = ingress.ingress_class_name
    legacy = meta.annotation(LEGACY_CLASS_ANNOTATION)
    ours = classes.get(settings.ingress_class)
    if name is not None:
        if name != settings.ingress_class:
            return False
        if ours is None:
            diagnostics.append(Diagnostic(
                kind=KIND_INGRESS, namespace=meta.namespace, name=meta.name, field="spec.ingressClassName",
                reason="IngressClassNotFound", severity=Severity.WARNING,
                message=(f"names IngressClass {name!r}, which does not exist, so it is not served; create the "
                         f"IngressClass {name!r} with spec.controller {settings.controller!r}.")))
            return False
        if ours.controller != settings.controller:
            return False
        if legacy is not None and legacy != name:
            diagnostics.append(Diagnostic(
                kind=KIND_INGRESS, namespace=meta.namespace, name=meta.name,
                field=f"metadata.annotations[{LEGACY_CLASS_ANNOTATION!r}]", reason="ConflictingIngressClass",
                severity=Severity.WARNING,
                message=(f"spec.ingressClassName {name!r} and the annotation {LEGACY_CLASS_ANNOTATION} "
                         f"{legacy!r} disagree; spec.ingressClassName is used. Remove the annotation.")))
        return True
    if legacy is not None:
        return legacy == settings.ingress_class
    return ours is not None and ours.controller == settings.controller and ours.is_default
