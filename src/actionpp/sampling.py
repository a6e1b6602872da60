"""Per-class pixel sampling: choose *which* pixels a contrastive loss looks at before anything is embedded.

The official ACTION/ReCo losses normalise whole feature maps and gather every pixel of a class with boolean masks, then
use only a few hundred of them (docs/method.md §10). Here the indices are drawn first, from the label map alone, so the
representation head, the normalisation and the similarity products only ever see ``num_classes * k`` rows.
"""

from __future__ import annotations

import torch

__all__ = ["sample_per_class", "uniform"]

_GROUP_ELEMENTS = 1 << 24
"""Largest one-hot cumulative-count block (int32 elements) built at once by :func:`sample_per_class`."""


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

    Method (no sort, no host synchronisation): for a group of classes, ``cum[c, i]`` counts the admissible pixels of
    class ``c`` among positions ``0..i`` (an int32 cumulative sum of the one-hot rows); ``n_c = cum[c, -1]``. Draw
    ``r ~ U{0, ..., n_c - 1}`` as ``floor(u * n_c)``; the ``(r+1)``-th pixel of class ``c`` is the first position where
    ``cum[c, i] >= r + 1``, found by ``torch.searchsorted`` on the non-decreasing row. Classes are processed in groups
    of at most ``2**24`` one-hot elements, so memory stays ``O(N)`` for any class count. ``O(C N)`` time in all.

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
    device = labels.device
    flat = labels.reshape(-1)
    n = flat.numel()
    ok = (flat >= 0) & (flat < num_classes)
    if mask is not None:
        ok &= mask.reshape(-1)
    key = torch.where(ok, flat.long(), -1)  # -1: never drawn
    u = uniform((num_classes, k), generator, device, torch.float64)  # one draw for all classes, whatever the grouping
    if n == 0:
        return torch.zeros(num_classes, k, dtype=torch.long, device=device), torch.zeros(
            num_classes, dtype=torch.bool, device=device)
    idx, present = [], []
    group = max(1, _GROUP_ELEMENTS // n)
    for c0 in range(0, num_classes, group):
        classes = torch.arange(c0, min(c0 + group, num_classes), device=device)
        cum = torch.cumsum(key[None, :] == classes[:, None], dim=1, dtype=torch.int32)  # (G, N)
        counts = cum[:, -1:]  # (G, 1)
        r = (u[c0:c0 + len(classes)] * counts.to(u.dtype)).long()  # floor(u * n_c) in [0, n_c]
        r = torch.minimum(r, (counts.long() - 1).clamp(min=0))  # guard the rounding of u * n_c up to n_c
        pos = torch.searchsorted(cum, (r + 1).to(torch.int32))  # first i with cum >= r + 1
        ok_c = counts > 0
        idx.append(torch.where(ok_c, pos.clamp(max=n - 1), 0))
        present.append(ok_c[:, 0])
    return torch.cat(idx), torch.cat(present)
