"""Adaptive supervised contrastive loss (ASCL) of ACTION++: targeted supervised contrast with a memory queue.

ACTION++ (You et al., MICCAI'23) adapts Targeted Supervised Contrastive learning (TSC; Li et al., CVPR'22): student
pixel embeddings are contrasted with teacher embeddings and a FIFO queue of past teacher embeddings, and are also
pulled towards fixed, uniformly spread class centres that are matched to the classes online by the Hungarian algorithm
on running class centroids (docs/method.md §4.5). The embeddings are the rows sampled by
``actionpp.sampling.sample_per_class`` (e.g. 256 labelled pixels per present class); no feature map is seen here.

Deviations from the official ``TSC``/``TSC_3d`` (docs/method.md §8.9), both deliberate:

* the queue starts empty (label -1) and empty entries are excluded from the logits, instead of random vectors acting
  as negatives for the first ``K / N`` steps;
* enqueueing wraps around for any batch size (no ``K % N == 0`` assert, which fails for 5 or 7 present classes); a
  batch larger than the queue keeps its last ``K`` rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.autograd.function import once_differentiable

from actionpp import distributed
from actionpp.config import ASCL_TARGETS as TARGETS

__all__ = ["ASCLoss", "hungarian_match", "fifo_slots"]


def hungarian_match(centroids: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Assign one centre to each class, maximising ``sum_c cos(mu_c, center_pi(c))``.

    Args:
        centroids: ``(C, D)`` running class centroids ``mu``.
        centers: ``(C, D)`` fixed class centres.

    Returns:
        ``pi``: ``(C,)`` int64 on ``centroids.device``, ``pi[c]`` the index of the centre assigned to class ``c``.

    Raises:
        ValueError: the shapes differ or are not 2-D.
    """
    if centroids.ndim != 2 or centroids.shape != centers.shape:
        raise ValueError(f"centers: expected shape {tuple(centroids.shape)} (that of centroids), got "
                         f"{tuple(centers.shape)}")
    sim = F.normalize(centroids.detach().float(), dim=1) @ F.normalize(centers.detach().float(), dim=1).T
    return _assign(sim.cpu()).to(centroids.device)


