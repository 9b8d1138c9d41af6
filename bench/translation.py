"""Benchmarks 1-3: translation, no network.

1. Cold translation of a scale to serialized resources (objects already parsed, as in the
   store): wall and CPU time, peak RSS; each run in a fresh process. Also the parse of the
   raw objects, reported apart, and a cProfile of one run (the top costs).
2. One EndpointSlice change (one endpoint's address) to new ClusterLoadAssignment bytes:
   the control plane's own rebuild (`Controller.rebuild`), CPU time per change.
3. One path added to an Ingress to new RouteConfiguration bytes: the same rebuild.

`python -m bench.translation cold --paths N [--profile]` is the child process of 1.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import io
import json
import pstats
import subprocess
import sys
import time
from typing import Any

from bench import scale as scales
from bench.common import (MIB, mib, ms, peak_rss_bytes, python, quiet_logs, reset_peak_rss,
                          settle_memory, summary, table, write_result)

EMISSARY = {1000: {"seconds": 1.1}, 5000: {"seconds": 6.3, "peak_mib": 184 * 1_000_000 / MIB}}


# -- 1. cold translation -------------------------------------------------------------------

def _cold_child(paths: int, profile: bool, nginx: bool = False) -> dict[str, Any]:
    """In a fresh process: parse, then translate + build + serialize into a cache, measured."""
    t_import = time.perf_counter()
    from xds_ingress import envoy
    from xds_ingress.cache import SnapshotCache
    from xds_ingress.envoy.routes import RouteConfigEncoder
    from xds_ingress.model import parse_objects
    from xds_ingress.translate import TranslateSettings, translate
    import_s = time.perf_counter() - t_import

    objects = scales.generate(scales.Scale(paths), nginx=nginx)
    t0 = time.perf_counter()
    parsed, diags = parse_objects(objects.raws)
    parse_s = time.perf_counter() - t0
    assert not diags, diags[:3]
    del objects
    rss_before = settle_memory()
    reset_ok = reset_peak_rss()
    prof = cProfile.Profile() if profile else None
    # As Controller._translate_all runs it: the cyclic collector paused (a translation makes no reference
    # cycles), route configurations assembled by the encoder from virtual host bytes.
    gc.disable()
    c0, w0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    t = translate(parsed, TranslateSettings(nginx_compat=nginx))
    w1 = time.perf_counter()
    encoder = RouteConfigEncoder()
    resources = envoy.build(t.ir, encoder)
    w2 = time.perf_counter()
    cache = SnapshotCache()
    cache.set_resources(resources, {rc.name: encoder.clusters(rc) for rc in t.ir.route_configurations})
    w3 = time.perf_counter()
    if prof:
        prof.disable()
    gc.enable()
    cpu = time.process_time() - c0
    peak = peak_rss_bytes() if reset_ok else 0
    snap = cache.snapshot
    assert snap is not None
    out: dict[str, Any] = {
        "paths": paths, "nginx_compat": nginx, "scale": scales.Scale(paths).describe(), "import_s": import_s, "parse_s": parse_s,
        "translate_s": w1 - w0, "build_s": w2 - w1, "serialize_s": w3 - w2, "total_s": w3 - w0, "cpu_s": cpu,
        "rss_before_bytes": rss_before, "peak_rss_bytes": peak, "peak_growth_bytes": peak - rss_before if peak else None,
        "resources": snap.counts(),
        "serialized_bytes": sum(len(r.body) for rs in snap.resources.values() for r in rs.values()),
        "diagnostics": len(t.diagnostics),
    }
    if prof:
        out["profile"] = _top(prof)
    return out


def _top(prof: cProfile.Profile, n: int = 20) -> list[dict[str, Any]]:
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(file)}:{line}({func})", "calls": ncalls, "tottime_s": tottime,
                     "cumtime_s": cumtime})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:n]


def _short(file: str) -> str:
    for marker in ("/xds_ingress/", "/site-packages/", "/lib/python"):
        if marker in file:
            return file[file.index(marker) + 1:]
    return file


def run_cold(scale_paths: list[int], reps: int, out_dir, profile_paths: int | None) -> dict[str, Any]:
    runs: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    for paths in scale_paths:
        runs[(paths, False)] = [_spawn_cold(paths, profile=False) for _ in range(reps)]
    # The largest scale again with ingress-nginx annotations under --nginx-compat (bench/scale.py).
    runs[(max(scale_paths), True)] = [_spawn_cold(max(scale_paths), profile=False, nginx=True) for _ in range(reps)]
    rows = []
    results = []
    for (paths, nginx), rs in runs.items():
        total = summary([r["total_s"] for r in rs])
        cpu = summary([r["cpu_s"] for r in rs])
        peak = summary([r["peak_rss_bytes"] for r in rs])
        growth = summary([r["peak_growth_bytes"] or 0 for r in rs])
        parse = summary([r["parse_s"] for r in rs])
        em = EMISSARY.get(paths, {}) if not nginx else {}
        rows.append([f"{paths:,}" + (" --nginx-compat" if nginx else ""), ms(total["p50"]), ms(cpu["p50"]), ms(parse["p50"]), mib(peak["p50"]),
                     mib(growth["p50"]), f"{em['seconds']:.1f} s" if em else "-",
                     f"{em['peak_mib']:.0f} MiB" if em.get("peak_mib") else "-"])
        results.append({"paths": paths, "nginx_compat": nginx, "scale": rs[0]["scale"], "runs": rs, "total_s": total, "cpu_s": cpu,
                        "parse_s": parse, "peak_rss_bytes": peak, "peak_growth_bytes": growth,
                        "emissary": em or None})
    text = table("1. Cold translation to serialized resources (fresh process per run; median of "
                 f"{reps}; objects already parsed, parse shown apart)",
                 ["paths", "wall", "cpu", "parse", "peak RSS", "RSS growth", "Emissary", "Emissary RSS"], rows)
    profile = None
    if profile_paths:
        profile = _spawn_cold(profile_paths, profile=True)
        prow = [[p["function"][:90], p["calls"], ms(p["tottime_s"]), ms(p["cumtime_s"])] for p in profile["profile"][:15]]
        text += "\n" + table(f"1p. Where the time goes: cold translation of {profile_paths:,} paths under cProfile "
                      f"({ms(profile['total_s'])} profiled), by own time", ["function", "calls", "own", "cumulative"],
                      prow)
    data = {"targets": {"total_s": 1.0, "peak_rss_mib": 200}, "scales": results,
            "profile": profile["profile"] if profile else None, "table": text}
    write_result("1-cold-translation", data, out_dir)
    return data


def _spawn_cold(paths: int, *, profile: bool, nginx: bool = False) -> dict[str, Any]:
    args = [python(), "-m", "bench.translation", "cold", "--paths", str(paths)] + (["--profile"] if profile else []) \
        + (["--nginx"] if nginx else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"cold translation child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- 2 and 3. one change, full rebuild -----------------------------------------------------------

class _Plane:
    """The store, cache and translation loop of the control plane, without the network."""

    def __init__(self, paths: int, nginx: bool = False) -> None:
        from xds_ingress.app import Controller
        from xds_ingress.cache import SnapshotCache
        from xds_ingress.store import Store
        from xds_ingress.translate import TranslateSettings

        self.objects = scales.generate(scales.Scale(paths), nginx=nginx)
        self.store = Store()
        self.store.replace({_key(r): r for r in self.objects.raws})
        self.cache = SnapshotCache()
        self.controller = Controller(self.store, self.cache, TranslateSettings(nginx_compat=nginx))
        self.controller.rebuild()  # the first snapshot (not measured)

    def change(self, raw: dict) -> tuple[float, float]:
        """Upsert one object and rebuild: (CPU seconds, wall seconds)."""
        assert self.store.upsert(raw)
        c0, w0 = time.process_time(), time.perf_counter()
        changed = self.controller.rebuild()
        c1, w1 = time.process_time(), time.perf_counter()
        assert changed
        return c1 - c0, w1 - w0


def _key(raw: dict) -> tuple[str, str, str]:
    return raw["kind"], raw["metadata"].get("namespace", ""), raw["metadata"]["name"]


def run_changes(paths: int, n: int, out_dir) -> dict[str, Any]:
    from xds_ingress.envoy import types

    quiet_logs()
    plane = _Plane(paths)
    slices = plane.objects.by_kind("EndpointSlice")
    eds_cpu, eds_wall, eds_bytes = [], [], []
    for k in range(n):
        raw = copy.deepcopy(slices[k % len(slices)])
        addr = raw["endpoints"][0]["addresses"][0].rsplit(".", 1)
        raw["endpoints"][0]["addresses"] = [f"{addr[0]}.{200 + k % 50}"]  # one endpoint moves
        slices[k % len(slices)] = raw
        cpu, wall = plane.change(raw)
        snap = plane.cache.snapshot
        cluster = f"{raw['metadata']['namespace']}/{raw['metadata']['labels']['kubernetes.io/service-name']}/80"
        assert snap.changed_names.get(types.ENDPOINT) == frozenset({cluster}), snap.changed_names
        eds_cpu.append(cpu)
        eds_wall.append(wall)
        eds_bytes.append(len(snap.of_type(types.ENDPOINT)[cluster].body))
    rds_cpu, rds_wall = _paths_added(plane, n)
    del plane
    # The same under --nginx-compat, with ingress-nginx annotations (bench/scale.py): regex hosts, aliases and
    # www names reach across hosts, so nginx.finish runs over every host again, reusing what did not change.
    nginx_plane = _Plane(paths, nginx=True)
    nginx_cpu, nginx_wall = _paths_added(nginx_plane, n)
    del nginx_plane
    e_cpu, e_wall, r_cpu, r_wall = summary(eds_cpu), summary(eds_wall), summary(rds_cpu), summary(rds_wall)
    n_cpu, n_wall = summary(nginx_cpu), summary(nginx_wall)
    rows = [["2. EndpointSlice -> ClusterLoadAssignment", n, ms(e_cpu["p50"]), ms(e_cpu["p99"]), ms(e_wall["p99"]),
             "1 ms", f"{e_cpu['p99'] / 0.001:,.2f}x"],
            ["3. path added -> RouteConfiguration", n, ms(r_cpu["p50"]), ms(r_cpu["p99"]), ms(r_wall["p99"]),
             "10 ms", f"{r_cpu['p99'] / 0.010:,.2f}x"],
            ["3n. path added, --nginx-compat", n, ms(n_cpu["p50"]), ms(n_cpu["p99"]), ms(n_wall["p99"]),
             "10 ms", f"{n_cpu['p99'] / 0.010:,.2f}x"]]
    text = table(f"2-3. One change to new bytes at {paths:,} paths (Controller.rebuild, incremental: the "
                 "Service's endpoints for an EndpointSlice, the host's virtual host for an Ingress)", ["change", "n", "cpu p50", "cpu p99", "wall p99", "target p99", "p99 / target"], rows)
    data = {"paths": paths, "scale": scales.Scale(paths).describe(),
            "eds_change": {"cpu_s": e_cpu, "wall_s": e_wall, "cla_bytes": summary(eds_bytes), "target_p99_s": 0.001},
            "route_change": {"cpu_s": r_cpu, "wall_s": r_wall, "target_p99_s": 0.010},
            "route_change_nginx_compat": {"cpu_s": n_cpu, "wall_s": n_wall, "target_p99_s": 0.010}, "table": text}
    write_result("2-3-change-to-bytes", data, out_dir)
    return data


def _paths_added(plane: _Plane, n: int) -> tuple[list[float], list[float]]:
    """One path added to an Ingress, n times (a different Ingress each time): CPU and wall seconds of each; every
    one must take the incremental path."""
    from xds_ingress.envoy import types

    ingresses = plane.objects.by_kind("Ingress")
    rds_cpu, rds_wall = [], []
    full_before = plane.controller.translations - plane.controller.incremental_translations
    for k in range(n):
        raw = copy.deepcopy(ingresses[(k * 7) % len(ingresses)])
        paths_ = raw["spec"]["rules"][0]["http"]["paths"]
        new = copy.deepcopy(paths_[0])
        new["path"] = f"/{raw['metadata']['name']}/added-{k}"
        paths_.append(new)
        cpu, wall = plane.change(raw)
        snap = plane.cache.snapshot
        assert types.ROUTE in snap.changed_names, snap.changed_names
        rds_cpu.append(cpu)
        rds_wall.append(wall)
    full = plane.controller.translations - plane.controller.incremental_translations - full_before
    assert full == 0, f"{full} of {n} path changes took a full translation"
    return rds_cpu, rds_wall


# -- 8. event loop stalls while translating ----------------------------------------------------

def run_stalls(paths: int, n: int, out_dir) -> dict[str, Any]:
    """How late a 1 ms timer on the event loop fires while the Controller translates in its worker thread:
    the longest stall anything on the loop (xDS streams, the debug server, the watches) sees."""
    import asyncio

    quiet_logs()
    plane = _Plane(paths)
    ctl = plane.controller
    services = plane.objects.by_kind("Service")
    slices = plane.objects.by_kind("EndpointSlice")
    ingresses = plane.objects.by_kind("Ingress")

    async def measure() -> list[list[Any]]:
        lags: list[float] = []

        async def ticker() -> None:
            while True:
                t0 = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - t0 - 0.001)

        runner = asyncio.create_task(ctl.run([]))
        tick = asyncio.create_task(ticker())
        rows = []
        try:
            async def one(raw: dict) -> None:
                plane.store.upsert(raw)
                generation = plane.store.generation
                deadline = time.monotonic() + 30
                while ctl.translated_generation < generation and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)

            await asyncio.wait_for(ctl.ready.wait(), 60)
            phases = [
                ("Service changed: a full translation", lambda k: _relabel(services[k % len(services)], k), 3),
                ("path added to an Ingress", lambda k: _add_path(ingresses[(k * 7) % len(ingresses)], k), n),
                ("EndpointSlice changed", lambda k: _move_endpoint(slices[k % len(slices)], k), n),
            ]
            for title, make, count in phases:
                lags.clear()
                for k in range(count):
                    await one(make(k))
                    await asyncio.sleep(0.02)  # the loop idles between changes, as it does in a cluster
                st = summary(lags)
                rows.append([title, count, ms(st["p50"]), ms(st["p99"]), ms(st["max"])])
        finally:
            tick.cancel()
            runner.cancel()
            await asyncio.gather(tick, runner, return_exceptions=True)
        return rows

    rows = asyncio.run(measure())
    text = table(f"8. Event loop stalls while translating at {paths:,} paths (a 1 ms timer's lateness; the "
                 "translation runs in a worker thread)", ["change", "n", "lag p50", "lag p99", "lag max"], rows)
    data = {"paths": paths, "rows": rows, "table": text}
    write_result("8-loop-stalls", data, out_dir)
    return data


def _relabel(raw: dict, k: int) -> dict:
    raw = copy.deepcopy(raw)
    raw["metadata"].setdefault("labels", {})["bench"] = str(k)
    raw["metadata"].setdefault("annotations", {})["xds-ingress.io/max-retries"] = str(3 + k)
    return raw


def _add_path(raw: dict, k: int) -> dict:
    raw = copy.deepcopy(raw)
    paths_ = raw["spec"]["rules"][0]["http"]["paths"]
    new = copy.deepcopy(paths_[0])
    new["path"] = f"/{raw['metadata']['name']}/stall-{k}"
    paths_.append(new)
    return raw


def _move_endpoint(raw: dict, k: int) -> dict:
    raw = copy.deepcopy(raw)
    addr = raw["endpoints"][0]["addresses"][0].rsplit(".", 1)
    raw["endpoints"][0]["addresses"] = [f"{addr[0]}.{150 + k % 50}"]
    return raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.translation")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cold")
    c.add_argument("--paths", type=int, default=10_000)
    c.add_argument("--profile", action="store_true")
    c.add_argument("--nginx", action="store_true", help="ingress-nginx annotations, translated with --nginx-compat")
    args = p.parse_args(argv)
    if args.command == "cold":
        quiet_logs()
        print(json.dumps(_cold_child(args.paths, args.profile, args.nginx)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
