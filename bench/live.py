"""Benchmarks 4-7: the real control plane (in this process, as `xds serve` runs it), real Envoys,
real echo backends, loopback only.

The control plane is the App with its translation loop, ADS server and metrics (the test
harness's ControlPlane runs it in a thread with its own event loop). Objects enter its store
as a Kubernetes watch would put them (`Store.upsert` from another thread), so what is
measured is watch event -> debounce -> translation -> snapshot -> ADS -> Envoy.

4. Propagation: an EndpointSlice change (the probe Service's one endpoint moves between two
   echo backends) to Envoy's ACK of the new ClusterLoadAssignment, and to the first request
   that reaches the new backend (a prober process sends a request about every millisecond).
5. Bytes on the wire per single-endpoint change: a delta Envoy and a state-of-the-world Envoy,
   the bytes of every response each is sent for the change (protobuf payload as written).
6. Fan-out: synthetic delta streams (another process) plus the real Envoy; the control
   plane's RSS before and after they connect, then endpoint changes ACKed by every stream.
7. Churn: EndpointSlice changes at a fixed rate for a while: RSS, translations, pushes.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import scale as scales
from bench.common import (mib, ms, percentile, python, quiet_logs, rss_bytes, settle_memory, summary, table,
                          write_result)

PROBE_NS, PROBE_SERVICE = scales.namespace(0), scales.service_name(0, 0)
PROBE_CLUSTER = f"{PROBE_NS}/{PROBE_SERVICE}/80"
PROBE_HOST = "host-0000.example.com"
PROBE_PATH = f"/{scales.ingress_name(0, 0)}/p0/probe"


@dataclass
class Ack:
    t: float
    stream: int
    node: str
    protocol: str
    version: str | None  # the version of the watched ClusterLoadAssignment the stream now holds


@dataclass
class Sent:
    t: float
    stream: int
    node: str
    protocol: str
    type_url: str
    size: int


@dataclass
class Hooks:
    """What the control plane's observer and cache report, with CLOCK_MONOTONIC times."""

    watch: str = PROBE_CLUSTER
    acks: list[Ack] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    snapshots: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.acks.clear()
            self.sent.clear()
            self.snapshots.clear()


