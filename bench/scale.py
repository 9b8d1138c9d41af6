"""Deterministic Kubernetes objects at a given scale (raw dicts, as the API server has them).

Scale S (the issue's): 1,000 hosts, 10,000 Ingress paths over 2,000 Ingresses (5 paths each),
2,000 Services, 2,000 EndpointSlices with 25 endpoints each (50,000 endpoints), spread over
20 namespaces. Other scales keep the ratios and scale the counts by `paths / 10,000`.

Each Ingress has one host (two Ingresses share each host) and five paths, /<ingress>/p0 ..
/<ingress>/p4 (p4 Exact, the others Prefix), each to one of its namespace's Services, so each
Service is the backend of five paths. Every Service has one port (80 -> 8080) and one
EndpointSlice of 25 ready endpoints (10.<n>.<s>.1 .. .25), none reachable: Envoy never
connects to them (no health checks); the benchmarks that need traffic point one Service at
real loopback backends.

`nginx_annotations` gives the Ingresses a mix of ingress-nginx annotations, for `--nginx-compat`: every
Ingress proxy-read-timeout and proxy-body-size; every 4th enable-cors; every 5th limit-rps; every 10th
backend-protocol GRPC (lent to its Services); the first Ingress of every 10th host use-regex with
rewrite-target; of every 20th, server-alias and from-to-www-redirect.
"""

from __future__ import annotations

from dataclasses import dataclass

INGRESS_CLASS = "xds"
PATHS_PER_INGRESS = 5
ENDPOINTS_PER_SLICE = 25
NAMESPACES = 20


@dataclass(frozen=True, slots=True)
class Scale:
    paths: int = 10_000

    @property
    def ingresses(self) -> int:
        return max(1, self.paths // PATHS_PER_INGRESS)

    @property
    def services(self) -> int:
        return self.ingresses  # one Service per Ingress on average; each Service backs five paths

    @property
    def hosts(self) -> int:
        return max(1, self.ingresses // 2)

    @property
    def namespaces(self) -> int:
        return min(NAMESPACES, self.ingresses)

    @property
    def endpoints(self) -> int:
        return self.services * ENDPOINTS_PER_SLICE

    def describe(self) -> dict[str, int]:
        return {"hosts": self.hosts, "paths": self.ingresses * PATHS_PER_INGRESS, "ingresses": self.ingresses,
                "services": self.services, "endpoint_slices": self.services, "endpoints": self.endpoints}


S = Scale(10_000)


def namespace(i: int) -> str:
    return f"ns-{i:02d}"


def ingress_class() -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": "xds-ingress.io/controller"}}


def service(ns: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoint_slice(ns: str, service_name: str, addresses: list[str], *, port: int = 8080,
                   name: str | None = None) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{service_name}-abcde", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


def slice_addresses(n: int, s: int) -> list[str]:
    """The 25 endpoint addresses of Service number s of namespace number n."""
    return [f"10.{n}.{s % 250}.{s // 250 * 25 + e + 1}" for e in range(ENDPOINTS_PER_SLICE)]


def ingress_path(ingress_name: str, j: int, service_name: str) -> dict:
    return {"path": f"/{ingress_name}/p{j}", "pathType": "Exact" if j == PATHS_PER_INGRESS - 1 else "Prefix",
            "backend": {"service": {"name": service_name, "port": {"number": 80}}}}


def ingress(ns: str, name: str, host: str, paths: list[dict]) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": ns},
            "spec": {"ingressClassName": INGRESS_CLASS, "rules": [{"host": host, "http": {"paths": paths}}]}}


@dataclass(frozen=True, slots=True)
class Objects:
    scale: Scale
    raws: list[dict]

    def by_kind(self, kind: str) -> list[dict]:
        return [r for r in self.raws if r["kind"] == kind]


def service_name(n: int, s: int) -> str:
    return f"svc-{s:04d}"


def ingress_name(n: int, m: int) -> str:
    return f"ing-{m:04d}"


NGINX = "nginx.ingress.kubernetes.io/"


def nginx_annotations(g: int) -> dict[str, str]:
    """ingress-nginx annotations of the g-th Ingress (see the module's docstring)."""
    out = {NGINX + "proxy-read-timeout": "60", NGINX + "proxy-body-size": "8m"}
    if g % 4 == 0:
        out[NGINX + "enable-cors"] = "true"
    if g % 5 == 0:
        out[NGINX + "limit-rps"] = "50"
    if g % 10 == 3:
        out[NGINX + "backend-protocol"] = "GRPC"
    if g % 20 == 0:
        out[NGINX + "use-regex"] = "true"
        out[NGINX + "rewrite-target"] = "/"
    if g % 40 == 0:
        out[NGINX + "server-alias"] = f"alias-{g // 2:04d}.example.com"
        out[NGINX + "from-to-www-redirect"] = "true"
    return out


def generate(scale: Scale = S, nginx: bool = False) -> Objects:
    """Every object of `scale`, in a fixed order (same scale, same objects); with `nginx`, the Ingresses carry
    ingress-nginx annotations (`nginx_annotations`)."""
    raws: list[dict] = [ingress_class()]
    per_ns = scale.services // scale.namespaces
    extra = scale.services % scale.namespaces
    g = 0  # global Ingress number (two per host)
    for n in range(scale.namespaces):
        ns = namespace(n)
        count = per_ns + (1 if n < extra else 0)
        for s in range(count):
            raws.append(service(ns, service_name(n, s)))
            raws.append(endpoint_slice(ns, service_name(n, s), slice_addresses(n, s)))
        for m in range(count):
            paths = [ingress_path(ingress_name(n, m), j, service_name(n, (m * PATHS_PER_INGRESS + j) % count))
                     for j in range(PATHS_PER_INGRESS)]
            raws.append(ingress(ns, ingress_name(n, m), f"host-{g // 2:04d}.example.com", paths))
            if nginx:
                raws[-1]["metadata"]["annotations"] = nginx_annotations(g)
            g += 1
    return Objects(scale=scale, raws=raws)
