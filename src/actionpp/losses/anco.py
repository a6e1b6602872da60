"""Anatomical contrast (AnCo): a ReCo-style pixel contrastive loss on *sampled* embeddings.

ACTION/ACTION++ (You et al., IPMI'23 / MICCAI'23) adopt ReCo (Liu et al., ICLR'22, "Bootstrapping semantic
segmentation with regional contrast"): hard anchors of class ``c`` are pulled towards the class prototype and pushed
from negatives whose classes are drawn according to how similar their prototypes are to ``c``'s (docs/method.md §4.4).

Unlike the official ``compute_reco_loss`` this function never sees a feature map. The caller samples, per class, ``A``
hard-anchor pixels and ``P`` valid pixels (``actionpp.sampling.sample_per_class``) and embeds only those; the ``P``
pool rows estimate the prototype and serve as the negative pool. The cost is then ``O(C A C P D)`` for one matrix
product, independent of the image size, with no host synchronisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling import uniform

__all__ = ["anco_loss", "AnCoLoss", "negative_columns"]


def anco_loss(anchors: torch.Tensor, anchor_ok: torch.Tensor, pool: torch.Tensor, pool_ok: torch.Tensor, tau: float,
              num_negatives: int, generator: torch.Generator | None = None,
              share_negatives: bool = True) -> torch.Tensor:
    r"""ReCo/AnCo loss over per-class sampled anchor and pool embeddings.

    With ``p_c`` the mean of the (detached) pool rows of class ``c`` and ``cos`` the cosine similarity:

    * class relation over the other present classes:
      ``q_c(c') = softmax_{c' != c, pool_ok[c']}(cos(p_c, p_c') / tau)``;
    * draw ``c'_1..c'_K ~ q_c`` and one pool row ``n_j`` uniformly from class ``c'_j`` (``K = num_negatives``):
      once per class, shared by its anchors (``share_negatives``, default), or afresh for every anchor (ReCo and
      the official code). Each anchor sees ``K`` i.i.d. draws from the same distribution either way, so the expected
      loss and gradient are the same; sharing correlates the anchors of a class and costs ``C K`` draws and one
      ``(C, A, D) x (C, D, K)`` product instead of ``C A K`` draws and a ``(C, A, C P)`` product plus a gather
      (about 5x less time for the loss with the paper's constants, benchmarks/README.md);
    * ``l_c = mean_a CE([cos(a, p_c), cos(a, n_1), ..., cos(a, n_K)] / tau, target 0)``;
    * ``L = sum_{c : anchor_ok[c] and pool_ok[c]} l_c / |{c : pool_ok[c]}|``, and ``L = 0`` when fewer than two classes
      are present (a zero that keeps the autograd graph).

    Classes without hard anchors are skipped but counted in the denominator, as in ReCo. Gradients reach ``anchors``
    only; ``pool`` is treated as constant. The ``(C, A, K, D)`` negative tensor is never formed: with per-anchor
    negatives all anchor-pool cosines are one ``(C, A, D) x (D, C P)`` product from which the sampled columns are
    gathered.

    Args:
        anchors: ``(C, A, D)`` student embeddings at hard pixels of each class (rows of absent classes are ignored but
            must be finite).
        anchor_ok: ``(C,)`` bool, class ``c`` has hard anchors.
        pool: ``(C, P, D)`` embeddings of valid pixels of each class (prototype estimate and negative pool).
        pool_ok: ``(C,)`` bool, class ``c`` has valid pixels (is present).
        tau: temperature of both the logits and the class-relation softmax, > 0.
        num_negatives: ``K``, negatives per anchor.
        generator: torch.Generator for the negative draws (``2 C K`` uniforms, ``2 C A K`` per anchor; a CPU generator
            costs a host-to-device copy of them, a generator on the data device none). None uses the global RNG of the
            data device.
        share_negatives: one negative set per class (True) or per anchor (False).

    Returns:
        Scalar loss tensor on ``anchors.device``.

    Raises:
        ValueError: inconsistent shapes or dtypes, ``tau <= 0`` or ``num_negatives < 1``.
    """
    _check(anchors, anchor_ok, pool, pool_ok, tau, num_negatives)
    with torch.autocast(device_type=anchors.device.type, enabled=False):  # small tensors: compute in fp32
        return _anco(anchors.float(), anchor_ok, pool.detach().float(), pool_ok, tau, num_negatives, generator,
                     share_negatives)


def _anco(anchors, anchor_ok, pool, pool_ok, tau, num_negatives, generator, share_negatives) -> torch.Tensor:
    """:func:`anco_loss` after validation, on fp32 inputs with ``pool`` already detached."""
    C, A, _ = anchors.shape
    P = pool.shape[1]
    K = num_negatives

    a_hat = F.normalize(anchors, dim=-1)  # (C, A, D)
    proto_hat = F.normalize(pool.mean(dim=1), dim=-1)  # (C, D), detached
    pool_hat = F.normalize(pool, dim=-1).flatten(0, 1)  # (C P, D)

    G = 1 if share_negatives else A
    cols = negative_columns(proto_hat, pool_ok, P, G * K, tau, generator).view(C, G, K)

    if share_negatives:
        neg = torch.bmm(a_hat, pool_hat[cols[:, 0]].transpose(1, 2))  # (C, A, D) x (C, D, K) -> (C, A, K)
    else:
        neg = (a_hat @ pool_hat.T).gather(2, cols)  # (C, A, C P) -> (C, A, K)
    pos = (a_hat * proto_hat[:, None, :]).sum(dim=-1, keepdim=True)  # (C, A, 1)
    logits = torch.cat([pos, neg], dim=-1) / tau
    ce = (torch.logsumexp(logits, dim=-1) - logits[..., 0]).mean(dim=1)  # (C,)

    used = anchor_ok & pool_ok
    n_present = pool_ok.sum()
    total = torch.where(used, ce, torch.zeros_like(ce)).sum()
    return torch.where(n_present >= 2, total / n_present.clamp(min=1), total * 0)


def negative_columns(proto_hat: torch.Tensor, pool_ok: torch.Tensor, P: int, n: int, tau: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw ``n`` negatives per class: flat pool rows ``c' P + j`` with ``c' ~ q_c`` and ``j ~ U{0..P-1}``.

    ``q_c(c') = softmax_{c' != c, pool_ok[c']}(proto_hat_c . proto_hat_c' / tau)`` (the class relation; rows of a
    class with no other present class are unused). Inverse-CDF sampling from ``2 C n`` uniforms.

    Args:
        proto_hat: ``(C, D)`` unit prototypes.
        pool_ok: ``(C,)`` bool, class present.
        P: pool rows per class.
        n: draws per class.
        tau: temperature of the class relation.
        generator: see :func:`anco_loss`.

    Returns:
        ``(C, n)`` int64 column indices into the ``(C P)`` flattened pool.
    """
    C, device = proto_hat.shape[0], proto_hat.device
    rel = proto_hat @ proto_hat.T / tau  # (C, C)
    allowed = pool_ok[None, :] & ~torch.eye(C, dtype=torch.bool, device=device)
    rel = rel.masked_fill(~allowed, float("-inf"))
    rel = torch.where(allowed.any(dim=1, keepdim=True), rel, torch.zeros_like(rel))  # rows without options: unused
    cdf = torch.softmax(rel, dim=1).cumsum(dim=1)  # (C, C)
    u = uniform((2, C, n), generator, device, cdf.dtype)
    neg_cls = torch.searchsorted(cdf.contiguous(), (u[0] * cdf[:, -1:]).contiguous(), right=True)  # (C, n)
    last_ok = (C - 1) - torch.flip(allowed, dims=[1]).to(torch.uint8).argmax(dim=1, keepdim=True)  # rounding guard
    neg_cls = torch.minimum(neg_cls, last_ok)
    neg_row = (u[1] * P).long().clamp(max=P - 1)
    return neg_cls * P + neg_row


class AnCoLoss(nn.Module):
    """Module form of :func:`anco_loss`; the temperature is passed per call (it follows a schedule).

    Args:
        num_negatives: negatives per anchor (official: 512).
        share_negatives: one negative set per class (True) or per anchor (False, official).
    """

    def __init__(self, num_negatives: int = 512, share_negatives: bool = True) -> None:
        super().__init__()
        if not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"num_negatives: expected a positive integer, got {num_negatives!r}")
        self.num_negatives, self.share_negatives = num_negatives, share_negatives

    def forward(self, anchors: torch.Tensor, anchor_ok: torch.Tensor, pool: torch.Tensor, pool_ok: torch.Tensor,
                tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """See :func:`anco_loss` (shapes ``(C, A, D)``, ``(C,)``, ``(C, P, D)``, ``(C,)``)."""
        return anco_loss(anchors, anchor_ok, pool, pool_ok, tau, self.num_negatives, generator, self.share_negatives)


def _check(anchors, anchor_ok, pool, pool_ok, tau, num_negatives) -> None:
    if anchors.ndim != 3:
        raise ValueError(f"anchors: expected shape (C, A, D), got {tuple(anchors.shape)}")
    C, _, D = anchors.shape
    if pool.ndim != 3 or pool.shape[0] != C or pool.shape[2] != D:
        raise ValueError(f"pool: expected shape ({C}, P, {D}) to match anchors, got {tuple(pool.shape)}")
    if pool.shape[1] < 1 or anchors.shape[1] < 1:
        raise ValueError(f"anchors/pool: expected at least one row per class, got {tuple(anchors.shape)} and "
                         f"{tuple(pool.shape)}")
    for name, t in (("anchor_ok", anchor_ok), ("pool_ok", pool_ok)):
        if t.dtype != torch.bool or tuple(t.shape) != (C,):
            raise ValueError(f"{name}: expected a bool tensor of shape ({C},), got {t.dtype} {tuple(t.shape)}")
    if isinstance(tau, (int, float)) and not tau > 0:
        raise ValueError(f"tau: expected a positive number, got {tau!r}")
    if not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives: expected a positive integer, got {num_negatives!r}")
