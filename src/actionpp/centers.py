r"""Fixed class centres of ASCL: C unit vectors spread uniformly on the hypersphere S^{D-1} (method.md §4.6).

The official code ships no centre file; its generator (``TSC.py``'s ``__main__``) minimises the uniformity loss

.. math::
    \mathcal{L}_{unif}(X) = \frac{1}{C} \sum_{i=1}^{C} \log \sum_{j=1}^{C} \exp(\hat x_i \cdot \hat x_j / 0.07)

(row-normalised ``X``, ``j`` includes ``i``) with Adam. For ``C <= D + 1`` the minimiser is known in closed form: a
regular simplex, whose pairwise cosines are all ``-1/(C-1)``. :func:`uniform_centers` returns that simplex (randomly
rotated into ℝ^D by a seeded orthogonal matrix) and falls back to the optimisation only when ``C > D + 1``.

Results are cached in-process per ``(C, D, seed, steps)``; optimised centres are also cached on disk as
``$ACTIONPP_CACHE/centers_{C}_{D}_{seed}.npy`` (default ``~/.cache/actionpp``). Disk-cache failures are silent: the
centres are recomputed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["uniform_centers", "load_centers", "uniformity_loss"]

_UNIFORMITY_T = 0.07
_DEFAULT_STEPS = 3000
_ADAM_LR = 1e-2
_UNIT_TOL = 1e-3


def uniformity_loss(x: torch.Tensor, temperature: float = _UNIFORMITY_T) -> torch.Tensor:
    r"""Uniformity loss :math:`\frac{1}{C}\sum_i \log\sum_j \exp(\hat x_i\cdot\hat x_j/t)` of the rows of ``x``.

    Args:
        x: ``(C, D)`` vectors (normalised inside, so any non-zero rows).
        temperature: ``t`` (0.07 as in the official generator).

    Returns:
        Scalar tensor (lower is more uniform).
    """
    xn = torch.nn.functional.normalize(x, dim=1)
    return torch.logsumexp(xn @ xn.T / temperature, dim=1).mean()


def uniform_centers(num_classes: int, dim: int, seed: int = 0, steps: int = _DEFAULT_STEPS) -> torch.Tensor:
    """C unit vectors in ℝ^D spread uniformly on the sphere; deterministic given ``(num_classes, dim, seed, steps)``.

    * ``C <= D + 1``: closed-form regular simplex. The rows of the centred identity ``I_C - 1/C`` are normalised,
      expressed in an orthonormal basis of their (C-1)-dimensional span, zero-padded to ℝ^D and rotated by a random
      orthogonal ``D x D`` matrix drawn from ``seed``. All pairwise cosines equal ``-1/(C-1)`` (to float32 precision);
      ``steps`` is unused.
    * ``C > D + 1``: minimise :func:`uniformity_loss` over row-normalised vectors with Adam (lr 1e-2, ``steps``
      iterations, float64, seeded Gaussian start) and keep the best iterate. The official generator uses lr 1e-3 for
      10,000 steps; the larger step size reaches a lower loss in 3,000 steps.

    Args:
        num_classes: C, >= 2.
        dim: D, >= 1.
        seed: seed of the rotation / starting point.
        steps: optimisation steps for the ``C > D + 1`` case, >= 1.

    Returns:
        ``(C, D)`` float32 CPU tensor with unit rows (a fresh clone; callers may modify it and move it to a device).

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: expected a positive integer, got {dim!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    return _cached_centers(num_classes, dim, int(seed), steps).clone()


@functools.lru_cache(maxsize=32)
def _cached_centers(c: int, d: int, seed: int, steps: int) -> torch.Tensor:
    if c <= d + 1:
        return _simplex(c, d, seed)
    path = _cache_path(c, d, seed, steps)
    cached = _read_cache(path, c, d)
    if cached is not None:
        return cached
    centers = _optimise(c, d, seed, steps)
    _write_cache(path, centers)
    return centers


def _random_rotation(d: int, generator: torch.Generator) -> torch.Tensor:
    """Haar-distributed ``(d, d)`` orthogonal matrix (QR of a Gaussian matrix with the sign fix), float64."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


def _simplex(c: int, d: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    e = torch.eye(c, dtype=torch.float64) - 1.0 / c  # rows sum to 0, span the (c-1)-dim complement of 1
    e = e / e.norm(dim=1, keepdim=True)
    # Orthonormal basis of span(rows): the first c-1 left singular vectors of e^T.
    u, _, _ = torch.linalg.svd(e.T, full_matrices=False)
    coords = e @ u[:, : c - 1]  # (c, c-1), same Gram matrix as e
    embedded = torch.zeros(c, d, dtype=torch.float64)
    embedded[:, : c - 1] = coords
    x = embedded @ _random_rotation(d, generator).T
    x = x / x.norm(dim=1, keepdim=True)
    return x.to(torch.float32)


def _optimise(c: int, d: int, seed: int, steps: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(c, d, generator=generator, dtype=torch.float64).requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=_ADAM_LR)
    best_loss = float("inf")
    best = x.detach().clone()
    with torch.enable_grad():
        for _ in range(steps):
            loss = uniformity_loss(x)
            value = float(loss.detach())  # offline, CPU-only computation
            if value < best_loss:
                best_loss, best = value, x.detach().clone()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        final = float(uniformity_loss(x.detach()))
        if final < best_loss:
            best = x.detach().clone()
    best = best / best.norm(dim=1, keepdim=True)
    return best.to(torch.float32)


def _cache_path(c: int, d: int, seed: int, steps: int) -> Path:
    root = os.environ.get("ACTIONPP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "actionpp")
    suffix = "" if steps == _DEFAULT_STEPS else f"_s{steps}"
    return Path(root) / f"centers_{c}_{d}_{seed}{suffix}.npy"


def _read_cache(path: Path, c: int, d: int) -> torch.Tensor | None:
    try:
        if not path.is_file():
            return None
        return _validated(np.load(path, allow_pickle=False), c, d, str(path))
    except Exception:  # noqa: BLE001 - a bad cache file is recomputed, never fatal
        return None


def _write_cache(path: Path, centers: torch.Tensor) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, centers.numpy())
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - caching is best effort
        pass


def _validated(array: np.ndarray, c: int, d: int, source: str) -> torch.Tensor:
    if array.shape != (c, d) or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{source}: expected a float array of shape ({c}, {d}), found {array.dtype} {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{source}: expected finite unit vectors, found NaN or infinite values")
    norms = np.linalg.norm(array.astype(np.float64), axis=1)
    worst = float(np.max(np.abs(norms - 1.0)))
    if worst > _UNIT_TOL:
        raise ValueError(f"{source}: expected unit-norm rows (|norm - 1| <= {_UNIT_TOL}), found a row norm off by {worst:.3g}")
    return torch.from_numpy(array.astype(np.float64) / norms[:, None]).to(torch.float32)


def load_centers(path: str | os.PathLike, num_classes: int, dim: int) -> torch.Tensor:
    """Read user-supplied class centres (``--centers FILE``): a ``.npy`` array of ``num_classes x dim`` unit rows.

    Rows are renormalised exactly to unit length after the check (tolerance 1e-3 on each norm).

    Args:
        path: ``.npy`` file (e.g. the official ``optimal_{C}_{D}.npy``).
        num_classes: expected C.
        dim: expected D.

    Returns:
        ``(C, D)`` float32 CPU tensor.

    Raises:
        ValueError: one line, naming the file, if it is missing, unreadable, of the wrong shape or has non-unit rows.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: expected a .npy file of class centres, found no such file")
    try:
        array = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - report any read error in one line
        raise ValueError(f"{p}: expected a .npy array, cannot read it ({type(e).__name__})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{p}: expected a single .npy array, found {type(array).__name__}")
    return _validated(array, num_classes, dim, str(p))
