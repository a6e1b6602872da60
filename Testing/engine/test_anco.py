"""AnCo (ReCo-style anatomical contrast) on sampled embeddings."""

import math

import pytest
import torch
import torch.nn.functional as F

from actionpp.losses.anco import AnCoLoss, anco_loss


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _clustered(C, A, P, D, noise, seed=0):
    g = _gen(seed)
    centres = F.normalize(torch.randn(C, D, generator=g), dim=1) * 3
    anchors = centres[:, None] + noise * torch.randn(C, A, D, generator=g)
    pool = centres[:, None] + noise * torch.randn(C, P, D, generator=g)
    return anchors, pool


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("C", [2, 5])
def test_separated_classes_give_lower_loss_than_random(C, share):
    ok = torch.ones(C, dtype=torch.bool)
    a_sep, p_sep = _clustered(C, 32, 48, 16, noise=0.1)
    g = _gen(3)
    a_rnd, p_rnd = torch.randn(C, 32, 16, generator=g), torch.randn(C, 48, 16, generator=g)
    sep = anco_loss(a_sep, ok, p_sep, ok, 0.5, 64, _gen(), share)
    rnd = anco_loss(a_rnd, ok, p_rnd, ok, 0.5, 64, _gen(), share)
    assert torch.isfinite(sep) and sep < rnd - 0.5
    assert abs(rnd.item() - math.log(65)) < 0.3  # no structure: about log(1 + K)


@pytest.mark.parametrize("share", [True, False])
def test_known_value_two_classes_single_pool_row(share):
    # P = 1: the only negative of class c is the single pool row of the other class, so the loss is closed-form
    g = _gen(4)
    anchors, pool = torch.randn(2, 5, 8, generator=g), torch.randn(2, 1, 8, generator=g)
    ok = torch.ones(2, dtype=torch.bool)
    tau, K = 0.3, 7
    expected = 0.0
    for c in range(2):
        pos = F.cosine_similarity(anchors[c], pool[c], dim=1) / tau
        neg = F.cosine_similarity(anchors[c], pool[1 - c], dim=1) / tau
        expected += (torch.logaddexp(pos, neg + math.log(K)) - pos).mean() / 2
    assert torch.allclose(anco_loss(anchors, ok, pool, ok, tau, K, _gen(), share), expected, atol=1e-5)


def test_shared_and_per_anchor_negatives_have_the_same_expected_loss():
    # each anchor sees K i.i.d. negatives from the same distribution either way: the means over draws agree
    a, p = _clustered(3, 6, 10, 8, noise=0.8)
    ok = torch.ones(3, dtype=torch.bool)
    shared = torch.stack([anco_loss(a, ok, p, ok, 0.3, 4, _gen(s), True) for s in range(600)])
    per_anchor = torch.stack([anco_loss(a, ok, p, ok, 0.3, 4, _gen(s), False) for s in range(600)])
    se = (shared.var() / 600 + per_anchor.var() / 600).sqrt()
    assert abs(shared.mean() - per_anchor.mean()) < 4 * se
    assert shared.var() > per_anchor.var()  # sharing correlates the anchors of a class: a noisier batch estimate


@pytest.mark.parametrize("share", [True, False])
def test_gradient_reaches_anchors_not_pool(share):
    a, p = _clustered(3, 8, 8, 8, noise=0.5)
    a.requires_grad_(True)
    p.requires_grad_(True)
    ok = torch.ones(3, dtype=torch.bool)
    anco_loss(a, ok, p, ok, 0.5, 16, _gen(), share).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert p.grad is None


def test_fewer_than_two_present_classes_is_zero_with_graph():
    a, p = _clustered(3, 8, 8, 8, noise=0.5)
    a.requires_grad_(True)
    present = torch.tensor([False, True, False])
    loss = anco_loss(a, present, p, present, 0.5, 16, _gen())
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() == 0


@pytest.mark.parametrize("share", [True, False])
def test_absent_class_is_never_a_negative(share):
    a, p = _clustered(3, 16, 16, 8, noise=0.3)
    pool_ok = torch.tensor([True, True, False])
    anchor_ok = pool_ok.clone()
    garbage = p.clone()
    garbage[2] = a[0, :16]  # if class 2 were sampled, class 0's negatives would equal its anchors
    l1 = anco_loss(a, anchor_ok, p, pool_ok, 0.5, 32, _gen(5), share)
    l2 = anco_loss(a, anchor_ok, garbage, pool_ok, 0.5, 32, _gen(5), share)
    assert torch.allclose(l1, l2)


