"""sample_per_class: per-class flat pixel indices drawn on the device."""

import pytest
import torch

import actionpp.sampling as sampling
from actionpp.sampling import sample_per_class


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_indices_have_the_right_class_and_mask():
    g = _gen()
    labels = torch.randint(0, 3, (2, 16, 16), generator=g)
    mask = torch.rand(labels.shape, generator=g) > 0.5
    idx, present = sample_per_class(labels, mask, num_classes=3, k=64, generator=g)
    assert idx.shape == (3, 64) and idx.dtype == torch.long
    assert present.tolist() == [True, True, True]
    flat_l, flat_m = labels.reshape(-1), mask.reshape(-1)
    for c in range(3):
        assert (flat_l[idx[c]] == c).all()
        assert flat_m[idx[c]].all()


def test_absent_class_and_ignore_values():
    labels = torch.tensor([0, 0, 2, -1, 255, 2, 0])
    mask = torch.tensor([True, False, True, True, True, True, True])
    idx, present = sample_per_class(labels, mask, num_classes=4, k=50, generator=_gen())
    assert present.tolist() == [True, False, True, False]
    assert (idx[1] == 0).all() and (idx[3] == 0).all()  # absent rows: valid index 0
    assert set(idx[0].tolist()) == {0, 6}  # position 1 is masked out
    assert set(idx[2].tolist()) == {2, 5}  # -1 and 255 are never drawn


def test_uniform_over_admissible_positions():
    labels = torch.tensor([1, 0, 1, 1, 0, 1])
    idx, _ = sample_per_class(labels, None, 2, 8000, _gen(1))
    counts = torch.bincount(idx[1], minlength=6)[[0, 2, 3, 5]].float()
    assert (counts / 8000 - 0.25).abs().max() < 0.03


def _reference(labels, mask, num_classes, k, generator):
    """The definition: rank floor(u * n_c) among the admissible pixels of class c in scan order."""
    u = torch.rand((num_classes, k), generator=generator, dtype=torch.float64)
    flat = labels.reshape(-1)
    ok = torch.ones_like(flat, dtype=torch.bool) if mask is None else mask.reshape(-1)
    idx = torch.zeros(num_classes, k, dtype=torch.long)
    for c in range(num_classes):
        where = torch.nonzero((flat == c) & ok).flatten()
        if len(where):
            idx[c] = where[(u[c] * len(where)).long().clamp(max=len(where) - 1)]
    return idx


@pytest.mark.parametrize("block", [64, 5, 1])
def test_matches_the_definition_and_is_deterministic(block, monkeypatch):
    monkeypatch.setattr(sampling, "_BLOCK", block)  # ragged last block for 5; one pixel per block for 1
    labels = torch.randint(-1, 6, (3, 7, 9, 11), generator=_gen(2))
    labels[labels == 4] = 0  # class 4 absent
    mask = torch.rand(labels.shape, generator=_gen(3)) > 0.4
    for m in (None, mask):
        a, present = sample_per_class(labels, m, 6, 33, _gen(7))
        b, _ = sample_per_class(labels, m, 6, 33, _gen(7))
        ref = _reference(labels, m, 6, 33, _gen(7))
        assert torch.equal(a, b) and torch.equal(a, ref)
        assert present.tolist() == [True, True, True, True, False, True]


def test_empty_input():
    idx, present = sample_per_class(torch.zeros(0, dtype=torch.long), None, 2, 4, _gen())
    assert idx.shape == (2, 4) and not present.any()


@pytest.mark.parametrize("kwargs, name", [
    (dict(labels=torch.zeros(4), mask=None, num_classes=2, k=1), "labels"),
    (dict(labels=torch.zeros(4, dtype=torch.long), mask=torch.ones(3, dtype=torch.bool), num_classes=2, k=1), "mask"),
    (dict(labels=torch.zeros(4, dtype=torch.long), mask=torch.ones(4), num_classes=2, k=1), "mask"),
    (dict(labels=torch.zeros(4, dtype=torch.long), mask=None, num_classes=0, k=1), "num_classes"),
    (dict(labels=torch.zeros(4, dtype=torch.long), mask=None, num_classes=2, k=0), "k"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample_per_class(**kwargs)
