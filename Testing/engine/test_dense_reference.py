"""The dense reference losses (benchmarks/dense_reference.py, the official access pattern) give the values of the
sampled losses the engine uses, where both are defined on the same inputs."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from actionpp.losses.ascl import ASCLoss

_spec = importlib.util.spec_from_file_location(
    "dense_reference", Path(__file__).resolve().parents[2] / "benchmarks" / "dense_reference.py")
dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dense)


def _maps(C, D=8, size=(12, 12), noise=0.0, seed=0):
    """Labels in vertical bands; every pixel of class c embeds near the class vector v_c (+ noise)."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(size[1]) * C // size[1]).expand(2, *size).clone()
    v = torch.randn(C, D, generator=g)
    rep = v[labels].movedim(-1, 1) + noise * torch.randn(2, D, *size, generator=g)  # (B, D, *S)
    prob = torch.full((2, C, *size), 1.0 / C)  # every valid pixel is a hard anchor
    return rep, labels, prob


def test_anco_dense_equals_sampled_when_draws_cannot_matter():
    # two classes, class-constant embeddings: every anchor, prototype and negative is fixed whatever is drawn
    rep, labels, prob = _maps(2)
    valid = torch.ones_like(labels, dtype=torch.bool)
    for tau in (0.1, 0.5, 1.0):
        d = dense.dense_anco(rep, labels, valid, prob, tau, anchors=16, negatives=32)
        s = dense.sampled_anco(rep, labels, valid, prob, tau, anchors=16, negatives=32, pool=16,
                               g=torch.Generator().manual_seed(1))
        assert torch.allclose(d, s, atol=1e-5), (tau, d, s)


def test_anco_dense_and_sampled_agree_in_expectation_with_three_noisy_classes():
    rep, labels, prob = _maps(3, noise=0.5, seed=2)
    valid = torch.ones_like(labels, dtype=torch.bool)
    torch.manual_seed(0)
    d = torch.stack([dense.dense_anco(rep, labels, valid, prob, 0.3, anchors=8, negatives=8) for _ in range(300)])
    g = torch.Generator().manual_seed(0)
    # the pool holds every valid pixel of a class (48 per class here), as the dense prototype does
    s = torch.stack([dense.sampled_anco(rep, labels, valid, prob, 0.3, anchors=8, negatives=8, pool=48, g=g)
                     for _ in range(300)])
    se = (d.var() / 300 + s.var() / 300).sqrt()
    assert abs(d.mean() - s.mean()) < 4 * se
    assert s.std() > 0  # the comparison is not between constants


@pytest.mark.parametrize("C", [2, 4])
def test_ascl_dense_equals_sampled_on_class_constant_embeddings(C):
    rep, labels, _ = _maps(C, D=8)
    t_map = rep.roll(1, dims=1) + 0.1  # teacher differs from student, still class-constant
    centers = F.normalize(torch.randn(C, 8, generator=torch.Generator().manual_seed(3)), dim=1)
    losses = {}
    for kind in ("dense", "sampled"):
        fn = ASCLoss(C, 8, centers, queue_size=64)
        vals = []
        for step in range(3):  # the queue fills from the first step on: its positives and negatives count too
            if kind == "dense":
                vals.append(dense.dense_ascl(fn, rep, t_map, labels, 0.2, anchors=8))
            else:
                vals.append(dense.sampled_ascl(fn, rep, t_map, labels, 0.2, anchors=8,
                                               g=torch.Generator().manual_seed(step)))
        losses[kind] = torch.stack(vals)
    assert torch.allclose(losses["dense"], losses["sampled"], atol=1e-5)
    assert losses["dense"][0] != losses["dense"][2]  # the queue changed the value: it took part
