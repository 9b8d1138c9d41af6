"""Helpers of the benchmarks: percentiles, tables, JSON results, memory figures, machine facts."""

from __future__ import annotations

import ctypes
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median (= p50), p99, min, max, mean of a sample."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99), "min": min(values),
            "max": max(values), "mean": statistics.fmean(values)}


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / MIB:.1f} MiB"


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, printed and returned."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [f"\n{title}", line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def write_result(name: str, data: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"benchmark": name, "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return path


def _jsonable(o: Any) -> Any:
    if isinstance(o, float) and o != o:
        return None
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON: {type(o).__name__}")


_MACHINE: dict[str, Any] | None = None


def machine() -> dict[str, Any]:
    global _MACHINE
    if _MACHINE is None:
        cpu = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
        except OSError:
            pass
        _MACHINE = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1024**3, 1),
                    "python": platform.python_version(), "platform": platform.platform(), "envoy": envoy_version()}
    return _MACHINE


def envoy_version() -> str:
    try:
        from tests.harness.envoy import envoy_binary

        out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.strip().split("version:")[-1].strip()
    except Exception:  # noqa: BLE001 - a fact for the record, not a requirement
        return "unknown"


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (VmRSS)."""
    return _status_field(pid, "VmRSS")


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size since start or the last `reset_peak_rss` (VmHWM)."""
    return _status_field(pid, "VmHWM")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_field(pid: int | str, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def settle_memory() -> int:
    """Collect garbage and give free heap back to the OS, then the RSS (for before/after figures)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    time.sleep(0.05)
    return rss_bytes()


def quiet_logs() -> None:
    """The control plane logs at warning level only, so that log output costs nothing measurable."""
    from xds_ingress import logs

    logs.configure("warning", json=True)


def python() -> str:
    return sys.executable
