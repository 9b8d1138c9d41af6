"""The resource types the fake API server serves, and how to find one by URL or by kind."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResourceDef:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool = False  # writes to the main resource keep .status; /status keeps the rest
    field_labels: tuple[str, ...] = ("metadata.name", "metadata.namespace")
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """As the real server names it in messages: `services`, `ingresses.networking.k8s.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


RESOURCES: tuple[ResourceDef, ...] = (
    ResourceDef("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    ResourceDef("", "v1", "services", "Service", namespaced=True, status_subresource=True),
    ResourceDef("", "v1", "secrets", "Secret", namespaced=True,
                field_labels=("metadata.name", "metadata.namespace", "type")),
    ResourceDef("", "v1", "configmaps", "ConfigMap", namespaced=True),
    ResourceDef("", "v1", "events", "Event", namespaced=True),
    ResourceDef("networking.k8s.io", "v1", "ingresses", "Ingress", namespaced=True,
                status_subresource=True),
    ResourceDef("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False),
    ResourceDef("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True),
    ResourceDef("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
)

_BY_URL = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_NAME: dict[str, ResourceDef] = {}
for _r in RESOURCES:
    _BY_NAME[_r.kind.lower()] = _r
    _BY_NAME[_r.plural] = _r
    _BY_NAME[_r.group_resource] = _r


def by_url(group: str, version: str, plural: str) -> ResourceDef | None:
    return _BY_URL.get((group, version, plural))


def by_name(kind: str) -> ResourceDef:
    """A resource by kind ("Ingress"), plural ("ingresses") or group resource, any case."""
    try:
        return _BY_NAME[kind.lower()]
    except KeyError:
        raise KeyError(f"fakekube serves no resource {kind!r}") from None


def group_versions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out
