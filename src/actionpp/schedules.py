"""Schedules: pure functions of the training step (no state, no tensors).

Each function maps the current step to a Python float, so the trainer computes the value once per step and passes it
into the losses (``forward(..., tau=...)``) instead of mutating module attributes (style.md §3.5). All of them are
cheap enough to call every iteration.

* :func:`cosine_tau`: the ACTION++ "anatomical-aware" temperature (method.md §5), a cosine between ``tau_max`` and
  ``tau_min`` with a period that is a fraction of the run.
* :func:`epoch_step`: floor a step to the first step of its epoch, for the official per-epoch stepping of τ.
* :func:`poly_lr`: the poly learning-rate decay of the official fine-tuning (method.md §4.1).
* :func:`sigmoid_rampup`: the mean-teacher consistency ramp-up (defined but unused by the official code, §4.3).
"""

from __future__ import annotations

import math

__all__ = ["cosine_tau", "epoch_step", "poly_lr", "sigmoid_rampup"]


def cosine_tau(step: float, total: int, tau_min: float, tau_max: float, period: float = 0.1) -> float:
    r"""Cosine temperature schedule of ACTION++ (Kukleva et al., ICLR'23; method.md §5).

    .. math::
        \tau(t) = \tau_{min} + (\tau_{max} - \tau_{min}) \cdot \tfrac{1}{2}\left(1 + \cos\frac{2\pi t}{P \cdot T}\right)

    with ``t = step``, ``T = total`` and ``P = period``. τ starts at ``tau_max`` (t = 0), reaches ``tau_min`` half a
    period later (t = P·T/2) and is back at ``tau_max`` after one period (t = P·T): ``1 / period`` cycles per run.

    The official code evaluates this once per epoch with ``T`` = number of epochs; pass
    ``epoch_step(step, iters_per_epoch)`` as ``step`` (and the run length in iterations as ``total``) to step τ per
    epoch while keeping the period in iterations.

    Args:
        step: current step t (iteration, possibly floored to an epoch start); may be fractional, must be >= 0.
        total: run length T in steps, > 0.
        tau_min: lower bound τ⁻, > 0.
        tau_max: upper bound τ⁺, >= ``tau_min``.
        period: period as a fraction of the run, > 0 (official 2D: 0.1, i.e. about 10 cycles).

    Returns:
        τ(t) as a Python float in ``[tau_min, tau_max]``.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if step < 0:
        raise ValueError(f"step: expected a value >= 0, got {step}")
    if total <= 0:
        raise ValueError(f"total: expected a positive number of steps, got {total}")
    if not period > 0:
        raise ValueError(f"period: expected a positive fraction of the run, got {period}")
    if not tau_min > 0:
        raise ValueError(f"tau_min: expected a positive temperature, got {tau_min}")
    if tau_max < tau_min:
        raise ValueError(f"tau_max: expected a value >= tau_min ({tau_min}), got {tau_max}")
    phase = 2.0 * math.pi * float(step) / (float(period) * float(total))
    return float(tau_min + (tau_max - tau_min) * 0.5 * (1.0 + math.cos(phase)))


def epoch_step(step: int, iters_per_epoch: int) -> int:
    """Floor ``step`` to the first step of its epoch: ``(step // iters_per_epoch) * iters_per_epoch``.

    Used for the per-epoch option of the temperature schedule (``--tau-step epoch``), where τ stays constant within an
    epoch as in the official code.

    Args:
        step: current iteration, >= 0.
        iters_per_epoch: iterations per epoch, > 0.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if step < 0:
        raise ValueError(f"step: expected a value >= 0, got {step}")
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch: expected a positive integer, got {iters_per_epoch}")
    return (int(step) // int(iters_per_epoch)) * int(iters_per_epoch)


def poly_lr(base_lr: float, step: int, total: int, power: float = 0.9) -> float:
    r"""Poly learning-rate decay: :math:`lr = lr_0 \cdot \max(0, 1 - t/T)^{p}`.

    ``poly_lr(lr0, 0, T) == lr0`` and ``poly_lr(lr0, T, T) == 0``; steps past ``total`` stay at 0.

    Args:
        base_lr: initial learning rate lr₀, >= 0.
        step: current iteration t, >= 0.
        total: run length T, > 0.
        power: exponent p, >= 0 (official 0.9).

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if base_lr < 0:
        raise ValueError(f"base_lr: expected a value >= 0, got {base_lr}")
    if step < 0:
        raise ValueError(f"step: expected a value >= 0, got {step}")
    if total <= 0:
        raise ValueError(f"total: expected a positive number of steps, got {total}")
    if power < 0:
        raise ValueError(f"power: expected a value >= 0, got {power}")
    return float(base_lr * max(0.0, 1.0 - float(step) / float(total)) ** power)


def sigmoid_rampup(step: float, length: float) -> float:
    r"""Sigmoid-shaped ramp-up of Laine & Aila / the mean teacher: :math:`\exp(-5 (1 - t)^2)`, ``t = clip(step/length, 0, 1)``.

    Rises from exp(-5) ≈ 0.0067 at step 0 to 1 at ``step >= length``; ``length == 0`` means no ramp-up (always 1).

    Args:
        step: current step, >= 0.
        length: ramp-up length in steps, >= 0.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if step < 0:
        raise ValueError(f"step: expected a value >= 0, got {step}")
    if length < 0:
        raise ValueError(f"length: expected a value >= 0, got {length}")
    if length == 0:
        return 1.0
    t = min(max(float(step) / float(length), 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
