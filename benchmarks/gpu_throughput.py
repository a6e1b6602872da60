"""Training throughput of one ACTION++ step at the paper's scales, fp32 against bf16, on one GPU (or a CPU smoke run).

    python benchmarks/gpu_throughput.py --out benchmarks/results/gpu_throughput.txt          # on a GPU machine
    python benchmarks/gpu_throughput.py --smoke                                             # CI: tiny, CPU

Settings (the paper's): 2D UNet at 256 x 256 with 12 labeled + 12 unlabeled images; 3D VNet at 112 x 112 x 80 with
2 + 2 patches. For each setting and precision: samples per second (labeled + unlabeled images per second, median of
``--repeats`` timed steps after ``--warmup`` untimed ones, ``torch.cuda.synchronize`` around each), the step's FLOPs
(``torch.utils.flop_counter.FlopCounterMode``, forward + backward of one step) and the achieved FLOP/s against the
GPU's dense peak for that precision where the GPU is known, and how many host synchronisations one step makes
(``torch.cuda.set_sync_debug_mode("warn")``; the ASCL Hungarian matching needs one by design, logging adds more).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from actionpp.config import Config
from actionpp.data.io import Geometry
from actionpp.data.layout import Case, Dataset
from actionpp.trainer import Trainer

PEAK_TFLOPS = {  # dense tensor-core peaks from the vendors' data sheets: (fp32 incl. TF32 off, bf16)
    "H100": (67.0, 989.0), "H200": (67.0, 989.0), "A100": (19.5, 312.0), "L40S": (91.6, 362.0),
}


def synthetic_dataset(shape: tuple[int, ...], classes: int, cases: int = 4) -> Dataset:
    """Labeled and unlabeled volumes of ``shape`` (Z, Y, X) with nested boxes as classes."""
    rng = np.random.default_rng(0)
    labels = {"background": 0, **{f"c{i}": i for i in range(1, classes)}}
    made = []
    for i in range(cases):
        label = np.zeros(shape, np.int64)
        for c in range(1, classes):
            m = [slice(s * c // (2 * classes), s - s * c // (2 * classes)) for s in shape]
            label[tuple(m)] = c
        image = (label + rng.normal(0, 0.3, shape)).astype(np.float32)
        geo = Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
                       size=tuple(reversed(shape)))
        made.append(Case(f"case{i}", image, label, geo))
    unlabeled = [Case(c.name + "u", c.image, None, c.geometry) for c in made]
    return Dataset(root=Path("."), format="nnunet", labels=labels, labeled=made, unlabeled=unlabeled, test=[])


def measure(cfg: Config, ds: Dataset, warmup: int, repeats: int) -> dict:
    trainer = Trainer(cfg, ds, show_bar=False)
    cuda = trainer.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batches = [trainer.batches[i] for i in range(warmup + repeats)]
    for i in range(warmup):
        trainer.train_step(batches[i], i)
    times = []
    for i in range(warmup, warmup + repeats):
        sync()
        t0 = time.perf_counter()
        trainer.train_step(batches[i], i)
        sync()
        times.append(time.perf_counter() - t0)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batches[0], warmup + repeats)
    syncs = None
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step(batches[1], warmup + repeats + 1)
        torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    seconds = statistics.median(times)
    samples = cfg.batch_labeled + cfg.batch_unlabeled
    return {"seconds": seconds, "samples_per_s": samples / seconds, "flops": counter.get_total_flops(),
            "syncs": syncs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the script runs (CI)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    if a.smoke:
        tiny = dict(embed_dim=16, ascl_queue=64, ascl_anchors_per_class=8, anco_anchors=8, anco_negatives=16,
                    anco_pool=8)
        settings = [("2D UNet 32x32, 2+2 (smoke)", dict(dims=2, patch=(32, 32), channels=(8, 16, 32),
                                                         batch_labeled=2, batch_unlabeled=2, **tiny), (4, 32, 32), 4),
                    ("3D UNet 16x32x32, 1+1 (smoke)", dict(dims=3, patch=(16, 32, 32), channels=(8, 16),
                                                            batch_labeled=1, batch_unlabeled=1, **tiny),
                     (16, 32, 32), 2)]
        a.warmup, a.repeats, a.device = 1, 2, "cpu"
        precisions = ["fp32", "bf16"]
    else:
        settings = [("2D UNet 256x256, 12+12", dict(dims=2, patch=(256, 256), batch_labeled=12, batch_unlabeled=12),
                     (8, 256, 256), 4),
                    ("3D VNet 112x112x80, 2+2", dict(dims=3, network="vnet", patch=(80, 112, 112), batch_labeled=2,
                                                     batch_unlabeled=2), (96, 128, 128), 2)]
        precisions = ["fp32", "bf16"]
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() and a.device != "cpu" else "CPU"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    lines = [f"# ACTION++ training step throughput on {name} (torch {torch.__version__})", "",
             "| setting | precision | step s | samples/s | TFLOP per step | achieved TFLOP/s | % of peak | "
             "host syncs |", "|---|---|---|---|---|---|---|---|"]
    for label, over, shape, classes in settings:
        ds = synthetic_dataset(shape, classes)
        for precision in precisions:
            cfg = Config(out="/tmp/actionpp-throughput", method="actionpp", iterations=1000, device=a.device,
                         precision=precision, **over)
            r = measure(cfg, ds, a.warmup, a.repeats)
            achieved = r["flops"] / r["seconds"] / 1e12
            share = (f"{100 * achieved / peak[precision == 'bf16']:.1f}" if peak else "n/a")
            lines.append(f"| {label} | {precision} | {r['seconds']:.4f} | {r['samples_per_s']:.1f} | "
                         f"{r['flops'] / 1e12:.3f} | {achieved:.2f} | {share} | "
                         f"{r['syncs'] if r['syncs'] is not None else 'n/a (CPU)'} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