def test_class_without_anchors_counts_in_denominator():
    a, p = _clustered(2, 8, 8, 8, noise=0.5)
    both = torch.ones(2, dtype=torch.bool)
    l_all = anco_loss(a, both, p, both, 0.5, 16, _gen(6))
    l0 = anco_loss(a, torch.tensor([True, False]), p, both, 0.5, 16, _gen(6))
    l1 = anco_loss(a, torch.tensor([False, True]), p, both, 0.5, 16, _gen(6))
    assert torch.allclose(l0 + l1, l_all)


def test_lower_temperature_sharpens_separated_classes():
    a, p = _clustered(4, 16, 16, 16, noise=0.05)
    ok = torch.ones(4, dtype=torch.bool)
    losses = [anco_loss(a, ok, p, ok, tau, 32, _gen()).item() for tau in (0.1, 0.5, 1.0)]
    assert losses[0] < losses[1] < losses[2]


def test_module_and_generator_reproducibility():
    a, p = _clustered(3, 8, 8, 8, noise=1.0)
    ok = torch.ones(3, dtype=torch.bool)
    m = AnCoLoss(num_negatives=16)
    assert torch.equal(m(a, ok, p, ok, 0.5, _gen(1)), m(a, ok, p, ok, 0.5, _gen(1)))


@pytest.mark.parametrize("change, name", [
    (dict(anchors=torch.zeros(2, 4)), "anchors"),
    (dict(pool=torch.zeros(3, 4, 8)), "pool"),
    (dict(anchor_ok=torch.ones(2)), "anchor_ok"),
    (dict(pool_ok=torch.ones(3, dtype=torch.bool)), "pool_ok"),
    (dict(tau=0.0), "tau"),
    (dict(num_negatives=0), "num_negatives"),
])
def test_bad_arguments(change, name):
    args = dict(anchors=torch.zeros(2, 4, 8), anchor_ok=torch.ones(2, dtype=torch.bool), pool=torch.zeros(2, 4, 8),
                pool_ok=torch.ones(2, dtype=torch.bool), tau=0.5, num_negatives=4)
    args.update(change)
    with pytest.raises(ValueError, match=name):
        anco_loss(**args)


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_negative_classes_follow_the_class_relation_distribution(tau):
    """Empirical negative-class frequencies against q_c(c') = softmax_{c' != c, present}(cos(p_c, p_c') / tau)."""
    from actionpp.losses.anco import negative_columns

    g = _gen(11)
    proto = F.normalize(torch.randn(5, 6, generator=g), dim=1)
    proto[1] = F.normalize(proto[0] + 0.3 * proto[1], dim=0)  # class 1 close to class 0: a likely negative of 0
    ok = torch.tensor([True, True, True, False, True])        # class 3 absent: never a negative
    P, n = 7, 40_000
    cols = negative_columns(proto, ok, P, n, tau, _gen(12))
    cls, row = cols // P, cols % P
    for c in range(5):
        logits = (proto @ proto[c]) / tau
        allowed = ok.clone()
        allowed[c] = False
        q = torch.softmax(logits.masked_fill(~allowed, float("-inf")), 0)
        freq = torch.bincount(cls[c], minlength=5).double() / n
        se = (q * (1 - q) / n).sqrt().double()
        assert torch.all((freq - q.double()).abs() <= 4 * se + 1e-12), (c, freq, q)
        assert freq[c] == 0 and freq[3] == 0
        uniform = allowed.double() / allowed.sum()
        if tau == 0.2 and c == 0:  # the check can tell the class relation from uniform class sampling
            assert ((freq - uniform).abs() / (4 * se.clamp(min=1e-3))).max() > 1
    rows = torch.bincount(row.flatten(), minlength=P).double() / row.numel()  # uniform row inside the class
    assert (rows - 1 / P).abs().max() < 4 * math.sqrt((1 / P) * (1 - 1 / P) / row.numel())