class Live:
    """The control plane loaded with a scale, two echo backends, and the Envoys started on it."""

    def __init__(self, paths: int, work: Path) -> None:
        from tests.harness import Backends, free_ports
        from tests.harness.controlplane import ControlPlane
        from xds_ingress.envoy import types

        quiet_logs()
        self.types = types
        self.work = work
        self.stack = ExitStack()
        self.objects = scales.generate(scales.Scale(paths))
        self.backends = self.stack.enter_context(Backends(["a", "b"]))
        self.http_port, https_port = free_ports(2)
        # The file source polls an empty directory (nothing to read); objects are upserted directly.
        self.cp = self.stack.enter_context(ControlPlane(work / "manifests", http_port=self.http_port,
                                                        https_port=https_port, poll_interval=1.0))
        self.app = self.cp.app
        deadline = time.monotonic() + 30
        while not self.cp.call(lambda: self.app.controller.ready.is_set()):
            assert time.monotonic() < deadline, "the control plane did not build its first snapshot"
            time.sleep(0.05)
        self.hooks = Hooks()
        self.cp.call(self._install_hooks)
        self.slices = {r["metadata"]["namespace"] + "/" + r["metadata"]["name"]: r
                       for r in self.objects.by_kind("EndpointSlice")}
        probe = self._probe_slice("a")
        raws = {_key(r): r for r in self.objects.raws}
        raws[_key(probe)] = probe
        t0 = time.monotonic()
        self.app.store.replace(raws)
        self.wait_for(lambda: (s := self.app.cache.snapshot) is not None and
                      len(s.of_type(types.ENDPOINT)) == scales.Scale(paths).services, 120, "the objects to be translated")
        self.load_seconds = time.monotonic() - t0
        self.envoys: dict[str, Any] = {}

    def _install_hooks(self) -> None:
        hooks = self.hooks
        obs = self.app.ads.observer
        types = self.types
        ack, response_sent = obs.ack, obs.response_sent

        def on_ack(stream, ts) -> None:  # noqa: ANN001
            ack(stream, ts)
            if ts.type_url == types.ENDPOINT:
                r = (ts.acked or {}).get(hooks.watch)
                with hooks.lock:
                    hooks.acks.append(Ack(time.monotonic(), stream.id, stream.node_id, stream.protocol,
                                          r.version if r is not None else None))

        def on_response(stream, ts, resources, size) -> None:  # noqa: ANN001
            response_sent(stream, ts, resources, size)
            with hooks.lock:
                hooks.sent.append(Sent(time.monotonic(), stream.id, stream.node_id, stream.protocol, ts.type_url,
                                       size))

        obs.ack = on_ack
        obs.response_sent = on_response

        def on_snapshot(snap) -> None:  # noqa: ANN001 - from the translation thread
            with hooks.lock:
                hooks.snapshots.append((snap.published_at, snap.serial))
        self.app.cache.subscribe(on_snapshot)

    # -- objects --

    def _probe_slice(self, backend: str) -> dict:
        return scales.endpoint_slice(PROBE_NS, PROBE_SERVICE, ["127.0.0.1"], port=self.backends.port(backend),
                                     name=f"{PROBE_SERVICE}-abcde")

    def set_probe(self, backend: str) -> float:
        """Point the probe Service at an echo backend; the time of the store change."""
        raw = self._probe_slice(backend)
        t = time.monotonic()
        assert self.app.store.upsert(raw)
        return t

    def endpoint_change(self, index: int, step: int) -> tuple[dict, str]:
        """The index-th (non-probe) EndpointSlice with its first endpoint at another address, and its cluster."""
        keys = sorted(self.slices)
        key = keys[1 + index % (len(keys) - 1)]
        raw = self.slices[key]
        eps = [dict(e) for e in raw["endpoints"]]
        head, _, _last = eps[0]["addresses"][0].rpartition(".")
        eps[0] = {**eps[0], "addresses": [f"{head}.{100 + step % 150}"]}
        raw = {**raw, "endpoints": eps}
        ns = raw["metadata"]["namespace"]
        return raw, f"{ns}/{raw['metadata']['labels']['kubernetes.io/service-name']}/80"

    def apply(self, raw: dict) -> tuple[bool, float]:
        """Upsert one object as a watch event would: (whether it changed anything, the time)."""
        if raw["kind"] == "EndpointSlice":
            self.slices[raw["metadata"]["namespace"] + "/" + raw["metadata"]["name"]] = raw
        t = time.monotonic()
        return self.app.store.upsert(raw), t

    def cla_version(self, cluster: str) -> str | None:
        snap = self.app.cache.snapshot
        r = snap.of_type(self.types.ENDPOINT).get(cluster) if snap else None
        return r.version if r else None

    # -- processes --

    def start_envoy(self, name: str, protocol: str) -> Any:
        from tests.harness import Envoy

        envoy = self.stack.enter_context(Envoy(self.cp.bootstrap(node_id=name, xds_protocol=protocol),
                                               self.work / name, name=name, start_timeout=120))
        self.envoys[name] = envoy
        self.cp.wait_synced(node_id=name, timeout=120)
        return envoy

    def stop_envoy(self, name: str) -> None:
        self.envoys.pop(name).stop()
        self.wait_for(lambda: not any(s.node_id == name for s in list(self.app.ads.streams.values())), 20,
                      f"the stream of {name} to close")

    def prober(self) -> Prober:
        return Prober(self.http_port)

    @staticmethod
    def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    def close(self) -> None:
        self.stack.close()


def _key(raw: dict) -> tuple[str, str, str]:
    return raw["kind"], raw["metadata"].get("namespace", ""), raw["metadata"]["name"]


