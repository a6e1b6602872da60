"""Why the contrastive losses sit near chance: their achievable range, and what the head learns at the default weight.

    python benchmarks/contrastive_diagnosis.py --model RUN/model.pt --data DATASET [--steps 400]

1. **Range of each loss** (no model): the value at chance (random unit embeddings) and the floor (every embedding
   equal to its class centre; queue balanced over the classes) of ASCL (K = 12288 queue, 256 anchors per class) and
   of AnCo (512 negatives), at the two ends of the cosine temperature. With ``P`` same-class queue entries the
   ASCL floor is about ``log(P + 1)``, not 0, because every same-class entry is a positive of the same anchor.
2. **What the run's embeddings reach**: the losses of the model's own representation head on pixels of the labeled
   training images, against that range (``gap = (chance - L) / (chance - floor)``, 0 = chance, 1 = floor), and the
   nearest-class-mean accuracy of the embeddings.
3. **Head learning rate**: on the model's frozen backbone features, a fresh head trained for ``--steps`` SGD steps
   (lr 0.01, momentum 0.9, Nesterov, as fine-tuning) on ``w * (L_AnCo + L_ASCL)`` with ``w = 0.01`` (the default
   weights) and ``w = 1``: how far each gets towards the floor.

Prints one table; CPU, seconds to a minute.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

from actionpp.centers import uniform_centers
from actionpp.losses.anco import anco_loss
from actionpp.losses.ascl import ASCLoss


def ascl_value(s, t, y, C, tau, queue=12288, fill=None, centers=None):
    """ASCL of rows ``s, t (N, D)``, labels ``y``, with the queue pre-filled by ``fill = (rows, labels)``."""
    D = s.shape[1]
    fn = ASCLoss(C, D, centers if centers is not None else uniform_centers(C, D, seed=0), queue_size=queue)
    if fill is not None:
        rows, labels = fill
        n = min(queue, rows.shape[0])
        fn.queue[:n], fn.queue_labels[:n] = F.normalize(rows[:n], dim=1), labels[:n]
    return fn(s, t, y, tau)


def bounds(C=4, D=128, per_class=256, queue=12288, anco_neg=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(C).repeat_interleave(per_class)
    qy = torch.arange(C).repeat(queue // C + 1)[:queue]
    centers = uniform_centers(C, D, seed=0)
    rnd = lambda n: F.normalize(torch.randn(n, D, generator=g), dim=1)  # noqa: E731
    out = {}
    for tau in (0.07, 1.0):
        chance = float(ascl_value(rnd(len(y)), rnd(len(y)), y, C, tau, queue, (rnd(queue), qy), centers))
        floor = float(ascl_value(centers[y], centers[y], y, C, tau, queue, (centers[qy], qy), centers))
        out[f"ASCL tau={tau}"] = (chance, floor)
    ok = torch.ones(C, dtype=torch.bool)
    for tau in (0.1, 1.0):
        a, p = rnd(C * 256).view(C, 256, D), rnd(C * 512).view(C, 512, D)
        chance = float(anco_loss(a, ok, p, ok, tau, anco_neg, torch.Generator().manual_seed(1)))
        floor = float(anco_loss(centers[:, None].expand(C, 256, D), ok, centers[:, None].expand(C, 512, D), ok, tau,
                                anco_neg, torch.Generator().manual_seed(1)))
        out[f"AnCo tau={tau}"] = (chance, floor)
    return out


def pixel_features(model, data, per_class=256, seed=0):
    """Backbone features (rows, N x sum C_i), labels and the head's embeddings at labeled training pixels."""
    from actionpp.data.layout import load_dataset
    from actionpp.data.loaders import normalize
    from actionpp.nets import gather_points

    ds = load_dataset(data)
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    model.eval()
    with torch.no_grad():
        for case in ds.labeled:
            img = torch.from_numpy(normalize(case.image))[:, None]  # Z, 1, Y, X (whole slices)
            H, W = img.shape[2:]
            h, w = H // 16 * 16, W // 16 * 16
            _, feats = model(img[:, :, :h, :w])
            lab = torch.from_numpy(case.label[:, :h, :w].astype(np.int64)).flatten()
            for c in range(len(ds.labels)):
                idx = torch.nonzero(lab == c)[:, 0]
                if len(idx):
                    pick = idx[torch.from_numpy(rng.integers(0, len(idx), per_class))]
                    rows.append(gather_points(feats, pick, (h, w)))
                    labels.append(torch.full((per_class,), c))
    return torch.cat(rows), torch.cat(labels), len(ds.labels)


