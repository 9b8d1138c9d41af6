"""Incremental translation: a change recomputes only what it touches, and the result is the one a
translation from scratch gives, byte for byte (tests/test_incremental.py keeps it so).

Two kinds of change take a short path; anything else is translated from scratch:

- EndpointSlices only (pod churn, by far the most frequent change): `update_endpoints` rebuilds
  the ClusterLoadAssignments of the Services those slices belong to, and their NoReadyEndpoints
  diagnostics, with the same functions the full translation uses.
- Ingresses only, when they touch only named hosts (`update_ingresses`): the virtual hosts of the
  hosts the changed Ingresses had or have are recomputed from every Ingress with a rule for those
  hosts, and spliced into the previous translation; clusters come and go with their use. A change
  that involves what all hosts share (a host-less rule, a default backend, the TLS section, the
  ssl-redirect setting of an Ingress with TLS, TLS annotations, the ingress class) translates from scratch.
  The HTTPS route configurations (one per filter chain) and the HTTP redirects are recomputed from the
  spliced virtual hosts with the TLS state the last full translation kept (translate/tls.py).
  With --nginx-compat, nginx's host settings (regex hosts, app-root, force-ssl-redirect, and the aliases and
  www names that reach across hosts) are finished again over all hosts, reusing what was made of every
  virtual host that did not change (nginx.finish_memoized). What an Ingress lends to the Services it routes
  to (upstream annotations, shared by every host's routes to them) or ssl-passthrough, when it changes,
  and nginx TLS annotations translate from scratch.

Both work on the `Index` a translation keeps: the diagnostics of each scope (an Ingress, a host, a
Service port...) and which scopes each host uses.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping

from xds_ingress import ir
from xds_ingress.model import EndpointSlice, Ingress, Service
from xds_ingress.translate import (
    NGINX_SCOPE,
    TranslateSettings,
    Translation,
    _precedence,
    _Translator,
    gather_diagnostics,
    route_configurations,
    virtual_host,
)
from xds_ingress.translate import auth, nginx
from xds_ingress.translate.annotations import XDS
from xds_ingress.translate.classes import is_ours
from xds_ingress.translate.tls import http_virtual_host
from xds_ingress.translate.services import load_assignment, no_ready_endpoints

ServiceKey = tuple[str, str]  # (namespace, name)
IngressKey = tuple[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointsUpdate:
    translation: Translation
    changed: tuple[ir.ClusterLoadAssignment, ...]  # the assignments whose content changed


def eds_clusters_by_service(translation: Translation) -> dict[ServiceKey, tuple[ir.Cluster, ...]]:
    """The clusters with a ClusterLoadAssignment, by Service: an index for `update_endpoints`."""
    with_cla = {cla.cluster_name for cla in translation.ir.endpoints}
    out: dict[ServiceKey, list[ir.Cluster]] = {}
    for c in translation.ir.clusters:
        if c.name in with_cla:
            out.setdefault((c.service.namespace, c.service.name), []).append(c)
    return {k: tuple(v) for k, v in out.items()}


def update_endpoints(previous: Translation, affected: Iterable[ServiceKey],
                     services: Mapping[ServiceKey, Service],
                     slices: Mapping[ServiceKey, Iterable[EndpointSlice]],
                     clusters: Mapping[ServiceKey, tuple[ir.Cluster, ...]] | None = None) -> EndpointsUpdate | None:
    """The translation after the EndpointSlices of `affected` Services changed, or None when
    that cannot be done incrementally (then translate everything). `clusters` is
    `eds_clusters_by_service(previous)`, passed in when the caller keeps it."""
    index = previous.index
    if index is None:
        return None
    if clusters is None:
        clusters = eds_clusters_by_service(previous)
    replaced: dict[str, ir.ClusterLoadAssignment] = {}
    scopes: dict[tuple, tuple] = {}
    for key in sorted(set(affected)):
        for cluster in clusters.get(key, ()):
            svc = services.get(key)
            port = next((p for p in svc.ports if p.port == cluster.port), None) if svc is not None else None
            if port is None:
                return None  # the Service itself changed or went away: not an endpoints-only change
            new = load_assignment(cluster.name, port, slices.get(key, ()))
            scope = ("port", key[0], key[1], cluster.port)
            kept = tuple(d for d in index.by_scope.get(scope, ()) if d.reason != "NoReadyEndpoints")
            scopes[scope] = kept if new.endpoints else kept + (no_ready_endpoints(svc, port),)
            if new != index.assignments[cluster.name]:
                replaced[cluster.name] = new
    by_scope = index.by_scope
    if any(by_scope.get(s, ()) != v for s, v in scopes.items()):
        by_scope = dict(by_scope)
        for s, v in scopes.items():
            if v:
                by_scope[s] = v
            else:
                by_scope.pop(s, None)
    if not replaced and by_scope is index.by_scope:
        return EndpointsUpdate(translation=previous, changed=())
    assignments = index.assignments
    endpoints = previous.ir.endpoints
    positions = index.endpoint_positions
    if replaced:
        assignments = dict(assignments)
        assignments.update(replaced)
        if positions is None:
            positions = {cla.cluster_name: i for i, cla in enumerate(endpoints)}
        out = list(endpoints)
        for name, cla in replaced.items():
            out[positions[name]] = cla
        endpoints = tuple(out)
    new_index = dataclasses.replace(index, by_scope=by_scope, assignments=assignments, endpoint_positions=positions)
    diagnostics = (previous.diagnostics if by_scope is index.by_scope
                   else gather_diagnostics(by_scope, index.uses))
    translation = dataclasses.replace(previous, ir=dataclasses.replace(previous.ir, endpoints=endpoints),
                                      diagnostics=diagnostics, index=new_index)
    return EndpointsUpdate(translation=translation, changed=tuple(replaced[n] for n in sorted(replaced)))


# --- Ingress changes ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class IngressUpdate:
    translation: Translation
    route_configurations: tuple[ir.RouteConfiguration, ...]  # the ones whose content changed
    added_clusters: tuple[ir.Cluster, ...]
    removed_clusters: tuple[str, ...]
    added_assignments: tuple[ir.ClusterLoadAssignment, ...]


_SSL_REDIRECT = XDS.prefix + "ssl-redirect"
_TLS_ANNOTATIONS = frozenset(XDS.full(a) for a in XDS.table if a.key.startswith("https."))


def _shared_part(ing: Ingress | None, nginx_compat: bool = False) -> tuple:
    """What of an Ingress the whole translation shares (not host by host): its TLS section (with what
    decides who wins a host's certificate, and the rule hosts when a TLS entry lists none), and the
    ssl-redirect setting and TLS annotations it gives those hosts (translate/tls.py: diagnosed globally,
    even on an Ingress without TLS); with nginx compatibility, those of its nginx annotations too."""
    tls_annotations = tuple((k, v) for k, v in ing.meta.annotations if k in _TLS_ANNOTATIONS) if ing else ()
    if ing is not None and nginx_compat:
        tls_annotations += nginx.shared_values(ing.meta)
    if ing is None or (not ing.tls and not tls_annotations):
        return ()
    rule_hosts = tuple(sorted({r.host for r in ing.rules if r.host})) if any(not t.hosts for t in ing.tls) else ()
    return (ing.tls, rule_hosts, _precedence(ing), ing.meta.annotation(_SSL_REDIRECT), tls_annotations)


def _reaches_across(old: Ingress | None, new: Ingress | None, settings: TranslateSettings) -> bool:
    """With nginx compatibility, whether a change of an Ingress reaches beyond its own hosts' routes: a change of
    what it lends to the Services it routes to (upstream annotations, which every host's routes to those Services
    share; nginx.lending), or ssl-passthrough (a filter chain of the HTTPS listener)."""
    if not settings.nginx_compat:
        return False
    if any(ing is not None and nginx.passthrough_backends(ing) for ing in (old, new)):
        return True
    lent = [(nginx.lending(ing), _precedence(ing)) if ing is not None else (None, None) for ing in (old, new)]
    return lent[0] != lent[1] and (lent[0][0] is not None or lent[1][0] is not None)


def update_ingresses(previous: Translation, changed: Mapping[IngressKey, Ingress | None],
                     settings: TranslateSettings, slices: Mapping[ServiceKey, Iterable[EndpointSlice]]
                     ) -> IngressUpdate | None:
    """The translation after the Ingresses `changed` (key -> the new object, None when deleted) changed, or
    None when the change involves what every host shares (then translate everything). `slices` gives the
    current EndpointSlices of a Service (for a cluster used for the first time)."""
    index = previous.index
    if index is None:
        return None
    hosts: set[str] = set()
    now_ours: dict[IngressKey, Ingress] = {}
    for key, new in changed.items():
        ours = new is not None and is_ours(new, index.classes, settings, [])
        if ours != (key in index.ours):
            return None
        if not ours:
            continue  # another controller's, before and after: only its own diagnostics can change
        now_ours[key] = new
        old = index.ours.get(key)
        for ing in (old, new):
            if ing is None:
                continue
            if ing.default_backend is not None or any(not r.host for r in ing.rules):
                return None
            hosts.update(r.host for r in ing.rules)
        if (_shared_part(old, settings.nginx_compat) != _shared_part(new, settings.nginx_compat)
                or _reaches_across(old, new, settings)):
            return None
    only = frozenset(hosts)

    # Every Ingress with a rule for one of those hosts, as it is now.
    keys: set[IngressKey] = set()
    for h in only:
        keys |= index.host_ingresses.get(h, frozenset())
    keys -= changed.keys()
    subset = [index.ours[k] for k in keys]
    subset += [ing for ing in changed.values() if ing is not None]
    t = _Translator(subset, settings, base=index, slices=slices)
    _ours, tables, _default, _tls, host_ingresses = t.collect(only)
    t.make_host_routes(tables)
    t._flush()

    # Splice: the changed Ingresses' own scopes, the hosts' scopes and uses, then what the subset computed.
    ingresses = dict(index.ingresses)
    ours_all = dict(index.ours)
    for key, new in changed.items():
        if new is None:
            ingresses.pop(key, None)
        else:
            ingresses[key] = new
        ours_all.pop(key, None)
    ours_all.update(now_ours)
    by_scope = dict(index.by_scope)
    touched = dict(index.touched)
    uses = Counter(index.uses)
    freed: set[tuple] = set()
    for key in changed:
        by_scope.pop(("ingress", *key), None)
        touched.pop(("ingress", *key), None)
    for h in only:
        by_scope.pop(("host", h), None)
        for s in touched.pop(("host", h), ()):
            uses[s] -= 1
            if uses[s] <= 0:
                del uses[s]
                freed.add(s)
    for s in freed:
        by_scope.pop(s, None)
    # Everything the subset translated was computed in full: its scopes replace the previous ones.
    for scope in set(t.by_scope).union(*t.touched.values()):
        diags = t.by_scope.get(scope)
        if diags:
            by_scope[scope] = tuple(diags)
        else:
            by_scope.pop(scope, None)
    for unit, used in t.touched.items():
        touched[unit] = frozenset(used)
        uses.update(used)
    host_index = dict(index.host_ingresses)
    for h in only:
        if host_ingresses.get(h):
            host_index[h] = frozenset(host_ingresses[h])
        else:
            host_index.pop(h, None)

    # Clusters follow their use.
    clusters, assignments = index.clusters, index.assignments
    added = [c for name, c in t.clusters.items() if name not in clusters]
    removed = sorted(s[1] for s in freed if s[0] == "cluster" and not uses.get(s))
    if added or removed:
        clusters, assignments = dict(clusters), dict(assignments)
        for c in added:
            clusters[c.name] = c
            if c.name in t.assignments:
                assignments[c.name] = t.assignments[c.name]
        for name in removed:
            clusters.pop(name, None)
            assignments.pop(name, None)

    # The hosts' virtual hosts, and the route configurations made of them.
    host_routes = dict(index.host_routes)
    vhosts, http_vhosts = dict(index.vhosts), dict(index.http_vhosts)
    catch_all = index.host_routes.get(ir.CATCH_ALL_HOST, ())
    for h in only:
        routes = t.host_routes.get(h)
        if routes is None:
            host_routes.pop(h, None)
            vhosts.pop(h, None)
            http_vhosts.pop(h, None)
            continue
        host_routes[h] = routes
        if index.host_routes.get(h) == routes and h in vhosts:
            continue  # the same routes: keep the very same virtual hosts (and their cached bytes)
        vh = virtual_host(h, routes, catch_all, index.default_route)
        vhosts[h] = vh
        http_vhosts[h] = http_virtual_host(index.tls, vh)
    configs = route_configurations(vhosts, http_vhosts, index.tls)
    served = previous.served_ingresses
    if ours_all.keys() != index.ours.keys() or any(
            _precedence(ing) != _precedence(index.ours[k]) for k, ing in now_ours.items() if k in index.ours):
        served = tuple((i.meta.namespace, i.meta.name) for i in sorted(ours_all.values(), key=_precedence))
    finish_memo = index.finish_memo
    if settings.nginx_compat:
        # nginx's host settings reach across hosts (aliases, www names): finished again over all hosts, reusing
        # what it made of every virtual host that did not change (nginx.finish_memoized).
        finished: list = []
        configs, finish_memo = nginx.finish_memoized(configs, ours_all, settings, finished, index.tls,
                                                     memo=index.finish_memo, changed=changed.keys())
        if finished:
            by_scope[NGINX_SCOPE] = tuple(finished)
        else:
            by_scope.pop(NGINX_SCOPE, None)
    changed_configs = tuple(rc for rc, old in zip(configs, previous.ir.route_configurations)
                            if rc.virtual_hosts != old.virtual_hosts)
    # Authentication filters live in the listeners: a change of them is a change of what all hosts share.
    if any(auth.has_auth(index.host_routes.get(h, ())) or auth.has_auth(t.host_routes.get(h, ())) for h in only):
        before = previous.ir.listeners[0].auth if previous.ir.listeners else None
        if auth.listener_auth(configs, settings) != before:
            return None

    new_ir = dataclasses.replace(
        previous.ir, route_configurations=configs,
        clusters=previous.ir.clusters if clusters is index.clusters else tuple(clusters[k] for k in sorted(clusters)),
        endpoints=(previous.ir.endpoints if assignments is index.assignments
                   else tuple(assignments[k] for k in sorted(assignments))))
    new_index = dataclasses.replace(
        index, ingresses=ingresses, ours=ours_all, host_ingresses=host_index, by_scope=by_scope, touched=touched,
        uses=uses, host_routes=host_routes, vhosts=vhosts, http_vhosts=http_vhosts, clusters=clusters,
        assignments=assignments, finish_memo=finish_memo,
        endpoint_positions=index.endpoint_positions if assignments is index.assignments else None)
    translation = Translation(ir=new_ir, diagnostics=gather_diagnostics(by_scope, uses), served_ingresses=served,
                              index=new_index)
    return IngressUpdate(
        translation=translation, route_configurations=changed_configs, added_clusters=tuple(added),
        removed_clusters=tuple(removed),
        added_assignments=tuple(assignments[c.name] for c in added if c.name in assignments))


__all__ = ["EndpointsUpdate", "IngressUpdate", "eds_clusters_by_service", "update_endpoints", "update_ingresses"]