class Prober:
    """The prober process (bench/prober.py) and the backend changes it saw."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([python(), "-m", "bench.prober", str(port), PROBE_HOST, PROBE_PATH],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.seen: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, _, what = line.strip().partition(" ")
            with self.lock:
                self.seen.append((float(t), what))

    def first(self, what: str, after: float) -> float | None:
        with self.lock:
            return next((t for t, w in self.seen if w == what and t >= after), None)

    def current(self) -> str | None:
        with self.lock:
            return self.seen[-1][1] if self.seen else None

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- 4. propagation ------------------------------------------------------------------------------

def run_propagation(live: Live, changes: int, min_interval: float, out_dir: Path) -> dict[str, Any]:
    prober = live.prober()
    try:
        live.wait_for(lambda: prober.current() == "a", 30, "traffic to reach backend a")
        rows_ack, rows_traffic, rows_snap = [], [], []
        failures = 0
        backend = "a"
        started = time.monotonic()
        for _ in range(changes):
            begin = time.monotonic()
            old = live.cla_version(PROBE_CLUSTER)
            backend = "b" if backend == "a" else "a"
            t0 = live.set_probe(backend)
            try:
                live.wait_for(lambda: live.cla_version(PROBE_CLUSTER) != old, 30, "the snapshot", 0.001)
                new = live.cla_version(PROBE_CLUSTER)
                live.wait_for(lambda: _ack_at(live.hooks, "envoy-delta", new, t0) is not None, 30, "the ACK", 0.001)
                live.wait_for(lambda: prober.first(backend, t0) is not None, 30, "traffic", 0.001)
            except TimeoutError:
                failures += 1
                continue
            rows_ack.append(_ack_at(live.hooks, "envoy-delta", new, t0) - t0)
            rows_traffic.append(prober.first(backend, t0) - t0)
            with live.hooks.lock:
                rows_snap.append(next(t for t, _s in live.hooks.snapshots if t >= t0) - t0)
            rest = min_interval - (time.monotonic() - begin)
            if rest > 0:
                time.sleep(rest)
        elapsed = time.monotonic() - started
    finally:
        prober.close()
    snap_s, ack_s, traffic_s = summary(rows_snap), summary(rows_ack), summary(rows_traffic)
    rate = len(rows_ack) / elapsed if elapsed else 0.0
    rows = [["change -> snapshot (debounce + translation)", ms(snap_s["p50"]), ms(snap_s["p99"]), "-"],
            ["change -> Envoy ACK", ms(ack_s["p50"]), ms(ack_s["p99"]), "50 ms"],
            ["change -> first request to the new endpoint", ms(traffic_s["p50"]), ms(traffic_s["p99"]), "100 ms"]]
    text = table(f"4. Propagation with a real Envoy (delta xDS) at {live.objects.scale.paths:,} paths: "
                 f"{len(rows_ack)} EndpointSlice changes, one at a time, {rate:.1f}/s, {failures} timed out",
                 ["from an EndpointSlice change to", "p50", "p99", "target p99"], rows)
    data = {"changes": len(rows_ack), "timed_out": failures, "rate_per_s": rate, "snapshot_s": snap_s, "ack_s": ack_s,
            "traffic_s": traffic_s, "targets": {"ack_p99_s": 0.050, "traffic_p99_s": 0.100}, "table": text}
    write_result("4-propagation", data, out_dir)
    return data


def _ack_at(hooks: Hooks, node: str, version: str | None, after: float) -> float | None:
    with hooks.lock:
        return next((a.t for a in hooks.acks if a.node == node and a.version == version and a.t >= after), None)


# -- 5. bytes on the wire -------------------------------------------------------------------------

def run_wire(live: Live, changes: int, out_dir: Path) -> dict[str, Any]:
    live.start_envoy("envoy-sotw", "sotw")
    per_change: dict[str, list[int]] = {"delta": [], "sotw": []}
    by_type: dict[str, dict[str, int]] = {"delta": {}, "sotw": {}}
    try:
        for k in range(changes):
            time.sleep(0.3)  # the previous change's responses are all answered
            raw, cluster = live.endpoint_change(1000 + k, k)
            old = live.cla_version(cluster)
            live.hooks.watch = cluster
            changed, t0 = live.apply(raw)
            assert changed
            live.wait_for(lambda: live.cla_version(cluster) != old, 30, "the snapshot", 0.001)
            new = live.cla_version(cluster)
            for node in ("envoy-delta", "envoy-sotw"):
                live.wait_for(lambda: _ack_at(live.hooks, node, new, t0) is not None, 30, f"the ACK of {node}", 0.001)
            time.sleep(0.2)  # anything else this change causes
            with live.hooks.lock:
                sent = [s for s in live.hooks.sent if s.t >= t0]
            for proto in ("delta", "sotw"):
                mine = [s for s in sent if s.node == f"envoy-{proto}"]
                per_change[proto].append(sum(s.size for s in mine))
                for s in mine:
                    short = live.types.SHORT_NAMES[s.type_url]
                    by_type[proto][short] = by_type[proto].get(short, 0) + s.size
    finally:
        live.hooks.watch = PROBE_CLUSTER
        live.stop_envoy("envoy-sotw")
    d, s = summary(per_change["delta"]), summary(per_change["sotw"])
    rows = [["delta", f"{d['p50']:,.0f}", f"{d['max']:,.0f}", _types(by_type["delta"], changes)],
            ["state of the world", f"{s['p50']:,.0f}", f"{s['max']:,.0f}", _types(by_type["sotw"], changes)],
            ["ratio sotw / delta", f"{s['p50'] / d['p50']:,.0f}x" if d["p50"] else "-", "", ""]]
    text = table(f"5. Bytes sent per single-endpoint change at {live.objects.scale.paths:,} paths ({changes} changes, "
                 "a real Envoy on each protocol; protobuf payload, before gRPC/HTTP/2 framing)",
                 ["protocol", "bytes p50", "bytes max", "per type (mean)"], rows)
    data = {"changes": changes, "delta_bytes": d, "sotw_bytes": s, "by_type_total": by_type,
            "ratio_p50": s["p50"] / d["p50"] if d["p50"] else None, "table": text}
    write_result("5-wire-bytes", data, out_dir)
    return data


def _types(totals: dict[str, int], n: int) -> str:
    return ", ".join(f"{t} {v / n:,.0f}" for t, v in sorted(totals.items()))


# -- 6. fan-out -------------------------------------------------------------------------------------

def run_fanout(live: Live, streams: int, changes: int, out_dir: Path) -> dict[str, Any]:
    before_streams = len(live.app.ads.streams)
    rss0 = live.cp.call(settle_memory)
    proc = subprocess.Popen([python(), "-m", "bench.synthetic", live.cp.xds_address, str(streams)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    connect_s = 0.0
    try:
        t_start = time.monotonic()
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError(f"the synthetic streams did not connect (exit {proc.wait()})")
        connect_s = time.monotonic() - t_start
        live.wait_for(lambda: len(live.app.ads.streams) == before_streams + streams, 60, "every stream")
        time.sleep(1.0)
        rss1 = live.cp.call(settle_memory)
        per_stream = (rss1 - rss0) / streams
        total_streams = before_streams + streams
        all_ms: list[float] = []
        last: list[float] = []
        snap: list[float] = []
        backend = "a"
        for _ in range(changes):
            time.sleep(0.5)
            old = live.cla_version(PROBE_CLUSTER)
            backend = "b" if backend == "a" else "a"
            t0 = live.set_probe(backend)
            live.wait_for(lambda: live.cla_version(PROBE_CLUSTER) != old, 30, "the snapshot", 0.001)
            new = live.cla_version(PROBE_CLUSTER)

            def acked() -> dict[int, float]:
                with live.hooks.lock:
                    out: dict[int, float] = {}
                    for a in live.hooks.acks:
                        if a.version == new and a.t >= t0 and a.stream not in out:
                            out[a.stream] = a.t
                    return out
            live.wait_for(lambda: len(acked()) >= total_streams, 60, f"{total_streams} ACKs", 0.005)
            times = sorted(t - t0 for t in acked().values())
            all_ms += times
            last.append(times[-1])
            with live.hooks.lock:
                snap.append(next(t for t, _s in live.hooks.snapshots if t >= t0) - t0)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    live.wait_for(lambda: len(live.app.ads.streams) == before_streams, 60, "the synthetic streams to close")
    pooled, last_s, snap_s = summary(all_ms), summary(last), summary(snap)
    rows = [["change -> snapshot", ms(snap_s["p50"]), ms(snap_s["p99"]), "-"],
            [f"change -> ACK, each of {before_streams + streams} streams (pooled)", ms(pooled["p50"]),
             ms(pooled["p99"]), "1 s"],
            ["change -> the last stream's ACK", ms(last_s["p50"]), ms(last_s["max"]) + " (max)", "-"],
            ["control plane RSS per idle stream (growth / streams)", f"{per_stream / 1024:,.0f} KiB", "-",
             "256 KiB"]]
    text = table(f"6. Fan-out at {live.objects.scale.paths:,} paths: {streams} synthetic delta streams (Envoy-like "
                 f"subscriptions: every cluster, endpoint, listener, route) + 1 Envoy; {changes} EndpointSlice "
                 f"changes; streams connected in {connect_s:.1f} s", ["measure", "p50", "p99", "target"], rows)
    data = {"streams": streams, "plus_envoys": before_streams, "changes": changes, "connect_s": connect_s,
            "rss_before_bytes": rss0, "rss_after_bytes": rss1, "rss_per_stream_bytes": per_stream,
            "ack_s_pooled": pooled, "last_ack_s": last_s, "snapshot_s": snap_s,
            "targets": {"ack_p99_s": 1.0, "rss_per_stream_bytes": 256 * 1024}, "table": text}
    write_result("6-fanout", data, out_dir)
    return data


# -- 7. churn -----------------------------------------------------------------------------------------

def run_churn(live: Live, rate: float, seconds: float, out_dir: Path) -> dict[str, Any]:
    controller = live.app.controller
    rss_start = live.cp.call(settle_memory)
    translations0 = controller.translations
    serial0 = live.app.cache.snapshot.serial
    live.hooks.clear()
    samples: list[int] = []
    stop = threading.Event()
    changes = 0

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t_start = time.monotonic()
    next_at = t_start
    try:
        attempt = 0
        while time.monotonic() - t_start < seconds:
            raw, _cluster = live.endpoint_change(attempt, 50 + attempt // (len(live.slices) - 1))
            attempt += 1
            changes += live.apply(raw)[0]
            next_at += 1.0 / rate
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t_start
        t_end = time.monotonic()
        live.cp.wait_synced(node_id="envoy-delta", timeout=120)
        converge_s = time.monotonic() - t_end
    finally:
        stop.set()
        sampler.join()
    rss_end = live.cp.call(settle_memory)
    with live.hooks.lock:
        sent = [s for s in live.hooks.sent if s.node == "envoy-delta"]
        acks = [a for a in live.hooks.acks if a.node == "envoy-delta"]
    pushes: dict[str, int] = {}
    for s in sent:
        short = live.types.SHORT_NAMES[s.type_url]
        pushes[short] = pushes.get(short, 0) + 1
    translations = controller.translations - translations0
    snapshots = live.app.cache.snapshot.serial - serial0
    rows = [["EndpointSlice changes", f"{changes:,} in {elapsed:.0f} s ({changes / elapsed:.1f}/s)"],
            ["translations / snapshots", f"{translations} / {snapshots}"],
            ["pushes to the Envoy (responses)", f"{len(sent)} ({', '.join(f'{k} {v}' for k, v in sorted(pushes.items()))})"],
            ["EDS ACKs from the Envoy", f"{len(acks)}"],
            ["changes per push (EDS)", f"{changes / max(1, pushes.get('endpoints', 0)):.1f}"],
            ["converged after the last change", ms(converge_s)],
            ["control plane RSS start -> end (settled)", f"{mib(rss_start)} -> {mib(rss_end)} "
                                                          f"({(rss_end - rss_start) / 2**20:+.1f} MiB)"],
            ["RSS max while churning", mib(max(samples)) if samples else "-"]]
    text = table(f"7. Churn at {live.objects.scale.paths:,} paths: {rate:.0f} EndpointSlice changes/s for {seconds:.0f} s, "
                 "one Envoy (delta)", ["measure", "value"], rows)
    data = {"rate_per_s": rate, "seconds": elapsed, "changes": changes, "translations": translations,
            "snapshots": snapshots, "pushes": pushes, "pushes_total": len(sent), "eds_acks": len(acks),
            "converge_s": converge_s, "rss_start_bytes": rss_start, "rss_end_bytes": rss_end,
            "rss_growth_bytes": rss_end - rss_start, "rss_max_bytes": max(samples) if samples else None,
            "rss_samples_bytes": samples, "table": text}
    write_result("7-churn", data, out_dir)
    return data


def run_live(paths: int, which: set[int], *, changes: int, wire_changes: int, streams: int, fanout_changes: int,
             churn_rate: float, churn_seconds: float, out_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xds-bench-") as tmp:
        t0 = time.monotonic()
        live = Live(paths, Path(tmp))
        try:
            live.start_envoy("envoy-delta", "delta")
            print(f"\n(live setup at {paths:,} paths: objects translated in {live.load_seconds:.1f} s, Envoy synced "
                  f"{time.monotonic() - t0:.1f} s after start)", flush=True)
            if 4 in which:
                results["4"] = run_propagation(live, changes, min_interval=0.25, out_dir=out_dir)
            if 5 in which:
                results["5"] = run_wire(live, wire_changes, out_dir)
            if 6 in which:
                results["6"] = run_fanout(live, streams, fanout_changes, out_dir)
            if 7 in which:
                results["7"] = run_churn(live, churn_rate, churn_seconds, out_dir)
        finally:
            live.close()
    return results


__all__ = ["run_live", "percentile"]
