"""Per-class pixel sampling: choose *which* pixels a contrastive loss looks at before anything is embedded.

The official ACTION/ReCo losses normalise whole feature maps and gather every pixel of a class with boolean masks, then
use only a few hundred of them (docs/method.md §10). Here the indices are drawn first, from the label map alone, so the
representation head, the normalisation and the similarity products only ever see ``num_classes * k`` rows.
"""

from __future__ import annotations

import torch

__all__ = ["sample_per_class", "uniform"]

_BLOCK = 64
"""Pixels per block of :func:`sample_per_class`'s two-level search."""


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform numbers in ``[0, 1)`` drawn from ``generator`` and placed on ``device``.

    The numbers are drawn on the generator's own device (a CPU generator draws on the CPU), then moved to ``device``:
    a host-to-device copy of ``prod(shape)`` numbers and never a device-to-host synchronisation. Pass a generator that
    lives on the data device to avoid even that copy. ``generator=None`` draws from the global RNG of ``device``.

    Args:
        shape: shape of the result.
        generator: source of randomness, or None.
        device: device of the result.
        dtype: floating dtype of the result (float64 is replaced by float32 on MPS, which lacks it).

    Returns:
        Tensor of ``shape`` on ``device``.
    """
    src = generator.device if generator is not None else torch.device(device)
    if src.type == "mps" and dtype == torch.float64:
        dtype = torch.float32
    u = torch.rand(shape, generator=generator, device=src, dtype=dtype)
    return u.to(device, non_blocking=True)


def sample_per_class(labels: torch.Tensor, mask: torch.Tensor | None, num_classes: int, k: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``k`` flat pixel indices per class, uniformly with replacement, without leaving the device.

    For every class ``c`` the indices are i.i.d. uniform over ``{i : labels[i] == c and mask[i]}``. Labels outside
    ``[0, num_classes)`` (an ignore value such as -1 or 255) are never drawn.

    Method (no sort, no host synchronisation): draw a rank ``r ~ U{0, ..., n_c - 1}`` as ``floor(u * n_c)`` and find
    the ``(r+1)``-th admissible pixel of class ``c`` in scan order, in two levels. The pixels are cut into blocks of
    ``_BLOCK``; one ``scatter_add`` counts each class per block, ``(nb, C)``; ``torch.searchsorted`` on the cumulative
    block counts finds the block holding rank ``r``, and a cumulative count over that block's ``_BLOCK`` labels finds
    the pixel. ``O(N)`` work for all classes together plus ``O(C k _BLOCK)``, and ``O(N / _BLOCK * C)`` memory.

    Args:
        labels: integer label map of any shape (``N`` elements once flattened, e.g. ``(N,)`` or ``(B, *S)``).
        mask: bool tensor of the same shape (True = may be drawn), or None for all pixels.
        num_classes: number of classes ``C``.
        k: samples per class.
        generator: torch.Generator for the uniform draws (see :func:`uniform`; a CPU generator is fine and costs a
            ``C * k`` host-to-device copy).

    Returns:
        ``(idx, present)``: ``idx`` is ``(C, k)`` int64 indices into ``labels.reshape(-1)``; ``present`` is ``(C,)``
        bool, False for classes with no admissible pixel, whose row of ``idx`` is all zeros (a valid index whenever
        ``N > 0``) and must be ignored. Both are on ``labels.device``.

    Raises:
        ValueError: bad ``labels``/``mask`` dtype or shape, or non-positive ``num_classes``/``k``.
    """
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels: expected an integer tensor, got {labels.dtype}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected a bool tensor, got {mask.dtype}")
        if mask.shape != labels.shape:
            raise ValueError(f"mask: expected shape {tuple(labels.shape)} (that of labels), got {tuple(mask.shape)}")
    device, C = labels.device, num_classes
    flat = labels.reshape(-1)
    n = flat.numel()
    u = uniform((C, k), generator, device, torch.float64)  # one draw for all classes
    if n == 0:
        return torch.zeros(C, k, dtype=torch.long, device=device), torch.zeros(C, dtype=torch.bool, device=device)
    ok = (flat >= 0) & (flat < C)
    if mask is not None:
        ok &= mask.reshape(-1)
    nb = -(-n // _BLOCK)
    key = torch.full((nb * _BLOCK,), C, dtype=torch.long, device=device)  # C: never drawn (also the padding)
    key[:n] = torch.where(ok, flat.long(), C)
    blocks = key.view(nb, _BLOCK)
    counts = torch.zeros(nb, C + 1, dtype=torch.int32, device=device)
    counts.scatter_add_(1, blocks, torch.ones(blocks.shape, dtype=torch.int32, device=device))
    per_block = counts[:, :C].T.contiguous()  # (C, nb)
    cum = torch.cumsum(per_block, dim=1, dtype=torch.int32)  # (C, nb) admissible pixels up to each block's end
    n_c = cum[:, -1:]  # (C, 1)
    r = (u * n_c.to(u.dtype)).long()  # floor(u * n_c) in [0, n_c]
    r = torch.minimum(r, (n_c.long() - 1).clamp(min=0))  # guard the rounding of u * n_c up to n_c
    blk = torch.searchsorted(cum, (r + 1).to(torch.int32)).clamp_(max=nb - 1)  # (C, k) block holding rank r
    rank = r - (cum.gather(1, blk) - per_block.gather(1, blk)).long()  # rank inside that block
    hits = blocks[blk] == torch.arange(C, device=device)[:, None, None]  # (C, k, _BLOCK)
    pos = (torch.cumsum(hits, dim=2, dtype=torch.int32) > rank[..., None]).to(torch.uint8).argmax(dim=2)
    present = n_c[:, 0] > 0
    idx = torch.where(present[:, None], (blk * _BLOCK + pos).clamp_(max=n - 1), 0)
    return idx, present
