"""Contrastive pre-training of ACTION/ACTION++: ISD-style relational distillation, global and local.

ISD (Tejankar et al., ICCV'21, "ISD: Self-supervised learning by iterative similarity distillation") compares a
student and a teacher through their similarity distributions over a memory of past teacher vectors and minimises
``KL(p_teacher || p_student)``. ACTION applies it to a pooled latent vector (global) and to window vectors of the logit
map (local) (docs/method.md §3). What differs from the official ``ISD`` module, and why (docs/method.md §8):

* the memory starts empty and unfilled slots are masked out of both distributions (the official memory starts with
  random vectors); writes wrap around for any batch size (no ``K % B == 0`` assert, §8.9);
* the teacher distribution is a detached target (§8.11: the official target is not detached);
* the local loss is computed per window position as intended (§8.7): the student vector of window ``w`` of image ``b``
  is compared with the memory's vectors of the same window ``w``; no reshape mixes batch, window and channel axes.

Heads: :class:`GlobalHead` (pool + two linear layers), :class:`Predictor` (the student's extra two linear layers) and
:class:`LocalHead` (windows of the logit map -> pooled -> 1x1 convs -> one vector per window), all for 2D and 3D.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from .ascl import fifo_slots

__all__ = ["relational_kl", "RelationalDistill", "LocalRelationalDistill", "GlobalHead", "Predictor", "LocalHead"]


def relational_kl(sim_s: torch.Tensor, sim_t: torch.Tensor, filled: torch.Tensor, tau_s: float,
                  tau_t: float) -> torch.Tensor:
    """Per-row ``KL(softmax(sim_t / tau_t) || softmax(sim_s / tau_s))`` over the filled memory slots.

    Args:
        sim_s: ``(..., K)`` student cosine similarities to the memory (with grad).
        sim_t: ``(..., K)`` teacher cosine similarities to the memory (treated as constant).
        filled: ``(K,)`` bool, slots that hold a vector; the others take no part in either softmax.
        tau_s: student temperature.
        tau_t: teacher temperature.

    Returns:
        ``(...)`` KL divergence per row; exactly 0 (with a graph) for every row when no slot is filled.
    """
    fill = torch.finfo(sim_s.dtype).min  # finite: an all-empty memory gives a finite softmax, hence no NaN gradient
    log_ps = torch.log_softmax((sim_s / tau_s).masked_fill(~filled, fill), dim=-1)
    log_pt = torch.log_softmax((sim_t.detach() / tau_t).masked_fill(~filled, fill), dim=-1)
    zero = torch.zeros((), dtype=log_ps.dtype, device=log_ps.device)
    log_ps, log_pt = torch.where(filled, log_ps, zero), torch.where(filled, log_pt, zero)
    return (log_pt.exp() * torch.where(filled, log_pt - log_ps, zero)).sum(dim=-1)


class _Memory(nn.Module):
    """FIFO memory of ``K`` teacher entries of shape ``entry``; ``filled`` marks slots written at least once."""

    def __init__(self, size: int, entry: tuple[int, ...]) -> None:
        super().__init__()
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"memory_size: expected a positive integer, got {size!r}")
        for v in entry:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"dim: expected positive integer sizes, got {entry}")
        self.size = size
        self.register_buffer("memory", torch.zeros(size, *entry))
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, x: torch.Tensor) -> None:
        """Write the ``B`` entries ``x`` (``(B, *entry)``) at the pointer, wrapping around."""
        slots, first = fifo_slots(self.ptr, x.shape[0], self.size)
        self.memory[slots] = x[first:].to(self.memory.dtype)
        self.filled[slots] = True
        self.ptr.copy_((self.ptr + x.shape[0]) % self.size)


def _check_temps(tau_s: float, tau_t: float) -> None:
    for name, v in (("tau_s", tau_s), ("tau_t", tau_t)):
        if isinstance(v, (int, float)) and not v > 0:
            raise ValueError(f"{name}: expected a positive number, got {v!r}")


class RelationalDistill(_Memory):
    r"""Global relational distillation: ``KL(p_t || p_s)`` over a FIFO memory of teacher vectors.

    ``p_s = softmax(q^ M^T / tau_s)``, ``p_t = softmax(k^ M^T / tau_t)``, with ``^`` the L2 normalisation and ``M`` the
    filled memory rows (normalised teacher vectors of earlier calls); ``L = (1/B) sum_b KL(p_t[b] || p_s[b])``
    ("batchmean"). After the loss, ``k^`` is enqueued. With an empty memory the loss is 0 (with a graph).

    Args:
        dim: vector size ``D``.
        memory_size: ``K`` (official 36); any size, independent of the batch size.

    Shapes: ``q, k``: ``(B, D)``; result: scalar.
    """

    def __init__(self, dim: int, memory_size: int = 36) -> None:
        super().__init__(memory_size, (dim,))
        self.dim = dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, tau_s: float, tau_t: float) -> torch.Tensor:
        """Loss for student vectors ``q`` and teacher vectors ``k`` (both ``(B, D)``), then enqueue ``k``."""
        if q.ndim != 2 or q.shape[1] != self.dim or q.shape[0] < 1:
            raise ValueError(f"q: expected shape (B, {self.dim}), got {tuple(q.shape)}")
        if k.shape != q.shape:
            raise ValueError(f"k: expected shape {tuple(q.shape)} (that of q), got {tuple(k.shape)}")
        _check_temps(tau_s, tau_t)
        q_hat = F.normalize(q.float(), dim=-1)
        k_hat = F.normalize(k.detach().float(), dim=-1)
        m_hat = F.normalize(self.memory, dim=-1)  # a new tensor: the enqueue below cannot touch what autograd saved
        filled = self.filled.clone()
        loss = relational_kl(q_hat @ m_hat.T, k_hat @ m_hat.T, filled, tau_s, tau_t).mean()
        self.enqueue(k_hat)
        return loss


class LocalRelationalDistill(_Memory):
    r"""Local relational distillation: one KL per window position, against the memory's vectors of that window.

    The memory holds ``K`` entries, each the ``(W, D)`` window vectors of one teacher image. For image ``b`` and window
    ``w``: ``p_s[b, w] = softmax_k(q^[b, w] . M^[k, w] / tau_s)``, ``p_t`` likewise from ``k^`` and ``tau_t``, and
    ``L = mean_{b, w} KL(p_t[b, w] || p_s[b, w])``. After the loss, each image's ``k^[b]`` is one new entry.

    Args:
        windows: ``W``, windows per image (``LocalHead.num_windows``).
        dim: vector size ``D`` per window (``C * pool**spatial_dims`` for :class:`LocalHead`).
        memory_size: ``K`` (official 36).

    Shapes: ``q, k``: ``(B, W, D)``; result: scalar.
    """

    def __init__(self, windows: int, dim: int, memory_size: int = 36) -> None:
        super().__init__(memory_size, (windows, dim))
        self.windows, self.dim = windows, dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, tau_s: float, tau_t: float) -> torch.Tensor:
        """Loss for student/teacher window vectors ``q``, ``k`` (both ``(B, W, D)``), then enqueue ``k``."""
        if q.ndim != 3 or tuple(q.shape[1:]) != (self.windows, self.dim) or q.shape[0] < 1:
            raise ValueError(f"q: expected shape (B, {self.windows}, {self.dim}), got {tuple(q.shape)}")
        if k.shape != q.shape:
            raise ValueError(f"k: expected shape {tuple(q.shape)} (that of q), got {tuple(k.shape)}")
        _check_temps(tau_s, tau_t)
        q_hat = F.normalize(q.float(), dim=-1)
        k_hat = F.normalize(k.detach().float(), dim=-1)
        m_hat = F.normalize(self.memory, dim=-1)
        sim_s = torch.einsum("bwd,kwd->bwk", q_hat, m_hat)  # (B, W, K)
        sim_t = torch.einsum("bwd,kwd->bwk", k_hat, m_hat)
        loss = relational_kl(sim_s, sim_t, self.filled.clone(), tau_s, tau_t).mean()
        self.enqueue(k_hat)
        return loss


class GlobalHead(nn.Module):
    """Latent head: global average pool over every spatial axis -> Linear(in, in) -> Linear(in, dim), no non-linearity.

    Args:
        in_ch: channels of the latent feature map.
        dim: output vector size.

    Shapes: ``(B, in_ch, *S)`` (any number of spatial axes) -> ``(B, dim)``.
    """

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_ch, in_ch)
        self.fc2 = nn.Linear(in_ch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x.flatten(2).mean(dim=2)))


class Predictor(nn.Module):
    """The student's extra predictor: Linear(dim, dim) -> Linear(dim, dim). Shapes: ``(..., dim) -> (..., dim)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class LocalHead(nn.Module):
    """Output head: cut the logit map into windows and encode each as one vector.

    Windows of size ``window`` with step ``stride`` along every spatial axis (all full windows, like
    ``Tensor.unfold``), each adaptive-average-pooled to ``pool**d`` cells, then 1x1 conv ``C -> 2C`` -> 1x1 conv
    ``2C -> C`` (no non-linearity, as the official head), optionally followed by the student predictor (two 1x1 convs
    ``C -> C``), and flattened channel-major.

    Args:
        num_classes: channels ``C`` of the logit map.
        window: window size (official 64 in 2D, 20 in 3D).
        stride: window step (official 32 / 10).
        pool: pooled cells per axis (official 8 / 4).
        spatial_dims: 2 or 3.
        predictor: add the student's two 1x1-conv predictor.

    Shapes: ``(B, C, *S)`` -> ``(B, W, C * pool**spatial_dims)`` with ``W = prod_i ((S_i - window) // stride + 1)``,
    windows in row-major order of their positions.
    """

    def __init__(self, num_classes: int, window: int, stride: int, pool: int, spatial_dims: int = 2,
                 predictor: bool = False) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims!r}")
        for name, v in (("num_classes", num_classes), ("window", window), ("stride", stride), ("pool", pool)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.window, self.stride, self.pool_size, self.spatial_dims = window, stride, pool, spatial_dims
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = [Pool[Pool.ADAPTIVEAVG, spatial_dims](pool),
                                   conv(num_classes, 2 * num_classes, 1), conv(2 * num_classes, num_classes, 1)]
        if predictor:
            layers += [conv(num_classes, num_classes, 1), conv(num_classes, num_classes, 1)]
        self.encode = nn.Sequential(*layers)
        self.out_dim = num_classes * pool ** spatial_dims

    def num_windows(self, spatial: tuple[int, ...]) -> int:
        """Windows per image for a map of spatial size ``spatial``."""
        if len(spatial) != self.spatial_dims or any(s < self.window for s in spatial):
            raise ValueError(f"window: {self.window} does not fit a {self.spatial_dims}-D map of size {tuple(spatial)}")
        return math.prod((s - self.window) // self.stride + 1 for s in spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 + self.spatial_dims:
            raise ValueError(f"x: expected shape (B, C, {'D, ' if self.spatial_dims == 3 else ''}H, W), got "
                             f"{tuple(x.shape)}")
        B, C = x.shape[:2]
        W = self.num_windows(tuple(x.shape[2:]))
        d = self.spatial_dims
        for axis in range(2, 2 + d):
            x = x.unfold(axis, self.window, self.stride)  # (B, C, n_1, ..., n_d, w_1, ..., w_d) after the loop
        x = x.movedim(1, 1 + d)  # (B, n_1, ..., n_d, C, w_1, ..., w_d)
        x = x.reshape(B * W, C, *([self.window] * d))
        return self.encode(x).reshape(B, W, self.out_dim)
