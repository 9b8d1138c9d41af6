"""`make run`: the control plane on examples/, a real Envoy and three demo backends, on loopback.

Starts `xds serve --manifests examples`, an Envoy bootstrapped by `xds bootstrap`, and echo
backends (web, api, fallback) on the ports the example EndpointSlices name; prints
requests to try; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BACKENDS = {"web": 19101, "api": 19102, "fallback": 19103}
XDS = ("127.0.0.1", 18000)
DEBUG = ("127.0.0.1", 9090)
ADMIN = ("127.0.0.1", 9901)
HTTP_PORT, HTTPS_PORT = 8080, 8443


def _busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _wait_http(url: str, timeout: float, procs: list[subprocess.Popen]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                return False
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main() -> int:
    ports = [*BACKENDS.values(), XDS[1], DEBUG[1], ADMIN[1], HTTP_PORT, HTTPS_PORT]
    busy = [p for p in ports if _busy(p)]
    if busy:
        print(f"make run: ports {busy} are in use on 127.0.0.1; stop what uses them and try again.", file=sys.stderr)
        return 1
    envoy = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    xds = [sys.executable, "-m", "xds_ingress.cli"]
    work = Path(tempfile.mkdtemp(prefix="xds-ingress-demo-"))
    procs: list[subprocess.Popen] = []
    try:
        for name, port in BACKENDS.items():
            procs.append(subprocess.Popen([sys.executable, "-m", "xds_ingress.demo.echo", "--name", name,
                                           "--port", str(port), "--host", "127.0.0.1"],
                                          stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen(xds + ["serve", "--manifests", str(EXAMPLES), "--xds-address",
                                             f"{XDS[0]}:{XDS[1]}", "--debug-address", f"{DEBUG[0]}:{DEBUG[1]}",
                                             "--listen-address", "127.0.0.1",
                                             "--http-port", str(HTTP_PORT), "--https-port", str(HTTPS_PORT)],
                                      stderr=open(work / "xds.log", "wb")))
        bootstrap = subprocess.run(xds + ["bootstrap", "--xds-address", f"{XDS[0]}:{XDS[1]}", "--node-id", "demo",
                                          "--admin-address", f"{ADMIN[0]}:{ADMIN[1]}"],
                                   check=True, capture_output=True, text=True).stdout
        (work / "envoy.yaml").write_text(bootstrap)
        procs.append(subprocess.Popen([envoy, "-c", str(work / "envoy.yaml"), "--use-dynamic-base-id",
                                       "--disable-hot-restart", "--log-path", str(work / "envoy.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        if not _wait_http(f"http://{ADMIN[0]}:{ADMIN[1]}/ready", 30, procs):
            print(f"make run: Envoy did not become ready; logs in {work}", file=sys.stderr)
            return 1
        ca = EXAMPLES / "demo-ca.pem"
        print(f"""
xds-ingress demo is running (logs in {work}):
  control plane  ADS on {XDS[0]}:{XDS[1]}   debug http://{DEBUG[0]}:{DEBUG[1]}/   manifests: {EXAMPLES}
  Envoy          http://127.0.0.1:{HTTP_PORT}  https://127.0.0.1:{HTTPS_PORT}  admin http://{ADMIN[0]}:{ADMIN[1]}
  backends       {', '.join(f'{n} :{p}' for n, p in BACKENDS.items())}

Try (each backend answers with its name and the request it saw):
  curl -s -H 'Host: demo.localhost' http://127.0.0.1:{HTTP_PORT}/            # -> web
  curl -s -H 'Host: demo.localhost' http://127.0.0.1:{HTTP_PORT}/api/users   # -> api (Prefix /api)
  curl -s -H 'Host: demo.localhost' http://127.0.0.1:{HTTP_PORT}/apix        # -> web (/api matches by path element)
  curl -s -H 'Host: shop.apps.localhost' http://127.0.0.1:{HTTP_PORT}/       # -> web (wildcard *.apps.localhost)
  curl -s -H 'Host: nowhere.localhost' http://127.0.0.1:{HTTP_PORT}/         # -> fallback (default backend)
  curl -s --cacert {ca} --resolve secure.localhost:{HTTPS_PORT}:127.0.0.1 https://secure.localhost:{HTTPS_PORT}/  # -> api over TLS

Look inside (another terminal, in the venv: .venv/bin/xds ...):
  xds status                                                # the Envoy: SYNCED per xDS type
  xds explain --host demo.localhost --path /api/users       # which rule, Service and endpoints
  xds config-dump demo --type routes -o yaml                # what the Envoy was sent
  open http://{DEBUG[0]}:{DEBUG[1]}/                               # the same, for a person

Edit a file in {EXAMPLES} and the routing changes within a second. Ctrl-C stops everything.
""", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("make run: a process exited; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
