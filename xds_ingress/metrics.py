"""Prometheus metrics of one control plane: one CollectorRegistry per App, no global state.

Counters and histograms are updated where things happen (the ADS observer, the translation
loop); gauges that describe the current state (connected proxies, objects, diagnostics,
resources) are read at scrape time from callables, so they are never half-updated.
See the README's "Metrics" section for each name, its labels and its meaning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from xds_ingress.diagnostics import Diagnostic

# Seconds: from a millisecond (an endpoint change on an idle control plane) to a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
XDS_TYPES = ("clusters", "endpoints", "listeners", "routes", "secrets")
TRANSLATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self):  # noqa: ANN201 - prometheus_client's interface
        m = self.m
        g = GaugeMetricFamily("xds_connected_proxies", "Envoy ADS streams currently open.")
        g.add_metric([], m.connected_proxies())
        yield g
        g = GaugeMetricFamily("xds_objects", "Kubernetes objects in the store, by kind.", labels=["kind"])
        for kind, n in sorted(m.objects_by_kind().items()):
            g.add_metric([kind], n)
        yield g
        g = GaugeMetricFamily("xds_diagnostics", "Current diagnostics, by reason and severity.",
                              labels=["reason", "severity"])
        counts = Counter((d.reason, d.severity.value) for d in m.diagnostics())
        for (reason, severity), n in sorted(counts.items()):
            g.add_metric([reason, severity], n)
        yield g
        g = GaugeMetricFamily("xds_resources", "Resources in the current snapshot, by xDS type.", labels=["type"])
        for t, n in sorted(m.resources_by_type().items()):
            g.add_metric([t], n)
        yield g
        g = GaugeMetricFamily("xds_ready", "1 when the first snapshot is built and the xDS server started.")
        g.add_metric([], 1.0 if m.ready() else 0.0)
        yield g
        g = GaugeMetricFamily("xds_rejected_objects",
                              "Connected proxies whose latest response of a type, made from this object, they NACKed.",
                              labels=["type", "kind", "namespace", "name"])
        for labels, n in sorted(m.rejected_objects().items()):
            g.add_metric(list(labels), n)
        yield g


def _zero() -> int:
    return 0


class Metrics:
    """The metrics of one App. The state callables are set by the App after construction."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.responses = PromCounter("xds_responses", "xDS responses sent to Envoys, by type.", ["type"], registry=r)
        self.response_bytes = PromCounter("xds_response_bytes", "Bytes of xDS responses sent, by type.", ["type"],
                                          registry=r)
        self.acks = PromCounter("xds_acks", "ACKs received from Envoys, by type.", ["type"], registry=r)
        self.nacks = PromCounter("xds_nacks", "NACKs received from Envoys (a rejected response), by type.",
                                 ["type"], registry=r)
        self.streams = PromCounter("xds_streams_opened", "ADS streams opened.", registry=r)
        self.translations = PromCounter("xds_translations", "Translations run (each a full rebuild).", registry=r)
        self.translation_failures = PromCounter("xds_translation_failures",
                                                "Translations that raised (the last good snapshot is kept).",
                                                registry=r)
        self.snapshots = PromCounter("xds_snapshots", "Snapshots published (translations that changed something).",
                                     registry=r)
        self.translation_duration = Histogram(
            "xds_translation_duration_seconds",
            "Time to translate the store into a snapshot: parse-free translation, Envoy messages, serialization.",
            buckets=TRANSLATION_BUCKETS, registry=r)
        self.change_to_ack = Histogram(
            "xds_change_to_ack_seconds",
            "From a change entering the store to the Envoy's ACK of the response that carries it, by type.",
            ["type"], buckets=LATENCY_BUCKETS, registry=r)
        for t in XDS_TYPES:  # every type's series exists from the start, at zero
            for metric in (self.responses, self.response_bytes, self.acks, self.nacks, self.change_to_ack):
                metric.labels(t)
        self.connected_proxies: Callable[[], int] = _zero
        self.objects_by_kind: Callable[[], Mapping[str, int]] = dict
        self.diagnostics: Callable[[], Iterable[Diagnostic]] = tuple
        self.resources_by_type: Callable[[], Mapping[str, int]] = dict
        self.ready: Callable[[], bool] = bool
        self.rejected_objects: Callable[[], Mapping[tuple[str, str, str, str], int]] = dict
        r.register(_StateCollector(self))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
