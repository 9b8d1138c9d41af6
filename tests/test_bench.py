"""The benchmarks run end to end (`python -m bench --quick`) and write well-formed JSON.

A smoke test only: the quick mode is a small scale with short runs, and nothing here looks at
a timing (benchmarks are not tests; `make bench` gives the figures).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ["8-loop-stalls", "1-cold-translation", "2-3-change-to-bytes", "4-propagation", "5-wire-bytes", "6-fanout", "7-churn",
            "9-connection-limiter", "summary"]

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(240)]


def test_quick_bench_runs_end_to_end_and_writes_json(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(EXPECTED)
    for name in EXPECTED:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["benchmark"] == name and data["machine"]["cores"]
        if name != "summary":
            assert data["table"] and data["table"] in out.stdout  # what is printed is what is written
    cold = json.loads((tmp_path / "1-cold-translation.json").read_text())
    assert all(s["total_s"]["n"] >= 1 and s["peak_rss_bytes"]["p50"] > 0 for s in cold["scales"])
    assert cold["profile"] and all("function" in row for row in cold["profile"])
    wire = json.loads((tmp_path / "5-wire-bytes.json").read_text())
    assert wire["delta_bytes"]["n"] == wire["sotw_bytes"]["n"] > 0
    for name in ("4-propagation", "6-fanout"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        numbers = [v for k, v in data.items() if k.endswith("_s") and isinstance(v, dict) for v in v.values()]
        assert numbers and all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers)
    churn = json.loads((tmp_path / "7-churn.json").read_text())
    assert churn["changes"] > 0 and churn["pushes_total"] > 0
