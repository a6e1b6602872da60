"""The GPU throughput script runs end to end on the CPU (its --smoke mode), so that it works when a GPU is lent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


def test_gpu_throughput_smoke_runs_and_reports_every_setting(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "(smoke)" in line]
    assert len(rows) == 4 and {r.split("|")[2].strip() for r in rows} == {"fp32", "bf16"}
    assert all(float(r.split("|")[4]) > 0 for r in rows)  # samples per second
