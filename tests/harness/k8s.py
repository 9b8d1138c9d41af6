"""Builders of raw Kubernetes objects (dicts, as the API server or a manifest has them)."""

from __future__ import annotations

from typing import Any

CONTROLLER = "xds-ingress.io/controller"


def ingress_class(name: str = "xds", *, controller: str = CONTROLLER, default: bool = False) -> dict:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def backend(service: str, port: int | str) -> dict:
    p = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": p}}


def path(p: str, service: str, port: int | str = 80, path_type: str = "Prefix") -> dict:
    return {"path": p, "pathType": path_type, "backend": backend(service, port)}


def rule(host: str | None, *paths: dict) -> dict:
    r: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host:
        r["host"] = host
    return r


def ingress(name: str, *rules: dict, namespace: str = "default", class_name: str | None = "xds",
            default_backend: tuple[str, int | str] | None = None, tls: list[dict] | None = None,
            annotations: dict[str, str] | None = None, created: str | None = None) -> dict:
    spec: dict[str, Any] = {"rules": list(rules)}
    if class_name:
        spec["ingressClassName"] = class_name
    if default_backend:
        spec["defaultBackend"] = backend(*default_backend)
    if tls:
        spec["tls"] = tls
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def service(name: str, *, namespace: str = "default", ports: list[tuple[str, int]] | None = None,
            annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    ports = ports or [("http", 80)]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"ports": [{"name": n, "port": p, "targetPort": 8080} for n, p in ports]}}


def endpoint_slice(name: str, service: str, port: int, addresses: list[str] | None = None, *,
                   namespace: str = "default", port_name: str = "http", ready: bool = True,
                   serving: bool | None = None, terminating: bool | None = None,
                   address_type: str = "IPv4") -> dict:
    """One slice whose endpoints all listen on `port` (tests run every "pod" on loopback)."""
    cond: dict[str, bool] = {"ready": ready}
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    addresses = addresses if addresses is not None else ["127.0.0.1"]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": dict(cond)} for a in addresses],
    }


def backend_service(name: str, ports: list[int], *, namespace: str = "default") -> list[dict]:
    """A Service with one endpoint per echo backend port (one EndpointSlice each)."""
    objs = [service(name, namespace=namespace)]
    for i, p in enumerate(ports):
        objs.append(endpoint_slice(f"{name}-{i}", name, p, namespace=namespace))
    return objs
