"""Dense reference versions of AnCo and ASCL, written to time the *official access pattern* against ours.

Not used by the engine. These functions compute losses of the same kind as ``actionpp.losses.anco`` and
``actionpp.losses.ascl`` but the way the official ACTION/ReCo code reaches its rows (docs/method.md §10): normalise or
permute whole full-resolution maps, gather every pixel of each class with boolean masks, concatenate each class's
negative pool and materialise the ``(A, 1 + K, D)`` key tensor. Our implementation samples indices first and embeds
only those rows. Run ``python benchmarks/dense_reference.py`` for a small timing comparison (CPU by default).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from actionpp.losses.anco import anco_loss
from actionpp.losses.ascl import ASCLoss
from actionpp.sampling import sample_per_class


def dense_anco(rep, labels, valid, prob, tau, anchors=256, negatives=512, strong_threshold=0.97):
    """ReCo/AnCo, dense pattern. rep ``(B, D, *S)``, labels ``(B, *S)``, valid ``(B, *S)`` bool, prob ``(B, C, *S)``."""
    C = prob.shape[1]
    feats = rep.movedim(1, -1)  # (B, *S, D), a full-map permute as in the official code
    protos, pools, hards = [], [], []
    for c in range(C):
        m = (labels == c) & valid
        if not m.any():
            continue
        pool = feats[m]  # boolean-mask gather of every valid pixel of c
        protos.append(pool.mean(0))
        pools.append(pool)
        hards.append(feats[m & (prob[:, c] < strong_threshold)])
    if len(protos) < 2:
        return rep.sum() * 0
    protos_t = torch.stack(protos)
    loss = rep.new_zeros(())
    for i in range(len(protos)):
        if len(hards[i]) == 0:
            continue
        a = hards[i][torch.randint(len(hards[i]), (anchors,), device=rep.device)]
        with torch.no_grad():
            rel = F.cosine_similarity(protos_t[i:i + 1], protos_t, dim=1) / tau
            rel[i] = float("-inf")
            cls = torch.multinomial(torch.softmax(rel, 0), anchors * negatives, replacement=True)
            sizes = torch.tensor([len(p) for p in pools], device=rep.device)
            start = torch.cumsum(sizes, 0) - sizes
            row = (torch.rand(anchors * negatives, device=rep.device) * sizes[cls]).long()
            neg = torch.cat(pools)[start[cls] + row].view(anchors, negatives, -1)  # concatenated pool of all classes
            keys = torch.cat([protos_t[i].detach().expand(anchors, 1, -1), neg], dim=1)  # (A, 1 + K, D)
        logits = F.cosine_similarity(a[:, None, :], keys, dim=2) / tau
        loss = loss + F.cross_entropy(logits, torch.zeros(anchors, dtype=torch.long, device=rep.device))
    return loss / len(protos)


def dense_ascl(loss_fn: ASCLoss, s_map, t_map, labels, tau, anchors=256):
    """ASCL, dense pattern: normalise the full student/teacher maps, gather each class by mask, then the TSC loss.

    ``s_map, t_map``: ``(B, D, *S)``; ``labels``: ``(B, *S)``. The loss arithmetic is ``loss_fn``'s (our ASCLoss).
    """
    C = loss_fn.num_classes
    s = F.normalize(s_map, dim=1).movedim(1, -1)
    t = F.normalize(t_map.detach(), dim=1).movedim(1, -1)
    onehot = F.one_hot(labels.clamp(min=0), C).movedim(-1, 1).float()  # (B, C, *S) as label_onehot does
    rows_s, rows_t, ys = [], [], []
    for c in range(C):
        m = onehot[:, c].bool()
        if not m.any():
            continue
        sc, tc = s[m], t[m]
        pick = torch.randint(len(sc), (anchors,), device=s.device)
        rows_s.append(sc[pick])
        rows_t.append(tc[pick])
        ys.append(torch.full((anchors,), c, dtype=torch.long, device=s.device))
    return loss_fn(torch.cat(rows_s), torch.cat(rows_t), torch.cat(ys), tau)


def _gather_rows(rep, idx):
    """Rows of ``rep (B, D, *S)`` at flat indices ``idx (...)`` into ``(B, *S)``: ``(..., D)`` without a full copy."""
    B, D = rep.shape[:2]
    hw = rep[0, 0].numel()
    flat = rep.reshape(B, D, hw)
    return flat[idx // hw, :, idx % hw]


def sampled_anco(rep, labels, valid, prob, tau, anchors=256, negatives=512, pool=512, strong_threshold=0.97, g=None):
    """Ours: indices first (``sample_per_class``), then only the sampled rows."""
    C = prob.shape[1]
    hard = valid & (prob.gather(1, labels.clamp(min=0)[:, None])[:, 0] < strong_threshold)
    a_idx, a_ok = sample_per_class(labels, hard, C, anchors, g)
    p_idx, p_ok = sample_per_class(labels, valid, C, pool, g)
    return anco_loss(_gather_rows(rep, a_idx), a_ok, _gather_rows(rep, p_idx).detach(), p_ok, tau, negatives, g)


def sampled_ascl(loss_fn: ASCLoss, s_map, t_map, labels, tau, anchors=256, g=None):
    """Ours: per-class indices, then gather, normalise and compare only those rows."""
    idx, ok = sample_per_class(labels, None, loss_fn.num_classes, anchors, g)
    keep = ok.nonzero()[:, 0]  # C-element index: the one tiny host step ASCL allows anyway
    idx, y = idx[keep].reshape(-1), keep.repeat_interleave(anchors)
    return loss_fn(_gather_rows(s_map, idx), _gather_rows(t_map, idx), y, tau)


def _time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn().backward()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def compare(size, batch=4, classes=4, dim=128, repeat=3, device="cpu") -> list[tuple[str, float]]:
    """Median forward+backward seconds of each loss, dense pattern vs indices first, on the same random inputs."""
    torch.manual_seed(0)
    dev, C, D = torch.device(device), classes, dim
    labels = torch.randint(0, C, (batch, *size), device=dev)
    valid = torch.rand(labels.shape, device=dev) > 0.2
    prob = torch.softmax(torch.randn(batch, C, *size, device=dev), 1)
    rep = torch.randn(batch, D, *size, device=dev, requires_grad=True)
    t_map = torch.randn(batch, D, *size, device=dev)
    ascl = ASCLoss(C, D, F.normalize(torch.randn(C, D), dim=1), queue_size=12288).to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    rows = [("anco dense", lambda: dense_anco(rep, labels, valid, prob, 0.5)),
            ("anco sampled", lambda: sampled_anco(rep, labels, valid, prob, 0.5, g=g)),
            ("ascl dense", lambda: dense_ascl(ascl, rep, t_map, labels, 0.1)),
            ("ascl sampled", lambda: sampled_ascl(ascl, rep, t_map, labels, 0.1, g=g))]
    return [(name, _time(fn, repeat)) for name, fn in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    for name, secs in compare(a.size, a.batch, a.classes, a.dim, a.repeat, a.device):
        print(f"{name:14s} {secs:8.4f} s (forward + backward, median of {a.repeat})")


if __name__ == "__main__":
    main()
