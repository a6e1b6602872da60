"""Cost of one training step per method, same backbone, batch and patch; medians of interleaved repeats.

    python benchmarks/step_cost.py --patch 256 256 --repeats 7 --dense            # ACDC-like 2D setting
    python benchmarks/step_cost.py --dims 3 --patch 80 112 112 --batch 2 --repeats 5  # LA-like 3D setting

Each repeat times one ``Trainer.train_step`` of every method in turn on the same batch, so machine noise hits
all methods alike; the table gives the median seconds, the ratio of medians to ``mean-teacher`` and the median of
the per-repeat ratios (each against the mean-teacher step of the same repeat). ``actionpp/fp32`` is ACTION++ with
``--ascl-precision float32``, for machines where ``auto`` picks bfloat16; ``actionpp/small`` halves ASCL's anchors
per class and its queue (128, 6144); ``actionpp/fullres`` sets ``--head-full-res``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from actionpp.config import Config
from actionpp.data.layout import load_dataset
from actionpp.data.phantoms import make_phantoms
from actionpp.losses.ascl import QueueLogSumExp
from actionpp.trainer import Trainer

VARIANTS = {"supervised": {}, "mean-teacher": {}, "action": {}, "actionpp": {},
            "actionpp/fp32": {"method": "actionpp", "ascl_precision": "float32"},
            # half the ASCL anchors and half the queue (4x cheaper queue products); the ablation study measures Dice
            "actionpp/small": {"method": "actionpp", "ascl_anchors_per_class": 128, "ascl_queue": 6144},
            "actionpp/fullres": {"method": "actionpp", "head_full_res": True}}


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def print_floor(trainer: Trainer, batch: dict, repeats: int, base: float) -> None:
    """The extra work ASCL needs by design, each timed alone, as a fraction of the mean-teacher step ``base`` (s).

    The teacher's no-grad pass over the labeled half (its features are ASCL's targets and queue entries) and the
    queue log-sum-exp over ``N = anchors per class x classes`` rows (the most a step samples) and the whole
    ``K``-entry queue, in float32.
    """
    learner, cfg = trainer.learner, trainer.cfg
    with torch.no_grad():
        teacher_ms = _median_ms(lambda: learner.teacher(batch["l_image"]), repeats)
    ascl = learner.ascl
    n, k, d = cfg.ascl_anchors_per_class * ascl.num_classes, ascl.queue_size, ascl.dim
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1) / 0.1
    memory = torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=1)

    def lse() -> None:
        xg = x.clone().requires_grad_()
        QueueLogSumExp.apply(xg, memory, torch.zeros(k), 10.0, torch.float32).sum().backward()

    lse_ms = _median_ms(lse, repeats)
    print(f"\nfloor (each alone, median of {repeats}, float32): teacher pass over the labeled half {teacher_ms:.0f} ms "
          f"({teacher_ms / 1000 / base:.2f}x of a mean-teacher step); queue log-sum-exp {n} x {k} x {d} "
          f"{lse_ms:.0f} ms ({lse_ms / 1000 / base:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, default=2)
    ap.add_argument("--patch", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--batch", type=int, default=4, help="labeled and unlabeled batch size")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    ap.add_argument("--dense", action="store_true", help="also time the losses against the dense reference")
    ap.add_argument("--floor", action="store_true",
                    help="also time alone the two costs ACTION++'s design adds: the teacher's pass over the labeled "
                         "half and ASCL's queue log-sum-exp at the run's sizes (forward + backward, float32)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp())
    size = (10, *a.patch) if a.dims == 2 else tuple(a.patch)
    kind = "cardiac" if a.dims == 2 else "atrium"  # ACDC-like in 2D (5 classes), LA-like in 3D (2 classes)
    data = make_phantoms(kind, 4, 2, tmp / "data", seed=0, test_cases=1, size=size)
    ds = load_dataset(data)
    trainers = {}
    for name, extra in VARIANTS.items():
        cfg = Config(data=str(data), out=str(tmp / name.replace("/", "_")), method=extra.get("method", name),
                     dims=a.dims, patch=tuple(a.patch), device="cpu", batch_labeled=a.batch, batch_unlabeled=a.batch,
                     iterations=1000, **{k: v for k, v in extra.items() if k != "method"})
        trainers[name] = Trainer(cfg, ds, show_bar=False)
    batch = trainers["actionpp"].batches[0]
    for tr in trainers.values():  # warm allocators and caches
        for it in range(a.warmup):
            tr.train_step(batch, it)
        ascl = getattr(tr.learner, "ascl", None)
        if ascl is not None:  # time the steady state: a full queue (a filling one is only the first ~10 steps)
            g = torch.Generator().manual_seed(0)
            ascl.queue.copy_(torch.nn.functional.normalize(torch.randn(ascl.queue.shape, generator=g), dim=1))
            ascl.queue_labels.copy_(torch.arange(ascl.queue_labels.numel()) % ascl.centroids.shape[0])
    times = {name: [] for name in VARIANTS}
    for r in range(a.repeats):
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            tr.train_step(batch, 100 + r)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["mean-teacher"])
    ascl_dtype = str(trainers["actionpp"].learner.ascl.matmul_dtype).replace("torch.", "")
    print(f"step cost, {kind} phantoms ({ds.num_classes} classes), {a.dims}D patch {a.patch}, "
          f"batch {a.batch}+{a.batch}, {a.threads} threads, median of {a.repeats} interleaved repeats after "
          f"{a.warmup} warm-up steps, torch {torch.__version__}, ASCL queue products in {ascl_dtype} (auto)")
    print(f"{'method':<15}{'median s':>10}{'ratio of medians':>18}{'median ratio':>14}")
    for name in VARIANTS:
        med = statistics.median(times[name])
        paired = statistics.median(t / b for t, b in zip(times[name], times["mean-teacher"]))
        print(f"{name:<15}{med:>10.3f}{med / base:>17.2f}x{paired:>13.2f}x")
    if a.floor:
        print_floor(trainers["actionpp/fp32"], batch, a.repeats, base)
    if a.dense:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from dense_reference import compare

        rows = dict(compare(tuple(a.patch), 2 * a.batch, ds.num_classes, 128, a.repeats))
        print(f"\nlosses alone on {2 * a.batch} x {a.patch}, {ds.num_classes} classes, 128-d embedding maps given "
              f"(forward + backward, median of {a.repeats}):")
        for loss in ("anco", "ascl"):
            d, s = rows[f"{loss} dense"], rows[f"{loss} sampled"]
            print(f"{loss:<6} dense (official access pattern) {d:8.3f} s   indices first {s:8.3f} s   "
                  f"speed-up {d / s:5.1f}x")


if __name__ == "__main__":
    main()
