"""ASCL (TSC-style adaptive supervised contrast): Hungarian matching, queue, targeted term."""

import pytest
import torch
import torch.nn.functional as F

from actionpp.losses.ascl import ASCLoss, fifo_slots, hungarian_match


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _centers(C, D):
    return torch.eye(D)[:C].clone()  # orthonormal: easy to reason about


def _reference(m: ASCLoss, s, t, y, tau, pi):
    """Direct transcription of the formula with explicit masks (queue state before the call)."""
    s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    valid = m.queue_labels >= 0
    q, ql = m.queue[valid], m.queue_labels[valid]
    logits = torch.cat([(s * t).sum(1, keepdim=True), s @ q.T, s @ m.centers.T], 1) / tau
    logp = logits.log_softmax(1)
    pos = torch.cat([torch.ones(len(y), 1, dtype=torch.bool), ql[None] == y[:, None],
                     torch.zeros(len(y), m.num_classes, dtype=torch.bool)], 1)
    n = pos.sum(1) + 1.0
    l_cls = -((logp * pos).sum(1) / n).mean()
    l_tgt = -(logp[torch.arange(len(y)), 1 + len(q) + pi[y]] / n).mean()
    return l_cls + m.target_weight * l_tgt


def test_hungarian_recovers_a_permutation():
    g = _gen(1)
    centers = F.normalize(torch.randn(6, 16, generator=g), dim=1)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    centroids = centers[perm] + 0.05 * torch.randn(6, 16, generator=g)
    assert torch.equal(hungarian_match(centroids, centers), perm)


def test_matches_reference_formula_with_a_partly_filled_queue():
    g = _gen(2)
    m = ASCLoss(3, 8, F.normalize(torch.randn(3, 8, generator=g), dim=1), queue_size=20, target_weight=0.3)
    for n in (6, 5):  # 11 of 20 slots filled
        m(torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g), 0.2)
    s, t, y = torch.randn(9, 8, generator=g), torch.randn(9, 8, generator=g), torch.randint(0, 3, (9,), generator=g)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    ref = ASCLoss(3, 8, m.centers, queue_size=20, target_weight=0.3)
    ref.load_state_dict(state)
    loss = m(s, t, y, 0.2)
    assert torch.allclose(loss, _reference(ref, s, t, y, 0.2, m.last_assignment), atol=1e-5)


def test_empty_queue_entries_are_excluded():
    g = _gen(3)
    s, t, y = torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
    a = ASCLoss(4, 8, _centers(4, 8), queue_size=16)
    b = ASCLoss(4, 8, _centers(4, 8), queue_size=16)
    b.queue.copy_(s[:1].repeat(16, 1) * 5)  # garbage that would dominate the logits if it counted
    la, lb = a(s, t, y, 0.1), b(s, t, y, 0.1)
    assert torch.allclose(la, lb)
    # with nothing queued: columns [t_i | centres] only, n_i = 2
    s_hat, t_hat = F.normalize(s, dim=1), F.normalize(t, dim=1)
    logits = torch.cat([(s_hat * t_hat).sum(1, keepdim=True), s_hat @ a.centers.T], 1) / 0.1
    logp = logits.log_softmax(1)
    pi = a.last_assignment
    expected = -(logp[:, 0] / 2).mean() - 0.1 * (logp[torch.arange(8), 1 + pi[y]] / 2).mean()
    assert torch.allclose(la, expected, atol=1e-5)


def test_separated_aligned_embeddings_give_lower_loss_than_mixed():
    C, D, N = 4, 8, 64
    g = _gen(4)
    y = torch.arange(C).repeat_interleave(N // C)
    aligned, mixed = ASCLoss(C, D, _centers(C, D), queue_size=256), ASCLoss(C, D, _centers(C, D), queue_size=256)
    for _ in range(8):  # centroids converge, queue fills
        emb = _centers(C, D)[y] + 0.05 * torch.randn(N, D, generator=g)
        la = aligned(emb, emb + 0.05 * torch.randn(N, D, generator=g), y, 0.1)
        rnd = torch.randn(N, D, generator=g)
        lm = mixed(rnd, rnd + 0.05 * torch.randn(N, D, generator=g), y, 0.1)
    assert torch.equal(aligned.last_assignment, torch.arange(C))
    assert la < lm - 1.0


def test_queue_wraps_around_for_any_batch_size():
    K, D = 10, 4
    m = ASCLoss(2, D, _centers(2, D), queue_size=K)
    written = []
    for i, n in enumerate((3, 4, 7)):  # 14 rows: wraps once, none divides 10
        t = torch.full((n, D), float(i + 1)) + torch.arange(n, dtype=torch.float)[:, None] / 10
        m(torch.randn(n, D), t, torch.full((n,), i % 2), 0.1)
        written += list(F.normalize(t, dim=1))
    assert int(m.ptr) == 14 % K
    expected = written[10:] + written[4:10]  # slots 0..3 overwritten by rows 10..13
    assert torch.allclose(m.queue, torch.stack(expected))
    assert m.queue_labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]  # rows 10-13, 4-6, 7-9
    t = torch.randn(25, D)  # N > K: the last K rows are kept, the pointer advances by N
    m(torch.randn(25, D), t, torch.ones(25, dtype=torch.long), 0.1)
    assert int(m.ptr) == (14 + 25) % K
    slots, first = fifo_slots(torch.tensor([4]), 25, K)
    assert first == 15 and sorted(slots.tolist()) == list(range(K))
    assert torch.allclose(m.queue[slots], F.normalize(t[15:], dim=1))


