"""What one 3D labeled draw from a ``--cache disk`` store costs: the cache file mapped and the crop's voxel lists
found once per case (today) against the whole image copied out of the map first (``copied``) and against MONAI
searching the whole label at every draw (``searched``). Per variant, in its own process: median wall time of a draw,
median peak numpy allocation (``tracemalloc``) and how much the process's peak RSS grew from before the first draw.

    OMP_NUM_THREADS=1 python benchmarks/draw_memory_3d.py --size 160 384 384 --out benchmarks/results/draw_memory_3d.md

The synthetic volume is float32 noise with one box of foreground; the patch 16 x 96 x 96, batch 1, MONAI's
foreground/background crop (as ``--dims 3`` training draws). The first draw (untimed) finds the case's foreground.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_memory import cpu_model  # noqa: E402

VARIANTS = ("mapped", "copied", "searched")


def measure(variant: str, size: tuple[int, int, int], draws: int, folder: Path) -> str:
    from actionpp.config import Config
    from actionpp.data.case import Case
    from actionpp.data.geometry import Geometry
    from actionpp.data.loaders import IterationBatches, _weak_augment
    from actionpp.data.volumes import VolumeStore

    class Copied(VolumeStore):  # the earlier behaviour: the whole image copied out of the map at each draw
        def take(self, i, z=None):
            image, label = super().take(i, z)
            return np.array(image, dtype=np.float32), label

    z, y, x = size
    image = np.random.default_rng(0).normal(size=size).astype(np.float32)
    label = np.zeros(size, np.uint8)
    label[z // 3:2 * z // 3, y // 3:2 * y // 3, x // 3:2 * x // 3] = 1
    case = Case("big", image, label, Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel())))
    store = (VolumeStore if variant == "mapped" else Copied)([case], "disk", folder)
    del image, case  # only the cache file holds the volume now
    patch = tuple(min(p, s) for p, s in zip((16, 96, 96), size))
    cfg = Config(dims=3, patch=patch, channels=(8, 16), batch_labeled=1, batch_unlabeled=0, method="supervised",
                 iterations=draws + 1)
    batches = IterationBatches(cfg, store, [])
    if variant == "searched":  # the earlier crop: MONAI lists the label's foreground and background at every draw
        batches.aug_l = _weak_augment(patch, ["image", "label"], pos_neg=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batches[0]  # warm-up: pages and MONAI's first call (counted in the RSS growth, not in the medians)
    times, peaks = [], []
    for it in range(1, draws + 1):
        tracemalloc.start()
        t0 = time.perf_counter()
        batches[it]
        times.append(time.perf_counter() - t0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return (f"| {variant} | {statistics.median(times) * 1000:.0f} | {statistics.median(peaks) / 2**20:.1f} | "
            f"{grew:.0f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=3, default=[160, 384, 384], metavar=("Z", "Y", "X"))
    ap.add_argument("--draws", type=int, default=11)
    ap.add_argument("--out", type=Path, help="write the table here as well")
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in a child process
    a = ap.parse_args(argv)
    if a.variant:
        with tempfile.TemporaryDirectory() as tmp:
            print(measure(a.variant, tuple(a.size), a.draws, Path(tmp)))
        return
    import torch

    rows = [subprocess.run([sys.executable, __file__, "--variant", v, "--size", *map(str, a.size), "--draws",
                            str(a.draws)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            for v in VARIANTS]
    z, y, x = a.size
    text = "\n".join([
        f"# One 3D labeled draw from a disk cache, {z} x {y} x {x} float32 ({z * y * x * 4 / 2**20:.0f} MiB) + uint8 "
        f"label ({z * y * x / 2**20:.0f} MiB)", "",
        f"`python benchmarks/draw_memory_3d.py --size {z} {y} {x} --draws {a.draws}`; {cpu_model()}"
        f", torch {torch.__version__}, numpy {np.__version__}, medians of {a.draws} draws after one warm-up", "",
        "| variant | draw ms | peak numpy allocation MiB | peak RSS growth MiB |", "|---|---|---|---|", *rows, ""])
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
