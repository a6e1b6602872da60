r"""CutMix and ClassMix inside the unlabeled batch (method.md §4.2 step 2).

Sample ``i`` is mixed with its *partner* ``(i + 1) mod B``. A boolean mask ``M`` of shape ``(B, *S)`` marks the pixels
that come from the partner; :func:`apply_mix` applies the same mask to the image, the teacher pseudo-label and the
teacher confidence, so the three stay aligned:

.. math::
    \text{out}_i = M_i \odot x_{(i+1) \bmod B} + (1 - M_i) \odot x_i

Masks are sampled first (from a ``torch.Generator``; small parameter tensors are drawn on the generator's device and
then moved to the data's device) and applied deterministically afterwards, so a mixed batch is a pure function of the
generator state. With ``B == 1`` the partner is the sample itself and mixing is a no-op (as with the official 3D setting,
method.md §8.11).

One implementation covers 2D (``S = (H, W)``) and 3D (``S = (D, H, W)``).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["cutmix_mask", "classmix_classes", "classmix_mask", "apply_mix"]


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator, got {type(generator).__name__}")


def _uniform_int(u: torch.Tensor, low: torch.Tensor | int, high: torch.Tensor | int) -> torch.Tensor:
    """Integers uniform in ``[low, high]`` (inclusive) from uniforms ``u`` in [0, 1)."""
    low_t = torch.as_tensor(low, device=u.device)
    high_t = torch.as_tensor(high, device=u.device)
    span = (high_t - low_t + 1).to(u.dtype)
    return (low_t + torch.floor(u * span).long()).minimum(high_t)


def cutmix_mask(
    batch: int,
    spatial_shape: Sequence[int],
    generator: torch.Generator,
    device: torch.device | str | None = None,
    z_extent: int | None = None,
) -> torch.Tensor:
    r"""Per-sample CutMix boxes as a boolean mask (True: the pixel comes from the partner).

    In-plane (the last two axes, ``H x W``), as the official / ReCo ``generate_cutout_mask``: a rectangle of area about
    ``HW/2`` with width :math:`w \sim \mathcal{U}\{\lfloor W/2\rfloor + 1, \dots, W - 1\}` (the official
    ``randint`` excludes ``W``; ``W`` itself only when ``W <= 2``), height :math:`h = \mathrm{round}(HW / (2w))`
    (clipped to ``[1, H]``) and a uniform position. In 3D the same rectangle extends through ``z_extent`` slices at a
    uniform z offset (default ``max(1, D // 2)``; the official 3D CutMix uses 20 of 80 slices).

    Args:
        batch: B, >= 1.
        spatial_shape: ``(H, W)`` or ``(D, H, W)``.
        generator: source of randomness (any device; parameters are drawn there, the mask is built on ``device``).
        device: device of the returned mask (default: the generator's device).
        z_extent: 3D only: number of slices of the box, in ``[1, D]``.

    Returns:
        ``(B, *S)`` bool mask.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    _check_generator(generator)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected a positive integer, got {batch!r}")
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) not in (2, 3) or any(s < 1 for s in shape):
        raise ValueError(f"spatial_shape: expected 2 or 3 positive sizes, got {list(spatial_shape)}")
    if z_extent is not None and (len(shape) != 3 or not 1 <= int(z_extent) <= shape[0]):
        raise ValueError(f"z_extent: expected an integer in [1, D] for a 3D shape {shape}, got {z_extent!r}")
    device = torch.device(device) if device is not None else generator.device

    h_size, w_size = shape[-2], shape[-1]
    u = torch.rand(batch, 5, generator=generator, device=generator.device, dtype=torch.float64)
    w_low = min(w_size // 2 + 1, w_size)
    w_high = max(w_low, w_size - 1)
    w = _uniform_int(u[:, 0], w_low, w_high)
    h = torch.round(h_size * w_size / (2.0 * w.double())).long().clamp(1, h_size)
    x0 = _uniform_int(u[:, 1], 0, w_size - w)
    y0 = _uniform_int(u[:, 2], 0, h_size - h)
    starts, sizes = [y0, x0], [h, w]
    if len(shape) == 3:
        dz = torch.full_like(w, max(1, shape[0] // 2) if z_extent is None else int(z_extent))
        z0 = _uniform_int(u[:, 3], 0, shape[0] - dz)
        starts, sizes = [z0, *starts], [dz, *sizes]

    mask = torch.ones((batch, *shape), dtype=torch.bool, device=device)
    for axis, (start, size) in enumerate(zip(starts, sizes)):
        view = [1] * (len(shape) + 1)
        view[axis + 1] = shape[axis]
        view_b = [batch] + [1] * len(shape)
        coord = torch.arange(shape[axis], device=device).view(view)
        s = start.to(device).view(view_b)
        e = (start + size).to(device).view(view_b)
        mask = mask & (coord >= s) & (coord < e)
    return mask


def classmix_classes(
    pseudo: torch.Tensor, generator: torch.Generator, num_classes: int | None = None
) -> torch.Tensor:
    """Sample the ClassMix classes: for each sample, half of the classes present in its *partner's* pseudo-label.

    For sample ``i`` with partner ``j = (i + 1) mod B`` and ``n_j`` classes present in ``pseudo[j]``, exactly
    ``ceil(n_j / 2)`` (>= 1) of them are chosen uniformly at random. (The official / ReCo ``generate_class_mask`` picks
    ``floor(n/2)``, which selects nothing when a single class is present.)

    Vectorised over the batch: presence is a scatter into ``(B, C)``, the random choice is the ``k`` smallest of
    per-class uniform keys. The keys are drawn on the generator's device, so the choice does not depend on the data's
    device.

    Args:
        pseudo: ``(B, *S)`` integer labels in ``[0, C)``.
        generator: source of randomness.
        num_classes: C. If None it is ``pseudo.max() + 1``, which costs one device-to-host sync; pass it in a
            training step.

    Returns:
        ``(B, C)`` bool: ``chosen[i, c]`` is True if class ``c`` of the partner of ``i`` is pasted onto ``i``.

    Raises:
        ValueError: naming the argument that is malformed.
    """
    _check_generator(generator)
    if not isinstance(pseudo, torch.Tensor) or pseudo.dtype.is_floating_point or pseudo.dtype == torch.bool:
        raise ValueError(f"pseudo: expected an integer label tensor, got {getattr(pseudo, 'dtype', type(pseudo))}")
    if pseudo.ndim < 2:
        raise ValueError(f"pseudo: expected shape (B, *S), got {tuple(pseudo.shape)}")
    if num_classes is None:
        num_classes = int(pseudo.max()) + 1  # one sync; documented
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    b = pseudo.shape[0]
    partner = torch.roll(pseudo, shifts=-1, dims=0).reshape(b, -1).long()
    present = torch.zeros(b, num_classes, dtype=torch.bool, device=pseudo.device)
    present.scatter_(1, partner, True)
    keys = torch.rand(b, num_classes, generator=generator, device=generator.device).to(pseudo.device)
    keys = keys.masked_fill(~present, 2.0)  # absent classes sort last
    rank = keys.argsort(dim=1).argsort(dim=1)
    k = (present.sum(dim=1, keepdim=True) + 1) // 2
    return present & (rank < k)


def classmix_mask(
    pseudo: torch.Tensor, generator: torch.Generator, num_classes: int | None = None
) -> torch.Tensor:
    """ClassMix mask: the partner's pixels whose pseudo-label is one of the classes chosen by :func:`classmix_classes`.

    ``mask[i] = isin(pseudo[(i+1) % B], chosen classes of i)``; applied with :func:`apply_mix` this pastes half of the
    partner's classes (image, pseudo-label and confidence) onto sample ``i``.

    Args:
        pseudo: ``(B, *S)`` integer teacher pseudo-labels.
        generator: source of randomness.
        num_classes: C (see :func:`classmix_classes`; None costs one sync).

    Returns:
        ``(B, *S)`` bool mask on ``pseudo.device``.
    """
    chosen = classmix_classes(pseudo, generator, num_classes)
    b = pseudo.shape[0]
    partner = torch.roll(pseudo, shifts=-1, dims=0).reshape(b, -1).long()
    return chosen.gather(1, partner).view(pseudo.shape)


def apply_mix(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mix every tensor with its batch partner under ``mask``: ``out[i] = where(mask[i], x[(i+1) % B], x[i])``.

    Args:
        mask: ``(B, *S)`` bool (True: take the partner's value).
        *tensors: images ``(B, C, *S)`` or maps ``(B, *S)`` (pseudo-labels, confidences), any dtype, on the mask's
            device.

    Returns:
        Tuple of mixed tensors, in the order given (a 1-tuple for one tensor). With ``B == 1`` the inputs are returned
        unchanged in value (the partner is the sample itself).

    Raises:
        ValueError: if ``mask`` is not boolean or a tensor's shape does not match it.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask: expected a bool tensor of shape (B, *S), got {getattr(mask, 'dtype', type(mask))}")
    out = []
    for index, x in enumerate(tensors):
        if x.ndim == mask.ndim and x.shape == mask.shape:
            m = mask
        elif x.ndim == mask.ndim + 1 and x.shape[0] == mask.shape[0] and x.shape[2:] == mask.shape[1:]:
            m = mask.unsqueeze(1)
        else:
            raise ValueError(
                f"tensors[{index}]: expected shape (B, *S) or (B, C, *S) matching mask {tuple(mask.shape)}, "
                f"got {tuple(x.shape)}"
            )
        out.append(torch.where(m, torch.roll(x, shifts=-1, dims=0), x))
    return tuple(out)