@pytest.mark.parametrize("C", [5, 7])
def test_five_and_seven_classes_with_the_official_queue(C):
    D = 16
    m = ASCLoss(C, D, F.normalize(torch.randn(C, D, generator=_gen(5)), dim=1))  # K = 12288
    y = torch.arange(C).repeat_interleave(256)  # 256 * C does not divide 12288
    for _ in range(3):
        loss = m(torch.randn(len(y), D), torch.randn(len(y), D), y, 0.07)
        assert torch.isfinite(loss)
    assert int(m.ptr) == 3 * 256 * C % 12288


def test_gradient_flows_to_student_only():
    s = torch.randn(12, 8, requires_grad=True)
    t = torch.randn(12, 8, requires_grad=True)
    m = ASCLoss(3, 8, _centers(3, 8), queue_size=32)
    y = torch.arange(3).repeat(4)
    m(torch.randn(12, 8), torch.randn(12, 8), y, 0.1)  # queue partly filled
    m(s, t, y, 0.1).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_centroid_update_follows_the_formula():
    m = ASCLoss(2, 4, _centers(2, 4), queue_size=8, centroid_momentum=0.9)
    before = m.centroids.clone()
    s = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    m(s, s, torch.tensor([0, 0]), 0.1)  # class 1 absent: its centroid stays
    batch = F.normalize(F.normalize(s, dim=1).mean(0), dim=0)
    assert torch.allclose(m.centroids[0], F.normalize(0.9 * before[0] + 0.1 * batch, dim=0))
    assert torch.equal(m.centroids[1], before[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="centers"):
        ASCLoss(3, 8, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="queue_size"):
        ASCLoss(2, 8, _centers(2, 8), queue_size=0)
    m = ASCLoss(2, 8, _centers(2, 8), queue_size=8)
    with pytest.raises(ValueError, match="t:"):
        m(torch.randn(4, 8), torch.randn(3, 8), torch.zeros(4, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="tau"):
        m(torch.randn(4, 8), torch.randn(4, 8), torch.zeros(4, dtype=torch.long), 0.0)
    before = m.centroids.clone()
    with pytest.raises(ValueError, match="y"):
        m(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([0, 1, 2, 0]), 0.1)
    assert torch.equal(m.centroids, before) and int(m.ptr) == 0  # nothing changed
    with pytest.raises(ValueError, match="centers"):
        hungarian_match(torch.zeros(3, 4), torch.zeros(3, 5))


@pytest.mark.parametrize("bound", [None, 3.0, 50.0])  # running maximum / fixed shift / too large: running maximum
@pytest.mark.parametrize("chunk", [1 << 20, 14, 35])  # one block / blocks of 2 rows / of 5, the last ragged
def test_queue_logsumexp_matches_autograd_value_and_gradient(chunk, bound, monkeypatch):
    from actionpp.losses import ascl
    from actionpp.losses.ascl import QueueLogSumExp

    monkeypatch.setattr(ascl, "_CHUNK_ELEMENTS", chunk)  # block rows: chunk // N, N = 7

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1) * 3.0
    x.requires_grad_()
    mem = torch.nn.functional.normalize(torch.randn(11, 5, generator=g, dtype=torch.float64), dim=1)
    bias = torch.zeros(11, dtype=torch.float64)
    bias[3] = torch.finfo(torch.float64).min  # an empty queue slot
    w = torch.randn(7, generator=g, dtype=torch.float64)
    ours = QueueLogSumExp.apply(x, mem, bias, bound)
    (gx,) = torch.autograd.grad((ours * w).sum(), x)
    ref = torch.logsumexp(x @ mem.T + bias, dim=1)
    (rx,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(ours, ref) and torch.allclose(gx, rx)
    assert torch.autograd.gradcheck(lambda t: QueueLogSumExp.apply(t, mem, torch.zeros(11, dtype=torch.float64),
                                                                   bound), (x,))


@pytest.mark.parametrize("bound", [None, 2.0])
def test_queue_logsumexp_all_empty_memory_is_finite_with_zero_gradient(bound):
    from actionpp.losses.ascl import QueueLogSumExp

    x = torch.nn.functional.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    mem = torch.zeros(6, 3)
    bias = torch.full((6,), torch.finfo(torch.float32).min)
    lse = QueueLogSumExp.apply(x, mem, bias, bound)
    lse.sum().backward()
    assert torch.isfinite(lse).all() and (lse < -80).all()  # exp(lse) vanishes next to any real logit
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_queue_logsumexp_bfloat16_products_stay_close_to_float64():
    from actionpp.losses.ascl import QueueLogSumExp

    g = torch.Generator().manual_seed(1)
    tau = 0.07  # the smallest temperature of the schedule: the largest logits
    x = (torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1) / tau).requires_grad_()
    mem = torch.nn.functional.normalize(torch.randn(500, 32, generator=g), dim=1)
    bias = torch.zeros(500)
    bias[::7] = -1e30  # empty slots
    lse = QueueLogSumExp.apply(x, mem, bias, 1 / tau, torch.bfloat16)
    (gx,) = torch.autograd.grad(lse.sum(), x)
    x64 = x.detach().double().requires_grad_()
    ref = torch.logsumexp(x64 @ mem.double().T + bias.double(), dim=1)
    (rx,) = torch.autograd.grad(ref.sum(), x64)
    assert lse.dtype == torch.float32 and gx.dtype == torch.float32
    assert ((lse.double() - ref).abs() / ref.abs()).max() < 3e-3  # 2e-4 at the paper's N, K, D
    assert ((gx.double() - rx).norm(dim=1) / rx.norm(dim=1)).max() < 2e-2


def test_ascl_bfloat16_runs_from_an_empty_queue_and_rejects_other_dtypes():
    m = ASCLoss(3, 8, _centers(3, 8), queue_size=16, matmul_dtype=torch.bfloat16)
    s = torch.randn(6, 8, requires_grad=True)
    for _ in range(3):  # empty, partly filled, full and wrapped
        loss = m(s, torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2]), 0.1)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="matmul_dtype"):
        ASCLoss(3, 8, _centers(3, 8), matmul_dtype=torch.float16)