def losses_of(emb, y, C, tau_ascl, tau_anco, g):
    """ASCL (queue filled with the same embeddings, teacher = student) and AnCo of embeddings ``emb``."""
    D = emb.shape[1]
    perm = torch.randperm(len(y), generator=g)
    s, yy = emb[perm], y[perm]
    # a full queue as in training: 12288 rows drawn class-balanced (with replacement) from the embeddings
    fill = torch.cat([torch.nonzero(y == c)[:, 0][torch.randint(int((y == c).sum()), (12288 // C + 1,), generator=g)]
                      for c in range(C)])[torch.randperm((12288 // C + 1) * C, generator=g)][:12288]
    ascl = ascl_value(s[:1024], s[:1024].detach(), yy[:1024], C, tau_ascl, 12288, (emb[fill].detach(), y[fill]))
    per = [emb[y == c] for c in range(C)]
    n = min(len(p) for p in per)
    a = torch.stack([p[:min(n, 256)] for p in per])
    pool = torch.stack([p[-min(n, 512):] for p in per]).detach()
    anco = anco_loss(a, torch.ones(C, dtype=torch.bool), pool, torch.ones(C, dtype=torch.bool), tau_anco, 512, g)
    return ascl, anco


def knn_accuracy(emb, y, C):
    e = F.normalize(emb, dim=1)
    means = F.normalize(torch.stack([e[y == c].mean(0) for c in range(C)]), dim=1)
    return float(((e @ means.T).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model.pt of an actionpp run")
    ap.add_argument("--data", help="its dataset")
    ap.add_argument("--steps", type=int, default=400)
    a = ap.parse_args()
    torch.manual_seed(0)
    print("| loss (C = 4 classes, D = 128) | chance | floor |\n|---|---|---|")
    for k, (c, f) in bounds().items():
        print(f"| {k} | {c:.2f} | {f:.2f} |")
    if not a.model:
        return
    from actionpp.inference import Predictor

    model = Predictor.load(a.model).model
    feats, y, C = pixel_features(model, a.data)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        emb = model.head(feats)
    print(f"\nrun's head: nearest-class-mean accuracy {knn_accuracy(emb, y, C):.3f} "
          f"(backbone features: {knn_accuracy(feats, y, C):.3f}; chance {1 / C:.3f})")
    cos = F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T
    same = (y[:, None] == y[None, :])
    print(f"mean cosine same class {float(cos[same].mean()):.3f}, other class {float(cos[~same].mean()):.3f}")
    b = bounds(C=C, D=emb.shape[1])
    print(f"\nrange with C = {C}: " + ", ".join(f"{k} {c:.2f}..{f:.2f}" for k, (c, f) in b.items()))
    print("\n| head | ASCL tau=0.07 (gap) | AnCo tau=0.1 (gap) | ASCL tau=1 (gap) | AnCo tau=1 (gap) |")
    print("|---|---|---|---|---|")

    def row(name, e):
        vals = []
        for ta, tn, ka, kn in ((0.07, 0.1, "ASCL tau=0.07", "AnCo tau=0.1"), (1.0, 1.0, "ASCL tau=1.0", "AnCo tau=1.0")):
            la, ln = losses_of(e, y, C, ta, tn, g)
            gap = lambda v, k: (b[k][0] - v) / (b[k][0] - b[k][1])  # noqa: E731
            vals.append((float(la), gap(float(la), ka), float(ln), gap(float(ln), kn)))
        (a1, g1, n1, h1), (a2, g2, n2, h2) = vals
        print(f"| {name} | {a1:.2f} ({g1:.2f}) | {n1:.2f} ({h1:.2f}) | {a2:.2f} ({g2:.2f}) | {n2:.2f} ({h2:.2f}) |")

    with torch.no_grad():
        row("the model's own head", emb)
    for w in (0.01, 1.0):
        torch.manual_seed(1)
        head = type(model.head)(feats.shape[1], emb.shape[1])
        opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
        for step in range(a.steps):
            tau = 0.07 + (1.0 - 0.07) * 0.5 * (1 + math.cos(2 * math.pi * step / (0.1 * a.steps)))
            la, ln = losses_of(head(feats), y, C, tau, max(0.1, tau), g)
            opt.zero_grad()
            (w * (la + ln)).backward()
            opt.step()
        with torch.no_grad():
            row(f"fresh head, {a.steps} steps, weight {w}", head(feats))


if __name__ == "__main__":
    main()