def _assign(sim_cpu: torch.Tensor) -> torch.Tensor:
    rows, cols = linear_sum_assignment(sim_cpu.double().numpy(), maximize=True)
    pi = torch.empty(len(rows), dtype=torch.long)
    pi[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return pi


def _class_counts(bins: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float counts of ``bins`` values ``0..C-1`` (value ``C`` is a discard bin); unlike CUDA ``bincount``, no sync."""
    ones = torch.ones(bins.shape, dtype=torch.float32, device=bins.device)
    return torch.zeros(num_classes + 1, device=bins.device).index_add_(0, bins, ones)[:num_classes]


def fifo_slots(ptr: torch.Tensor, n: int, size: int) -> tuple[torch.Tensor, int]:
    """Ring-buffer positions for writing ``n`` rows at ``ptr`` into a buffer of ``size`` rows, computed on the device.

    Row ``i`` of the batch goes to ``(ptr + i) % size``. When ``n > size`` only the last ``size`` rows are written
    (they land on distinct slots), so the buffer ends as if the rows had been written one by one.

    Args:
        ptr: ``(1,)`` int64 tensor, the next slot (stays on the device: no synchronisation).
        n: rows in the batch.
        size: rows in the buffer.

    Returns:
        ``(slots, first)``: write ``batch[first:]`` to ``buffer[slots]``; the new pointer is ``(ptr + n) % size``.
    """
    first = max(0, n - size)
    slots = (ptr + torch.arange(first, n, device=ptr.device)) % size
    return slots, first



_EMPTY = -1e30
"""Logit bias of an empty queue slot: exp() of it is 0, and it stays finite in float32 and bfloat16."""

_CHUNK_ELEMENTS = 1 << 20
"""Logits per block of :class:`QueueLogSumExp` (4 MiB in fp32): small enough to stay in cache, large enough for GEMM."""


class QueueLogSumExp(torch.autograd.Function):
    r"""``lse_i = log sum_k exp(x_i . m_k + b_k)`` for ``x`` (N, D) and a constant memory ``m`` (K, D), bias ``b`` (K,).

    ``QueueLogSumExp.apply(x, memory, bias, bound=None, dtype=None)``. The ``N x K`` logits are ASCL's largest
    tensor (1280 x 12288 with the paper's constants), so they are never stored: the memory is swept in blocks of
    ``_CHUNK_ELEMENTS / N`` rows, and because ``m`` is constant the gradient is known during the same sweep. With a
    shift ``r_i``:

    * block ``z = [x, 1] [m_B, b_B - r]^T`` (bias and shift ride along as an extra column of the one product);
    * ``[a_i, s_i] += sum_k e^{z_ik} [m_k, 1]`` (one more product; its last column is the row sum);
    * ``lse_i = r_i + log s_i`` and ``d lse_i / d x_i = a_i / s_i`` (``(N, D)``, kept for the backward pass).

    The shift is ``bound`` when given (a float with ``x_i . m_k + b_k <= bound`` for all ``i, k``: ``||x_i||`` for unit
    memory rows and ``b <= 0``) and at most 40, so that no term can underflow (``z >= -2 bound``); otherwise a running
    row maximum with rescaling (the streaming log-sum-exp of online softmax). Two products of the full size and no
    ``N x K`` tensor in memory (benchmarks/README.md).

    ``dtype=torch.bfloat16`` runs both products and the exponentials in bfloat16 (float32 accumulation inside each
    product and across blocks; no float32 copy of a block): 5-10x faster products where the hardware has bf16 matrix
    units. With unit-norm rows at ``||x|| = 1 / 0.07`` and the paper's sizes (N = 1280, K = 12288, D = 128) the
    relative error against float64 is 2e-4 in ``lse`` and 5e-3 in the gradient (1e-3 and 1e-2 for a 500-entry, 32-d
    memory; tested). The shift is rounded to bfloat16 first so that it cancels exactly.

    An empty slot has a hugely negative ``b_k`` (``_EMPTY``): it adds nothing (its row of ``[m_k, 1]`` is zeroed;
    with a fixed shift its logit is set to a harmless value first, because an exponential that underflows costs ~35x
    a normal one on an AVX2 EPYC and a filling queue would pay that on every empty slot); an all-empty memory gives a
    finite, hugely negative ``lse`` and a zero gradient. Gradients flow to ``x`` only (not to ``m`` or ``b``); no double
    backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor, bound: float | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
        n, k = x.shape[0], memory.shape[0]
        dtype = dtype or x.dtype
        fixed = bound is not None and bound <= 40.0
        shift = float(torch.tensor(float(bound)).to(dtype)) if fixed else 0.0  # exactly representable in dtype
        live = (bias > _EMPTY / 2).to(memory.dtype)[:, None]  # 1 for a filled slot, 0 for an empty one (no host sync)
        b = bias.to(memory.dtype)
        memory = memory * live  # an empty slot's content never counts (its row of mem_one below is zero)
        if fixed:  # its logit becomes -shift, so that its exp does not underflow (an underflowing exp costs ~35x a
            b = b * live[:, 0]  # normal one on some CPUs: benchmarks/README.md); its term is dropped all the same
        x_aug = torch.cat([x, x.new_ones(n, 1)], dim=1).to(dtype)
        mem_aug = torch.cat([memory, (b - shift)[:, None]], dim=1).to(dtype)
        # [m_k, 1] for filled slots, zeros for empty ones: sum_k e_ik m_k and s_i
        mem_one = (torch.cat([memory, memory.new_ones(k, 1)], dim=1) * live).to(dtype)
        run_max = x.new_full((n, 1), shift if fixed else float("-inf"))
        acc = x.new_zeros(n, memory.shape[1] + 1)  # [a_i, s_i] in float32
        step = max(1, _CHUNK_ELEMENTS // max(n, 1))
        for j in range(0, k, step):
            e = x_aug @ mem_aug[j:j + step].T  # (N, block), in dtype
            if not fixed:  # rescale what was summed so far to the new row maximum
                new_max = torch.maximum(run_max, e.amax(dim=1, keepdim=True).to(run_max.dtype))
                acc.mul_((run_max - new_max).exp_())
                e.sub_(new_max.to(dtype))
                run_max = new_max
            e.exp_()
            acc.add_(e @ mem_one[j:j + step])
        total = acc[:, -1:].clamp(min=torch.finfo(acc.dtype).tiny)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(acc[:, :-1] / total)
        return (run_max + total.log()).squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (soft_mem,) = ctx.saved_tensors
        return soft_mem * grad[:, None], None, None, None, None


class ASCLoss(nn.Module):
    r"""Adaptive supervised contrastive loss (TSC-style) with a label queue and Hungarian-matched class centres.

    With ``s_i, t_i`` the L2-normalised student/teacher embeddings of anchor ``i`` (label ``y_i``), ``m_k`` the valid
    queue entries (label ``l_k != -1``), ``c_j`` the fixed centres and ``pi`` the Hungarian assignment:

    * logits ``z_i = [s_i.t_i | s_i.m_1 .. s_i.m_K | s_i.c_1 .. s_i.c_C] / tau``, ``log p_ij = z_ij - logsumexp_j z_i``;
    * ``P_i = {t_i} U {m_k : l_k = y_i}``, ``n_i = |P_i| + 1`` (the ``+1`` is the targeted centre);
    * ``L_cls = -(1/N) sum_i n_i^-1 sum_{j in P_i} log p_ij``;
    * ``L_tgt = -(1/N) sum_i n_i^-1 log p_{i, centre pi(y_i)}``;
    * ``L = L_cls + target_weight * L_tgt``.

    Before the loss, the centroids of the classes present in ``y`` move towards the batch:
    ``mu_c <- normalize(m mu_c + (1 - m) normalize(mean_{y_i = c} s_i))`` (detached), and ``pi`` is recomputed with
    scipy's ``linear_sum_assignment`` (one ``C x C`` device-to-host copy per call). After the loss, ``(t_i, y_i)`` are
    enqueued. Gradients reach the student embeddings only.

    Args:
        num_classes: ``C``.
        dim: embedding size ``D``.
        centers: ``(C, D)`` fixed class centres (normalised here), e.g. from ``actionpp.centers.uniform_centers``.
        queue_size: ``K`` (official 12288).
        centroid_momentum: ``m`` of the centroid update (official 0.9).
        target_weight: weight of the targeted term (official 0.1 in 2D, 0.2 in 3D).
        seed: seed of the random unit initial centroids.
        matmul_dtype: dtype of the two ``N x K x D`` queue products (:class:`QueueLogSumExp`); everything else is
            float32.
        targets: what the targeted term pulls towards (ablations; docs/method.md): ``"matched"`` (the paper: the
            centres, assigned by the Hungarian ``pi``), ``"unmatched"`` (the centres with ``pi = identity``) or
            ``"centroids"`` (the updated running centroids ``mu`` replace the centres in the logits, ``pi =
            identity``: learned prototypes without the uniformity prior).

    Attributes (buffers): ``queue (K, D)``, ``queue_labels (K,)`` (-1 = empty), ``ptr (1,)``, ``centroids (C, D)``,
    ``centers (C, D)``, and ``last_assignment (C,)`` (``pi`` of the last call; not saved in the state dict).

    Raises:
        ValueError: bad constructor arguments, or (in ``forward``) bad shapes, ``tau <= 0`` or labels outside
            ``[0, C)`` (then nothing is updated).
    """

    def __init__(self, num_classes: int, dim: int, centers: torch.Tensor, queue_size: int = 12288,
                 centroid_momentum: float = 0.9, target_weight: float = 0.1, seed: int = 0,
                 matmul_dtype: torch.dtype = torch.float32, targets: str = "matched") -> None:
        super().__init__()
        if targets not in TARGETS:
            raise ValueError(f"targets: expected one of {TARGETS}, got {targets!r}")
        self.targets = targets
        for name, v in (("num_classes", num_classes), ("dim", dim), ("queue_size", queue_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        centers = torch.as_tensor(centers, dtype=torch.float32)
        if tuple(centers.shape) != (num_classes, dim):
            raise ValueError(f"centers: expected shape ({num_classes}, {dim}), got {tuple(centers.shape)}")
        if not 0.0 <= centroid_momentum < 1.0:
            raise ValueError(f"centroid_momentum: expected a value in [0, 1), got {centroid_momentum}")
        if not target_weight >= 0.0:
            raise ValueError(f"target_weight: expected a value >= 0, got {target_weight}")
        self.num_classes, self.dim, self.queue_size = num_classes, dim, queue_size
        self.centroid_momentum, self.target_weight = float(centroid_momentum), float(target_weight)
        if matmul_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"matmul_dtype: expected torch.float32 or torch.bfloat16, got {matmul_dtype}")
        self.matmul_dtype = matmul_dtype
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_labels", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("centroids", F.normalize(torch.randn(num_classes, dim, generator=g), dim=1))
        self.register_buffer("centers", F.normalize(centers, dim=1))
        self.register_buffer("last_assignment", torch.arange(num_classes), persistent=False)

    def forward(self, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
        """Loss of ``N`` anchors, then update centroids (before) and queue (after).

        Args:
            s: ``(N, D)`` student embeddings (with grad).
            t: ``(N, D)`` teacher embeddings of the same pixels (detached here).
            y: ``(N,)`` int64 class labels in ``[0, C)``.
            tau: temperature, > 0.

        Returns:
            Scalar loss on ``s.device``.
        """
        self._check(s, t, y, tau)
        with torch.autocast(device_type=s.device.type, enabled=False):  # logsumexp over K + C + 1 columns: fp32
            s_hat = F.normalize(s.float(), dim=1)
            t_hat = F.normalize(t.detach().float(), dim=1)
            pi = self._update_centroids(s_hat.detach(), y)
            loss = self._loss(s_hat, t_hat, y, pi, tau)
        self._enqueue(t_hat, y)
        return loss

    @torch.no_grad()
    def _update_centroids(self, s_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Move the centroids of the classes in ``y`` towards the batch means; return the Hungarian ``pi`` (C,)."""
        C = self.num_classes
        bad = ((y < 0) | (y >= C)).any()
        y_safe = torch.where((y >= 0) & (y < C), y, C)  # out-of-range rows fall into a spare bin
        sums = torch.zeros(C + 1, self.dim, device=s_hat.device).index_add_(0, y_safe, s_hat)[:C]
        counts = _class_counts(y_safe, C)
        sums, counts = distributed.all_reduce_sum(sums), distributed.all_reduce_sum(counts)  # torchrun: global
        batch_mu = F.normalize(sums / counts.clamp(min=1)[:, None], dim=1)
        m = self.centroid_momentum
        moved = F.normalize(m * self.centroids + (1 - m) * batch_mu, dim=1)
        centroids = torch.where((counts > 0)[:, None], moved, self.centroids)
        sim = centroids @ self.centers.T  # unit rows: cosines
        host = torch.cat([sim.flatten(), bad.float()[None]]).cpu()  # the one device-to-host copy
        if host[-1] > 0:
            raise ValueError(f"y: expected labels in [0, {C}), got values outside")
        self.centroids.copy_(centroids)
        if self.targets != "matched":  # ablations: class c keeps target c (the Hungarian step is skipped)
            pi = torch.arange(C, device=s_hat.device)
            self.last_assignment.copy_(pi)
            return pi
        pi = _assign(host[:-1].view(C, C)).to(s_hat.device)
        self.last_assignment.copy_(pi)
        return pi

    def _loss(self, s_hat: torch.Tensor, t_hat: torch.Tensor, y: torch.Tensor, pi: torch.Tensor,
              tau: float) -> torch.Tensor:
        """``L_cls + target_weight * L_tgt`` with one ``(N, K)`` product and one ``(N, K)`` logsumexp.

        The queue positives are summed in closed form: ``sum_{k: l_k = y_i} (z_ik - log Z_i) =
        s_i . S_{y_i} / tau - n_{y_i} log Z_i`` with ``S_c`` the sum and ``n_c`` the count of class-``c`` queue
        entries, so no ``(N, K)`` mask is formed. Empty entries get a bias of ``_EMPTY`` (finite in float32 and
        bfloat16, unlike -inf, so an all-empty queue keeps finite gradients): they vanish from ``Z_i``.
        """
        C = self.num_classes
        queue = self.queue
        valid = self.queue_labels >= 0
        s_tau = s_hat / tau
        bias = torch.zeros(self.queue_size, device=s_hat.device).masked_fill(~valid, _EMPTY)
        z_t = (s_tau * t_hat).sum(dim=1)  # (N,)
        bound = 1.0 / tau if isinstance(tau, (int, float)) else None  # |s_tau . q_k| <= 1 / tau: unit rows
        lse_q = QueueLogSumExp.apply(s_tau, queue, bias, bound, self.matmul_dtype)  # (N,)
        targets = self.centroids if self.targets == "centroids" else self.centers  # (C, D) unit rows, no grad
        z_c = s_tau @ targets.T  # (N, C)
        log_z = torch.logsumexp(torch.stack([z_t, lse_q, torch.logsumexp(z_c, dim=1)], 1), 1)

        bins = torch.where(valid, self.queue_labels, C)
        q_sum = torch.zeros(C + 1, self.dim, device=s_hat.device).index_add_(0, bins, queue)[:C]  # (C, D)
        q_cnt = _class_counts(bins, C)  # (C,)
        n_same = q_cnt[y]
        n_i = n_same + 2.0  # |P_i| + 1 = (1 + n_same) + 1
        log_p_pos = (z_t - log_z) + (s_tau * q_sum[y]).sum(dim=1) - n_same * log_z
        l_cls = -(log_p_pos / n_i).mean()
        l_tgt = -((z_c.gather(1, pi[y][:, None])[:, 0] - log_z) / n_i).mean()
        return l_cls + self.target_weight * l_tgt

    @torch.no_grad()
    def _enqueue(self, t_hat: torch.Tensor, y: torch.Tensor) -> None:
        t_hat, y = distributed.gather_rows(t_hat, y)  # torchrun: every rank's keys, so all queues stay equal
        slots, first = fifo_slots(self.ptr, t_hat.shape[0], self.queue_size)
        self.queue[slots] = t_hat[first:].to(self.queue.dtype)
        self.queue_labels[slots] = y[first:]
        self.ptr.copy_((self.ptr + t_hat.shape[0]) % self.queue_size)

    def _check(self, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, tau: float) -> None:
        if s.ndim != 2 or s.shape[1] != self.dim or s.shape[0] < 1:
            raise ValueError(f"s: expected shape (N, {self.dim}) with N >= 1, got {tuple(s.shape)}")
        if t.shape != s.shape:
            raise ValueError(f"t: expected shape {tuple(s.shape)} (that of s), got {tuple(t.shape)}")
        if y.dtype != torch.long or tuple(y.shape) != (s.shape[0],):
            raise ValueError(f"y: expected an int64 tensor of shape ({s.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        if isinstance(tau, (int, float)) and not tau > 0:
            raise ValueError(f"tau: expected a positive number, got {tau!r}")