@pytest.mark.parametrize("targets", ["unmatched", "centroids"])
def test_ablation_targets_follow_their_definition(targets):
    """'unmatched' pulls class c to centre c; 'centroids' pulls it to its own running centroid (ablations)."""
    g = _gen(7)
    perm = torch.tensor([2, 0, 1])
    centers = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    m = ASCLoss(3, 8, centers, queue_size=12, target_weight=0.5, targets=targets)
    m.centroids.copy_(F.normalize(centers[perm] + 0.01 * torch.randn(3, 8, generator=g), dim=1))
    s, t, y = torch.randn(9, 8, generator=g), torch.randn(9, 8, generator=g), torch.tensor([0, 1, 2] * 3)
    ref = ASCLoss(3, 8, centers, queue_size=12, target_weight=0.5)
    ref.load_state_dict({k: v.clone() for k, v in m.state_dict().items()})
    loss = m(s, t, y, 0.2)
    assert torch.equal(m.last_assignment, torch.arange(3))  # no Hungarian step (matched would give perm)
    if targets == "centroids":
        ref.centers.copy_(m.centroids)  # the updated centroids take the centres' place in the logits
    expected = _reference(ref, s, t, y, 0.2, torch.arange(3))
    assert torch.allclose(loss, expected, atol=1e-5)
    matched = ASCLoss(3, 8, centers, queue_size=12, target_weight=0.5)
    matched.load_state_dict({k: v.clone() for k, v in ref.state_dict().items()})
    matched.centers.copy_(centers)
    matched(s, t, y, 0.2)
    assert torch.equal(matched.last_assignment, perm)  # the paper's setting would have matched differently
    with pytest.raises(ValueError, match="targets"):
        ASCLoss(3, 8, centers, targets="learned")
