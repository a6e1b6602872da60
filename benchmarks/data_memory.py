"""Peak host memory of training against the number of unlabeled volumes, per ``--cache`` mode.

Writes cardiac phantoms once (``2 + max(N)`` training cases, 2 labeled), makes one dataset folder per N whose files
link to the first ``2 + N`` of them, and runs a short ``actionpp train`` on each under ``/usr/bin/time -v`` for every
mode, reading "Maximum resident set size". Expected: ``memory`` grows by about ``N * Z*Y*X*4`` bytes (the z-scored
volumes it holds), ``disk`` and ``none`` stay flat (only the list of volumes grows).

    OMP_NUM_THREADS=1 python benchmarks/data_memory.py --out benchmarks/results/data_memory.md

Results: benchmarks/results/data_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = ["--method", "mean-teacher", "--dims", "2", "--patch", "128", "128", "--channels", "8", "16", "32", "32",
         "--batch-labeled", "2", "--batch-unlabeled", "2", "--device", "cpu", "--quiet", "--checkpoint-every", "1000",
         "--pretrain-iterations", "0"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def subset(full: Path, n: int, dest: Path) -> Path:
    """A dataset folder holding links to the 2 labeled and the first ``n`` unlabeled cases of ``full``."""
    images = sorted((full / "imagesTr").iterdir())[: 2 + n]
    (dest / "imagesTr").mkdir(parents=True)
    (dest / "labelsTr").mkdir()
    for f in images:
        (dest / "imagesTr" / f.name).symlink_to(f.resolve())
    for f in (full / "labelsTr").iterdir():
        (dest / "labelsTr" / f.name).symlink_to(f.resolve())
    meta = json.loads((full / "dataset.json").read_text())
    meta["numTraining"] = len(images)
    (dest / "dataset.json").write_text(json.dumps(meta, indent=2))
    return dest


def peak_rss(data: Path, out: Path, mode: str, iterations: int, baseline: str = "") -> tuple[float, float, float]:
    """``(peak RSS MiB, wall seconds, cache MiB)`` of one training run (mode ``before``: the engine in ``baseline``,
    a source folder from before ``--cache``, run without that flag)."""
    cache = [] if mode == "before" else ["--cache", mode]
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "actionpp", "train", str(data), "--out", str(out),
           "--iterations", str(iterations), *cache, *TRAIN]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": baseline} if mode == "before" else {})}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"train failed ({mode}, {data}): {done.stderr[-2000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    cache = sum(f.stat().st_size for f in (out / "cache").glob("*.npy")) / 2**20 if (out / "cache").is_dir() else 0.0
    return kib / 1024, wall, cache


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", type=int, nargs="+", default=[20, 80, 320], help="unlabeled volumes per dataset")
    p.add_argument("--modes", nargs="+", default=["memory", "disk", "none"],
                   help="--cache modes to measure, and 'before' for the engine in --baseline")
    p.add_argument("--baseline", default="", help="src folder of an engine from before --cache (mode 'before'), e.g. "
                   "from: git archive <commit> src | tar -x -C /tmp/before")
    p.add_argument("--size", type=int, nargs=3, default=[48, 128, 128], metavar=("Z", "Y", "X"))
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--out", default="benchmarks/results/data_memory.md", help="markdown table to write")
    p.add_argument("--work", help="scratch folder (default: a temporary folder, removed afterwards)")
    a = p.parse_args()

    import torch

    from actionpp.data.phantoms import make_phantoms

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="data-memory-"))
    try:
        t0 = time.perf_counter()
        full = make_phantoms("cardiac", 2 + max(a.counts), 2, work / "full", seed=0, test_cases=0, size=a.size)
        print(f"phantoms: {2 + max(a.counts)} volumes of {a.size} in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = []
        for n in a.counts:
            data = subset(full, n, work / f"n{n}")
            row = {"n": n}
            for mode in a.modes:
                run = work / f"run-{n}-{mode}"
                row[mode] = peak_rss(data, run, mode, a.iterations, a.baseline)
                print(f"N={n} {mode}: {row[mode][0]:.0f} MiB peak, {row[mode][1]:.0f} s, cache {row[mode][2]:.0f} MiB",
                      flush=True)
                shutil.rmtree(run)
            rows.append(row)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)

    volume_mib = a.size[0] * a.size[1] * a.size[2] * 4 / 2**20
    lines = [
        "# Peak host memory against the number of unlabeled volumes (`--cache`)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/data_memory.py --counts {' '.join(map(str, a.counts))} "
        f"--modes {' '.join(a.modes)} --size {' '.join(map(str, a.size))} --iterations {a.iterations}"
        + (" --baseline BEFORE/src" if a.baseline else "") + "`",
        "",
        f"Each run: `/usr/bin/time -v actionpp train DATA --out RUN --iterations {a.iterations} --cache MODE "
        f"{' '.join(TRAIN)}`; peak = \"Maximum resident set size\". Data: cardiac phantoms, 2 labeled + N unlabeled "
        f"volumes of {a.size[0]}x{a.size[1]}x{a.size[2]} ({volume_mib:.1f} MiB each as float32), no test cases.",
        "",
        f"CPU: {cpu_model()}; torch {torch.__version__}; Python {platform.python_version()}; "
        f"{os.cpu_count()} logical CPUs (shared).",
        *(["", "`before`: the engine in `--baseline` (source from before `--cache`), run without `--cache`; it held "
            "every volume twice (raw and z-scored)."] if "before" in a.modes else []),
        "",
        "| N unlabeled | " + " | ".join(f"{m}: peak RSS MiB" for m in a.modes) + " | "
        + " | ".join(f"{m}: wall s" for m in a.modes) + " | disk cache MiB |",
        "|---|" + "---|" * (2 * len(a.modes) + 1),
    ]
    for row in rows:
        cache = max(row[m][2] for m in a.modes)
        lines.append(f"| {row['n']} | " + " | ".join(f"{row[m][0]:.0f}" for m in a.modes) + " | "
                     + " | ".join(f"{row[m][1]:.0f}" for m in a.modes) + f" | {cache:.0f} |")
    first, last = rows[0], rows[-1]
    lines += ["", f"Growth from N={first['n']} to N={last['n']} ({last['n'] - first['n']} volumes, "
              f"{(last['n'] - first['n']) * volume_mib:.0f} MiB of float32): "
              + "; ".join(f"{m} {last[m][0] - first[m][0]:+.0f} MiB" for m in a.modes) + "."]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
