"""Peak memory of a real 3D prediction of a CT-sized volume (512 x 512 x 300) on the CPU, against the planner's estimate.

    python benchmarks/ct_memory.py --work /tmp/ct --out benchmarks/results/ct_memory.md

Steps: a small 3D model is trained for a few iterations on cardiac phantoms (4 classes) (default 3D UNet, patch and overlap: only
the weights' values differ from a real model, not the memory); a synthetic CT (int16 HU, 0.8 x 0.8 x 2.5 mm, a body
ellipse with organ-like blobs) is written as NIfTI; ``actionpp predict --device cpu`` runs on it under
``/usr/bin/time -v``, whose "Maximum resident set size" is the peak RSS of the whole process (Python, torch, the
volume, the blended scores, the label map, the window's activations). The estimate is ``memory.prediction_bytes`` for
the same shape, classes and config. The report names the CPU, torch, thread count and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from actionpp import memory
from actionpp.config import Config


def synthetic_ct(shape=(300, 512, 512), spacing=(0.8, 0.8, 2.5), seed=0) -> sitk.Image:
    """int16 HU volume ``Z, Y, X``: air outside a body ellipse (soft tissue ~40 HU), three organ-like ellipsoids and
    noise. ``spacing`` is SimpleITK's (x, y, z) order."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    cz, cy, cx = (s / 2 for s in shape)
    vol = np.full(shape, -1000.0, dtype=np.float32)
    body = ((y - cy) / (0.38 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 <= 1
    vol[np.broadcast_to(body, shape)] = 40.0
    for hu, (oz, oy, ox), (rz, ry, rx) in [(60, (0.5, 0.45, 0.4), (0.2, 0.12, 0.1)),
                                            (150, (0.4, 0.55, 0.62), (0.15, 0.08, 0.07)),
                                            (-800, (0.6, 0.5, 0.5), (0.25, 0.1, 0.2))]:
        blob = (((z - oz * shape[0]) / (rz * shape[0])) ** 2 + ((y - oy * shape[1]) / (ry * shape[1])) ** 2
                + ((x - ox * shape[2]) / (rx * shape[2])) ** 2) <= 1
        vol[blob] = hu
    vol += rng.normal(0, 15, size=shape).astype(np.float32)
    img = sitk.GetImageFromArray(np.clip(vol, -1024, 3071).astype(np.int16))
    img.SetSpacing(spacing)
    return img


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (new or empty)")
    ap.add_argument("--out", type=Path, required=True, help="report (.md)")
    ap.add_argument("--size", type=int, nargs=3, default=[300, 512, 512], metavar=("Z", "Y", "X"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "actionpp"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    data, run = args.work / "phantoms", args.work / "run"
    if not (run / "model.pt").exists():
        subprocess.run(exe + ["make-phantoms", "--cases", "4", "--labeled", "2", "--test-cases", "1", "--size", "24",
                              "96", "96", "--out", str(data)], check=True, env=env)
        subprocess.run(exe + ["train", str(data), "--out", str(run), "--dims", "3", "--method", "supervised",
                              "--iterations", "4", "--quiet", "--device", "cpu"], check=True, env=env)
    ct = args.work / "ct.nii.gz"
    if not ct.exists():
        sitk.WriteImage(synthetic_ct(tuple(args.size)), str(ct))
    pred = args.work / "ct_pred.nii.gz"
    pred.unlink(missing_ok=True)
    proc = subprocess.run(["/usr/bin/time", "-v"] + exe + ["predict", str(run), str(ct), "--out", str(pred),
                                                           "--device", "cpu"],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"predict failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time .*: (\S+)", proc.stderr).group(1)
    cfg = Config(**{k: v for k, v in json.loads((run / "config.json").read_text()).items()
                    if k in Config.__dataclass_fields__})
    classes = len(json.loads((run / "model.json").read_text())["labels"])
    est = memory.prediction_bytes(tuple(args.size), classes, cfg)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    out = sitk.ReadImage(str(pred))
    report = "\n".join([
        f"# 3D prediction of a {args.size[2]} x {args.size[1]} x {args.size[0]} CT on the CPU: peak memory",
        "",
        f"Command: `python benchmarks/ct_memory.py --work {args.work} --out {args.out} --threads {args.threads}`",
        "",
        f"- CPU: {cpu} ({os.cpu_count()} cores visible), OMP_NUM_THREADS={args.threads}; torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        f"- Volume: {args.size[2]} x {args.size[1]} x {args.size[0]} (x, y, z), int16 on disk; model: 3D "
        f"{cfg.network} {list(cfg.channels)}, patch {list(cfg.patch)}, overlap {cfg.overlap}, {classes} classes",
        f"- Output: {out.GetSize()} label map written ({pred.name})",
        f"- **Peak RSS (whole process, /usr/bin/time -v): {peak_kib / 2**20:.2f} GiB**; limit 8 GiB",
        f"- Planner's estimate (`memory.prediction_bytes`): {est / memory.GIB:.2f} GiB "
        f"({est / (peak_kib * 1024):.2f} x the measured peak)",
        f"- Wall time: {wall}",
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
