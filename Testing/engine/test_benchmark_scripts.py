"""Benchmark scripts run end to end on tiny inputs: the GPU throughput script on the CPU (its --smoke mode), so that it
works when a GPU is lent; the CT memory measurement on a small volume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


def test_gpu_throughput_smoke_runs_and_reports_every_setting(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "(smoke)" in line]
    assert len(rows) == 4 and {r.split("|")[2].strip() for r in rows} == {"fp32", "bf16"}
    assert all(float(r.split("|")[4]) > 0 for r in rows)  # samples per second


def test_ct_memory_reports_the_measured_peak_and_the_estimate(tmp_path):
    """benchmarks/ct_memory.py on a small volume: a real predict under /usr/bin/time, its peak and the estimate."""
    if not Path("/usr/bin/time").exists():
        pytest.skip("/usr/bin/time (GNU time) is not installed")
    out = tmp_path / "ct.md"
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "ct_memory.py"), "--work", str(tmp_path / "w"),
                           "--out", str(out), "--size", "20", "96", "96", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    peak = float(text.split("Peak RSS (whole process, /usr/bin/time -v): ")[1].split(" GiB")[0])
    assert 0.1 < peak < 8 and "96 x 96 x 20" in text and "Planner's estimate" in text
