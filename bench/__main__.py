"""`python -m bench` (`make bench`): the benchmarks of issue #7, tables printed, JSON in bench/results/.

| # | benchmark | module |
|---|---|---|
| 1 | cold translation of a scale to serialized resources: time, peak RSS (+ cProfile top costs) | translation.py |
| 2 | one EndpointSlice change to new ClusterLoadAssignment bytes: CPU per change | translation.py |
| 3 | one path added to an Ingress to new RouteConfiguration bytes: CPU per change | translation.py |
| 4 | propagation with a real Envoy: change to ACK, change to traffic | live.py |
| 5 | bytes on the wire per single-endpoint change, delta vs state of the world | live.py |
| 6 | fan-out: synthetic delta streams + one Envoy; ACK by all; RSS per idle stream | live.py |
| 7 | churn: EndpointSlice changes at a fixed rate: RSS growth, pushes | live.py |
| 8 | event loop stalls while the Controller translates (full, Ingress, EndpointSlice changes) | translation.py |
| 9 | the connection limiter (limit-connections): latency added per request, p50/p99 | connlimit.py |

Scale S: 1,000 hosts, 10,000 paths over 2,000 Ingresses, 2,000 Services, 2,000 EndpointSlices of
25 endpoints (bench/scale.py). `--quick` runs everything at a small scale in well under a minute
(what tests/test_bench.py runs); `--only 1,4` picks benchmarks. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import scale as scales
from bench.common import RESULTS, machine, write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small scale and short runs (a smoke test, not figures)")
    p.add_argument("--only", default="1,2,3,4,5,6,7,8,9", metavar="LIST", help="benchmarks to run, e.g. 1,4 (default all)")
    p.add_argument("--out", type=Path, default=RESULTS, metavar="DIR", help=f"where JSON goes (default {RESULTS})")
    p.add_argument("--paths", type=int, help="the scale: Ingress paths (default 10,000, scale S; quick: 500)")
    p.add_argument("--changes", type=int, help="propagation: EndpointSlice changes (default 200; quick 10)")
    p.add_argument("--streams", type=int, help="fan-out: synthetic delta streams (default 1,000; quick 20)")
    p.add_argument("--churn-seconds", type=float, help="churn: duration (default 120; quick 3)")
    args = p.parse_args(argv)
    which = {int(x) for x in args.only.split(",") if x.strip()}
    if not which <= set(range(1, 10)):
        p.error("--only takes numbers from 1 to 9")
    quick = args.quick
    paths = args.paths or (500 if quick else scales.S.paths)
    out: Path = args.out
    started = time.monotonic()
    print(f"xds-ingress benchmarks{' (quick)' if quick else ''}: {scales.Scale(paths).describe()}\n"
          f"machine: {machine()}", flush=True)
    summary: dict[str, object] = {"quick": quick, "paths": paths, "scale": scales.Scale(paths).describe(),
                                  "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])}

    from bench import translation

    if 1 in which:
        cold_scales = [paths // 2, paths] if quick else [1_000, 5_000, paths]
        summary["1"] = translation.run_cold(sorted(set(cold_scales)), reps=1 if quick else 3, out_dir=out,
                                            profile_paths=paths)
    if which & {2, 3}:
        summary["2-3"] = translation.run_changes(paths, 5 if quick else 300, out)
    if 8 in which:
        summary["8"] = translation.run_stalls(paths, 5 if quick else 50, out)
    live = which & {4, 5, 6, 7}
    if live:
        from bench.live import run_live

        summary["live"] = run_live(
            paths, live, changes=args.changes or (10 if quick else 200), wire_changes=3 if quick else 10,
            streams=args.streams or (20 if quick else 1_000), fanout_changes=2 if quick else 5,
            churn_rate=50.0, churn_seconds=args.churn_seconds or (3.0 if quick else 120.0), out_dir=out)
    if 9 in which:
        from bench.connlimit import run_connlimit

        summary["9"] = run_connlimit(50 if quick else 2_000, out)
    summary["seconds"] = time.monotonic() - started
    path = write_result("summary", summary, out)
    print(f"\nall benchmarks done in {summary['seconds']:.0f} s; JSON in {path.parent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
