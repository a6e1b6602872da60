"""Pseudo-label quality of the mean teacher in eval mode (averaged BN statistics) and in train mode (batch
statistics, the official teacher), on the unlabeled cases of a phantom set whose hidden labels we can regenerate.

    python benchmarks/teacher_modes.py --run RUN --phantom-seed 777 [--spacing 1.4 9 --oblique 35 --intensity alt]

Loads ``RUN/checkpoints/last.pt`` (student and teacher), predicts every slice of the unlabeled training cases in
batches of 4 slices (the unlabeled batch size) and prints, per network and mode: mean foreground Dice against the
hidden labels, the fraction of pixels the pseudo-label loss uses (confidence >= 0.97) and how many of those are
wrong. Explains which teacher the unlabeled branch can trust on shifted data. CPU, seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from actionpp import checkpoint
from actionpp.config import Config
from actionpp.data.loaders import normalize
from actionpp.data.phantom_variants import Variant
from actionpp.data.phantoms import phantom_case
from actionpp.methods import Learner


def scores(net, cases, train_mode, classes, threshold=0.97):
    dice, used, wrong = [], 0, 0
    net.train(train_mode)
    with torch.no_grad():
        for image, label in cases:
            x = torch.from_numpy(normalize(image))[:, None]
            h, w = x.shape[2] // 16 * 16, x.shape[3] // 16 * 16
            probs = torch.cat([net(x[i:i + 4, :, :h, :w])[0].softmax(1) for i in range(0, x.shape[0], 4)])
            conf, pred = probs.max(1)
            y = torch.from_numpy(label[:, :h, :w].astype(np.int64))
            for c in range(1, classes):
                p, g = pred == c, y == c
                if g.any():
                    dice.append(float(2 * (p & g).sum() / (p.sum() + g.sum())))
            sure = conf >= threshold
            used += int(sure.sum())
            wrong += int((sure & (pred != y)).sum())
    total = sum(lab.size for _, lab in cases)
    return float(np.mean(dice)), used / total, wrong / max(used, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--phantom-seed", type=int, default=777)
    ap.add_argument("--labeled", type=int, default=2)
    ap.add_argument("--cases", type=int, default=14)
    ap.add_argument("--spacing", type=float, nargs=2)
    ap.add_argument("--oblique", type=float, default=0.0)
    ap.add_argument("--intensity", default="default")
    a = ap.parse_args()
    torch.set_num_threads(1)
    state = checkpoint.load(a.run / "checkpoints" / "last.pt")
    cfg = Config.from_dict(state["config"]) if "config" in state else Config.load(a.run / "config.json")
    learner = Learner(cfg, 5)
    learner.load_state_dict(state["learner"])
    learner.load_extra_state(state)
    v = Variant(tuple(a.spacing) if a.spacing else None, a.oblique, a.intensity)
    cases = [phantom_case("cardiac", a.phantom_seed, i, None, None if v.is_default else v)[:2]
             for i in range(a.labeled, a.cases)]
    print(f"run {a.run} (teacher option {cfg.teacher}), {len(cases)} unlabeled cases\n")
    print("| network | BN mode | fg Dice | pixels with conf >= 0.97 | of those wrong |\n|---|---|---|---|---|")
    for name, net in (("teacher", learner.teacher.module), ("student", learner.student)):
        for mode in (False, True):
            d, u, w = scores(net, cases, mode, 5)
            print(f"| {name} | {'train (batch stats)' if mode else 'eval (running stats)'} | {d:.3f} | {u:.3f} | "
                  f"{w:.4f} |")


if __name__ == "__main__":
    main()
