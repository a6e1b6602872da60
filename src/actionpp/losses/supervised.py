"""Supervised loss of the labeled branch: 0.5 * (CE + Dice), as the official code (method.md §4.3), on MONAI."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["DiceCE", "dice_ce"]


class DiceCE(nn.Module):
    r"""``0.5 * CE + 0.5 * Dice`` with the official Dice variant, built on :class:`monai.losses.DiceCELoss`.

    .. math::
        \mathcal{L}_{sup} = \tfrac12\,\mathrm{CE}(z, y) + \tfrac12 \cdot \frac{1}{C}\sum_{c=1}^{C}
        \left(1 - \frac{2\sum_{b,p} s_{bcp}\,g_{bcp} + \epsilon}{\sum_{b,p} s_{bcp}^2 + \sum_{b,p} g_{bcp}^2 + \epsilon}\right)

    with ``s = softmax(z)`` over classes, ``g`` the one-hot target, ``ε = 1e-5``: Dice over **all** classes including
    background, squared denominator, sums pooled over the whole batch (``batch=True``), CE averaged over all pixels.

    Args:
        smooth: ε, added to numerator and denominator (official 1e-5).

    Shapes:
        ``logits``: ``(B, C, *S)`` float, C >= 2; ``target``: ``(B, *S)`` integer labels in ``[0, C)``. 2D or 3D.

    Raises:
        ValueError: if the shapes or dtypes do not match.
    """

    def __init__(self, smooth: float = 1e-5) -> None:
        super().__init__()
        if not smooth >= 0:
            raise ValueError(f"smooth: expected a value >= 0, got {smooth}")
        self.loss = DiceCELoss(
            include_background=True,
            to_onehot_y=True,
            softmax=True,
            squared_pred=True,
            batch=True,
            smooth_nr=smooth,
            smooth_dr=smooth,
            lambda_dice=0.5,
            lambda_ce=0.5,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss (see the class docstring for shapes)."""
        if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point or logits.ndim < 3:
            raise ValueError(f"logits: expected a float tensor (B, C, *S), got {tuple(getattr(logits, 'shape', ()))}")
        if logits.shape[1] < 2:
            raise ValueError(f"logits: expected at least 2 class channels, got {logits.shape[1]}")
        expected = (logits.shape[0], *logits.shape[2:])
        if target.dtype.is_floating_point or target.dtype == torch.bool or tuple(target.shape) != expected:
            raise ValueError(f"target: expected integer labels of shape {expected}, got {target.dtype} {tuple(target.shape)}")
        return self.loss(logits, target.unsqueeze(1).long())


_DEFAULT = DiceCE()


def dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Functional form of :class:`DiceCE` with the default ε: ``0.5 * (CE + Dice)`` of ``(B, C, *S)`` logits."""
    return _DEFAULT(logits, target)
