"""Mean teacher: an exponential moving average (EMA) of the student network (method.md §2, §4.1, §8.10).

Built on :class:`torch.optim.swa_utils.AveragedModel` with :func:`torch.optim.swa_utils.get_ema_multi_avg_fn`.

BatchNorm / dropout choice (ours, documented; method.md §8.10)
----------------------------------------------------------------
* **Default (``average_buffers=True, train_mode=False``)**: the teacher runs in **eval mode**: dropout is off and
  BatchNorm normalises with its running statistics. Those statistics are themselves EMA-averaged from the student's:
  every floating-point parameter *and* floating-point buffer (BN ``running_mean`` / ``running_var``) follows
  ``t <- m * t + (1 - m) * s`` with ``m = momentum`` (0.99). Integer buffers (``num_batches_tracked``) are copied
  from the student, since an average of counters is meaningless and truncation would corrupt it. This gives a
  deterministic teacher whose pseudo-labels do not depend on which other images share the unlabeled batch.
* **Official code**: only parameters are averaged (BN buffers are not), and the teacher always runs in train mode,
  so dropout is active and BN uses the statistics of the current batch. ``EMATeacher(..., average_buffers=False,
  train_mode=True)`` comes close for fidelity runs: buffers are then copied from the student at every update
  (``AveragedModel``'s ``use_buffers=False`` behaviour), which is irrelevant in train mode because BN then ignores
  its running statistics.

The teacher starts as an exact copy of the student (``n_averaged`` is set to 1 at construction, so that the very first
:meth:`EMATeacher.update` already averages instead of copying, as ``AveragedModel`` would do on its first call).
Its parameters never require gradients, and :meth:`EMATeacher.__call__` runs under ``torch.no_grad()``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["EMATeacher"]


def _ema_or_copy(momentum: float):
    """``multi_avg_fn`` for ``AveragedModel``: EMA for floating tensors, plain copy for integer ones.

    ``AveragedModel`` groups tensors by (device, dtype) before calling this, so each call sees one dtype.
    """
    ema = get_ema_multi_avg_fn(momentum)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            ema(averaged, current, num_averaged)
        else:
            torch._foreach_copy_(averaged, current)

    return update


class EMATeacher:
    r"""EMA teacher of a student network: :math:`\theta_t \leftarrow m\,\theta_t + (1 - m)\,\theta_s` after every step.

    Args:
        student: the student network (any ``nn.Module``). It is deep-copied; the copy lives on the student's device.
        momentum: EMA momentum ``m`` in [0, 1] (official 0.99). ``m = 0`` copies the student, ``m = 1`` freezes.
        average_buffers: EMA-average floating buffers too (default, BN running statistics); if False, buffers are
            copied from the student at every update.
        train_mode: run the teacher in train mode (dropout on, batch-statistics BN) as the official code does; by
            default it runs in eval mode.

    Attributes:
        module: the teacher network (``requires_grad`` False everywhere; eval mode unless ``train_mode``).
        momentum: the EMA momentum.

    Raises:
        ValueError: if ``student`` is not an ``nn.Module`` or ``momentum`` is outside [0, 1].

    Example:
        >>> teacher = EMATeacher(student, momentum=0.99)
        >>> logits, feats = teacher(x_unlabeled)      # no_grad, eval mode
        >>> ...; optimizer.step(); teacher.update(student)
    """

    def __init__(
        self,
        student: nn.Module,
        momentum: float = 0.99,
        *,
        average_buffers: bool = True,
        train_mode: bool = False,
    ) -> None:
        if not isinstance(student, nn.Module):
            raise ValueError(f"student: expected a torch.nn.Module, got {type(student).__name__}")
        momentum = float(momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1], got {momentum}")
        self.momentum = momentum
        self.train_mode = bool(train_mode)
        self._averaged = AveragedModel(
            student, multi_avg_fn=_ema_or_copy(momentum), use_buffers=bool(average_buffers)
        )
        self._averaged.requires_grad_(False)
        # AveragedModel copies on its first update; mark the deep copy as that first update so every
        # later call averages (an exact m*t + (1-m)*s from the first step on).
        self._averaged.n_averaged.fill_(1)
        self._set_mode()

    @property
    def module(self) -> nn.Module:
        """The teacher network."""
        return self._averaged.module

    def _set_mode(self) -> None:
        self.module.train(self.train_mode)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        r"""One EMA step towards ``student``: :math:`t \leftarrow m\,t + (1-m)\,s` for every parameter (and floating
        buffer if ``average_buffers``); integer buffers are copied. Runs on the teacher's device without host syncs.

        ``student`` must have the same architecture (same parameter and buffer order and shapes) as the one the
        teacher was built from.
        """
        if not isinstance(student, nn.Module):
            raise ValueError(f"student: expected a torch.nn.Module, got {type(student).__name__}")
        self._averaged.update_parameters(student)
        self._set_mode()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the teacher under ``torch.no_grad()`` (in eval mode by default, whatever was done to ``module``)."""
        self._set_mode()
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def to(self, *args: Any, **kwargs: Any) -> "EMATeacher":
        """Move the teacher like ``nn.Module.to``; returns ``self``."""
        self._averaged.to(*args, **kwargs)
        # Keep the step counter on the host: AveragedModel tests it with bool() at every update.
        self._averaged.n_averaged = self._averaged.n_averaged.cpu()
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Teacher weights and buffers (keys ``module.*``) plus the ``n_averaged`` counter, for checkpoints."""
        return self._averaged.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (strict)."""
        self._averaged.load_state_dict(state_dict)
        if int(self._averaged.n_averaged) < 1:  # a checkpoint taken before any update still means "initialised"
            self._averaged.n_averaged.fill_(1)
        self._set_mode()
