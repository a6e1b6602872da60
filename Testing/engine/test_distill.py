"""Relational distillation for pre-training (global and local) and its heads."""

import pytest
import torch
import torch.nn.functional as F

from actionpp.losses.distill import (GlobalHead, LocalHead, LocalRelationalDistill, Predictor, RelationalDistill,
                                     relational_kl)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_empty_memory_gives_zero_with_finite_gradient():
    d = RelationalDistill(dim=8, memory_size=5)
    q = torch.randn(3, 8, requires_grad=True)
    loss = d(q, torch.randn(3, 8), 0.1, 0.01)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() == 0
    assert d.filled.tolist() == [True, True, True, False, False]


def test_kl_zero_for_identical_views_and_positive_otherwise():
    g = _gen(1)
    d = RelationalDistill(dim=8, memory_size=7)
    d(torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), 0.1, 0.1)  # 4 of 7 slots filled
    x = torch.randn(4, 8, generator=g)
    assert d(x, x.clone(), 0.2, 0.2).abs().item() < 1e-6
    q = torch.randn(4, 8, generator=g, requires_grad=True)
    loss = d(q, torch.randn(4, 8, generator=g), 0.2, 0.2)
    assert loss.item() > 1e-3
    loss.backward()
    assert q.grad.abs().sum() > 0
    assert d(x, x.clone(), 0.2, 0.05).item() > 1e-3  # same vectors, sharper teacher: not zero


def test_kl_matches_batchmean_over_filled_entries():
    g = _gen(2)
    d = RelationalDistill(dim=6, memory_size=10)
    d(torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g), 0.1, 0.1)
    mem = F.normalize(d.memory[:3], dim=1)
    q, k = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    log_ps = (F.normalize(q, dim=1) @ mem.T / 0.1).log_softmax(1)
    log_pt = (F.normalize(k, dim=1) @ mem.T / 0.04).log_softmax(1)
    expected = F.kl_div(log_ps, log_pt, log_target=True, reduction="batchmean")
    assert torch.allclose(d(q, k, 0.1, 0.04), expected, atol=1e-5)


def test_teacher_side_is_detached():
    d = RelationalDistill(dim=4, memory_size=4)
    d(torch.randn(4, 4), torch.randn(4, 4), 0.1, 0.1)
    k = torch.randn(2, 4, requires_grad=True)
    d(torch.randn(2, 4, requires_grad=True), k, 0.1, 0.1).backward()
    assert k.grad is None


def test_memory_wraps_around():
    d = RelationalDistill(dim=3, memory_size=5)
    ks = [torch.randn(n, 3) for n in (2, 2, 2)]
    for k in ks:
        d(torch.randn(len(k), 3), k, 0.1, 0.1)
    rows = F.normalize(torch.cat(ks), dim=1)
    assert int(d.ptr) == 1
    assert torch.allclose(d.memory, torch.cat([rows[5:], rows[1:5]]))
    big = torch.randn(12, 3)  # more than the memory: keep the last 5
    d(torch.randn(12, 3), big, 0.1, 0.1)
    assert int(d.ptr) == (1 + 12) % 5
    assert torch.allclose(d.memory.roll(-3, 0), F.normalize(big[7:], dim=1))


def test_local_distill_compares_each_window_with_the_same_window_only():
    g = _gen(3)
    B, W, D, K = 2, 4, 5, 6
    d = LocalRelationalDistill(windows=W, dim=D, memory_size=K)
    d(torch.randn(3, W, D, generator=g), torch.randn(3, W, D, generator=g), 0.1, 0.1)
    mem = F.normalize(d.memory, dim=-1)
    q, k = torch.randn(B, W, D, generator=g), torch.randn(B, W, D, generator=g)
    per = torch.stack([relational_kl(F.normalize(q[:, w], dim=-1) @ mem[:, w].T,
                                     F.normalize(k[:, w], dim=-1) @ mem[:, w].T, d.filled, 0.1, 0.05)
                       for w in range(W)], 1)  # (B, W)
    assert torch.allclose(d(q, k, 0.1, 0.05), per.mean(), atol=1e-6)
    assert int(d.ptr) == 5 and d.filled.sum() == 5


@pytest.mark.parametrize("shape, window, stride, count", [((2, 3, 32, 40), 16, 8, 3 * 4),
                                                          ((2, 2, 20, 20, 12), 8, 4, 4 * 4 * 2)])
def test_local_head_windows_2d_3d(shape, window, stride, count):
    d = len(shape) - 2
    head = LocalHead(num_classes=shape[1], window=window, stride=stride, pool=2, spatial_dims=d)
    x = torch.randn(*shape, generator=_gen(4))
    out = head(x)
    assert out.shape == (shape[0], count, shape[1] * 2 ** d)
    assert head.num_windows(shape[2:]) == count
    # window 1 (second along the last axis) of image 1 is exactly the head applied to that crop
    crop = x[1:2, ..., stride:stride + window] if d == 2 else x[1:2, :, :window, :window, stride:stride + window]
    crop = crop[..., :window, :] if d == 2 else crop
    assert torch.allclose(out[1, 1], head.encode(crop).reshape(-1), atol=1e-6)
    perm = torch.tensor([1, 0])
    assert torch.allclose(head(x[perm]), out[perm], atol=1e-6)


def test_global_head_and_predictor_shapes():
    for x in (torch.randn(3, 16, 5, 5), torch.randn(3, 16, 4, 4, 2)):
        assert GlobalHead(16, 32)(x).shape == (3, 32)
    assert Predictor(32)(torch.randn(3, 32)).shape == (3, 32)
    head = LocalHead(2, 8, 4, 2, 2, predictor=True)
    assert head(torch.randn(1, 2, 16, 16)).shape == (1, 9, 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="memory_size"):
        RelationalDistill(4, memory_size=0)
    with pytest.raises(ValueError, match="tau_t"):
        RelationalDistill(4)(torch.randn(2, 4), torch.randn(2, 4), 0.1, 0.0)
    with pytest.raises(ValueError, match="k:"):
        RelationalDistill(4)(torch.randn(2, 4), torch.randn(3, 4), 0.1, 0.1)
    with pytest.raises(ValueError, match="q:"):
        LocalRelationalDistill(3, 4)(torch.randn(2, 2, 4), torch.randn(2, 2, 4), 0.1, 0.1)
    with pytest.raises(ValueError, match="spatial_dims"):
        LocalHead(2, 8, 4, 2, spatial_dims=1)
    with pytest.raises(ValueError, match="window"):
        LocalHead(2, 8, 4, 2)(torch.randn(1, 2, 6, 16))
