"""Benchmark 9: what the connection limiter (ingress-nginx's limit-connections) adds to a request.

One real Envoy, one `xds connection-limiter` process, one echo backend, all on loopback. Two Ingresses to the
same Service, one with `limit-connections` (far above what is used, so nothing is refused), one without; the
same number of requests to each, one at a time on one keep-alive connection per host, interleaved so that both
see the same machine. The difference is the ext_proc round trip to the limiter per request (the stream opened,
the headers' verdict, the stream closed at the end). No timing is asserted anywhere.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ms, quiet_logs, summary, table, write_result

N = "nginx.ingress.kubernetes.io/"
NAME = "9-connection-limiter"


def run_connlimit(requests: int, out_dir: Path) -> dict[str, Any]:
    from tests.harness import Backends, Client, Envoy, free_ports, k8s
    from tests.harness.controlplane import ControlPlane
    from tests.harness.edge import Edge
    from tests.harness.limiter import LimiterProcess
    from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-connlimit-") as tmp:
        work = Path(tmp)
        http_port, https_port = free_ports(2)
        with LimiterProcess() as limiter, Backends(["a"]) as be, \
                ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, ingress_class="nginx",
                             nginx_compat=True, controller=NGINX_CONTROLLER_NAME,
                             translate={"connection_limit_service": limiter.address}) as cp, \
                Envoy(cp.bootstrap(), work / "envoy") as envoy:
            edge = Edge(be, cp, envoy, http_port, https_port)
            edge.apply([k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME)] + edge.service("web", "a") + [
                k8s.ingress("limited", k8s.rule("limited.example.com", k8s.path("/", "web")), class_name="nginx",
                            annotations={N + "limit-connections": "1000"}),
                k8s.ingress("free", k8s.rule("free.example.com", k8s.path("/", "web")), class_name="nginx")])
            times: dict[str, list[float]] = {"limited.example.com": [], "free.example.com": []}
            with Client(http_port, host="limited.example.com") as lim, Client(http_port, host="free.example.com") as free:
                clients = {"limited.example.com": lim, "free.example.com": free}
                for i in range(requests + 20):  # the first 20 of each warm up (connections, the limiter's stream)
                    for host, c in clients.items():
                        t0 = time.perf_counter()
                        status = c.request(f"/bench/{i}").status
                        dt = time.perf_counter() - t0
                        assert status == 200, (host, status)
                        if i >= 20:
                            times[host].append(dt)
    with_limiter, without = summary(times["limited.example.com"]), summary(times["free.example.com"])
    rows = [("without limit-connections", without["n"], ms(without["p50"]), ms(without["p99"])),
            ("with limit-connections", with_limiter["n"], ms(with_limiter["p50"]), ms(with_limiter["p99"])),
            ("added by the limiter", "", ms(with_limiter["p50"] - without["p50"]),
             ms(with_limiter["p99"] - without["p99"]))]
    text = table("9. connection limiter: request latency through Envoy (one at a time, loopback)",
                 ["route", "requests", "p50", "p99"], rows)
    data = {"requests": requests, "with_limiter_s": with_limiter, "without_s": without, "table": text}
    write_result(NAME, data, out_dir)
    return {"p50_added_s": with_limiter["p50"] - without["p50"], "p99_added_s": with_limiter["p99"] - without["p99"]}
