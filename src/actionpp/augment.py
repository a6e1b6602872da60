"""Strong intensity augmentation on float tensors, and joint geometric flips (method.md §4.2 step 3, §8.5, §8.6).

Both follow TorchIO's "sample parameters, then apply" split: ``sample_*`` draws a small dict/tensor of per-sample
parameters from a ``torch.Generator``; ``apply_*`` is deterministic given those parameters. Everything is vectorised over
the batch and works for ``S = (H, W)`` and ``S = (D, H, W)`` alike.

Differences from the official strong augmentation (method.md §4.2, §8.5, §8.6), on purpose:

* The image stays float: no 8-bit PIL round trip, no clamping to [0, 1], so z-scored (negative) intensities survive.
* Brightness/contrast act around each image's own mean and scale with its own standard deviation, instead of
  torchvision ``ColorJitter`` factors that assume [0, 1] images.
* Gamma and additive noise are added (the official 2D code has only jitter and blur); the random diffeomorphic warp
  (AdvMorph) is not used. The only geometric change offered here, :func:`apply_flips`, hits image, pseudo-label and
  confidence with the same flags.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["sample_strong_params", "apply_strong", "sample_flips", "apply_flips", "STRONG_KEYS"]

# Probabilities and ranges of the strong augmentation.
P_BRIGHTNESS_CONTRAST = 0.5
CONTRAST_RANGE = (0.75, 1.25)
BRIGHTNESS_RANGE = (-0.25, 0.25)  # in units of the image's standard deviation
P_BLUR = 0.5
SIGMA_RANGE = (0.15, 1.15)  # voxels
P_GAMMA = 0.3
LOG_GAMMA_RANGE = (-0.3, 0.3)  # as TorchIO's RandomGamma default
P_NOISE = 0.5
NOISE_STD = 0.05  # in units of the image's standard deviation
_BLUR_RADIUS = math.ceil(3 * SIGMA_RANGE[1])
_EPS = 1e-8

STRONG_KEYS = (
    "bc_apply", "contrast", "brightness", "blur_apply", "sigma", "gamma_apply", "gamma", "noise_apply", "noise_seed",
)


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def sample_strong_params(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw the per-sample parameters of :func:`apply_strong`.

    Args:
        batch: B, >= 1.
        generator: source of randomness; the parameters live on its device. Use a CPU generator in training steps:
            :func:`apply_strong` then reads the noise seed and the "any sample blurred?" flags without a device sync.

    Returns:
        Dict of ``(B,)`` tensors (plus a scalar int64 ``noise_seed``):

        * ``bc_apply`` (bool, p=0.5), ``contrast`` ~ U(0.75, 1.25), ``brightness`` ~ U(-0.25, 0.25) (x std);
        * ``blur_apply`` (bool, p=0.5), ``sigma`` ~ U(0.15, 1.15) voxels;
        * ``gamma_apply`` (bool, p=0.3), ``gamma`` = exp(U(-0.3, 0.3));
        * ``noise_apply`` (bool, p=0.5) and ``noise_seed``, the seed of the noise field (drawn where it is applied).

    Raises:
        ValueError: naming the argument that is malformed.
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected a positive integer, got {batch!r}")
    u = torch.rand(9, batch, generator=generator, device=generator.device)
    seed = torch.randint(0, 2**62, (), generator=generator, device=generator.device, dtype=torch.int64)
    return {
        "bc_apply": u[0] < P_BRIGHTNESS_CONTRAST,
        "contrast": _uniform(u[1], CONTRAST_RANGE),
        "brightness": _uniform(u[2], BRIGHTNESS_RANGE),
        "blur_apply": u[3] < P_BLUR,
        "sigma": _uniform(u[4], SIGMA_RANGE),
        "gamma_apply": u[5] < P_GAMMA,
        "gamma": torch.exp(_uniform(u[6], LOG_GAMMA_RANGE)),
        "noise_apply": u[7] < P_NOISE,
        "noise_seed": seed,
    }


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, 2r+1)`` normalised 1D Gaussian kernels, one per sigma."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    k = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` (B, C, *S) with a per-sample sigma (B,), replicate padding at the borders.

    Each spatial axis in turn is moved last and convolved with ``conv1d`` using ``groups=B`` (the batch becomes the
    channel axis), so every sample gets its own kernel in one call.
    """
    b = x.shape[0]
    kernels = _gaussian_kernels(sigma.to(x.dtype), _BLUR_RADIUS).unsqueeze(1)  # (B, 1, K)
    for axis in range(2, x.ndim):
        moved = x.movedim(axis, -1)
        moved_shape = moved.shape
        length = moved_shape[-1]
        rows = moved.reshape(b, -1, length).transpose(0, 1)  # (M, B, L)
        rows = F.pad(rows, (_BLUR_RADIUS, _BLUR_RADIUS), mode="replicate")
        rows = F.conv1d(rows, kernels, groups=b)  # (M, B, L)
        x = rows.transpose(0, 1).reshape(moved_shape).movedim(-1, axis)
    return x


def apply_strong(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    r"""Apply the strong intensity augmentation drawn by :func:`sample_strong_params`; float in, same float dtype out.

    Per sample ``b`` and channel, with ``μ``, ``σ`` the mean and standard deviation of the input over ``S``, in order:

    1. brightness/contrast (if ``bc_apply``): :math:`x \leftarrow \mu + c\,(x - \mu) + \beta\,\sigma`;
    2. Gaussian blur (if ``blur_apply``), separable, isotropic in voxels, kernel radius 4;
    3. gamma (if ``gamma_apply``) on min-max-rescaled values, mapped back to the original range:
       :math:`x \leftarrow m + (M - m)\left(\frac{x - m}{M - m}\right)^{\gamma}`;
    4. additive noise (if ``noise_apply``): :math:`x \leftarrow x + 0.05\,\sigma\,\varepsilon`,
       :math:`\varepsilon \sim \mathcal{N}(0, 1)` drawn on ``x``'s device from ``noise_seed``.

    No clamping, no quantisation. Samples whose flags are all False are returned bit-exactly (via ``torch.where``).

    Args:
        x: ``(B, C, *S)`` float image, ``S`` 2D or 3D.
        params: output of :func:`sample_strong_params` for the same ``B`` (any device; moved to ``x``'s).

    Returns:
        ``(B, C, *S)`` tensor of ``x``'s dtype and device.

    Raises:
        ValueError: if ``x`` is not a float ``(B, C, *S)`` tensor or ``params`` do not fit it.
    """
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.ndim not in (4, 5):
        raise ValueError(f"x: expected a float tensor (B, C, H, W) or (B, C, D, H, W), got "
                         f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
    missing = [k for k in STRONG_KEYS if k not in params]
    if missing:
        raise ValueError(f"params: expected the keys of sample_strong_params, missing {', '.join(missing)}")
    b = x.shape[0]
    if params["contrast"].shape != (b,):
        raise ValueError(f"params: drawn for batch {tuple(params['contrast'].shape)}, but x has batch {b}")
    view = (b,) + (1,) * (x.ndim - 1)
    p = {k: params[k].to(x.device).view(view) for k in STRONG_KEYS if k != "noise_seed"}
    spatial = tuple(range(2, x.ndim))
    mean = x.mean(dim=spatial, keepdim=True)
    std = x.std(dim=spatial, keepdim=True, unbiased=False)

    y = torch.where(p["bc_apply"], mean + p["contrast"].to(x.dtype) * (x - mean) + p["brightness"].to(x.dtype) * std, x)
    if _maybe_any(params["blur_apply"]):
        y = torch.where(p["blur_apply"], _blur(y, params["sigma"].to(x.device)), y)

    if _maybe_any(params["gamma_apply"]):
        lo = y.amin(dim=spatial, keepdim=True)
        hi = y.amax(dim=spatial, keepdim=True)
        rng = hi - lo
        unit = ((y - lo) / rng.clamp_min(_EPS)).clamp(0.0, 1.0)  # this clamp only guards rounding of the rescale
        gamma_y = torch.where(rng > 0, lo + rng * unit.pow(p["gamma"].to(x.dtype)), y)
        y = torch.where(p["gamma_apply"], gamma_y, y)

    if _maybe_any(params["noise_apply"]):
        noise_gen = torch.Generator(device=x.device)
        noise_gen.manual_seed(int(params["noise_seed"]))  # CPU scalar when sampled with a CPU generator: no sync
        noise = torch.randn(x.shape, generator=noise_gen, device=x.device, dtype=x.dtype)
        y = torch.where(p["noise_apply"], y + NOISE_STD * std * noise, y)
    return y


def _maybe_any(flags: torch.Tensor) -> bool:
    """False only when the flags are known, without a device sync, to be all False (CPU flags); else True."""
    return flags.device.type != "cpu" or bool(flags.any())


def sample_flips(batch: int, ndim: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Draw per-sample, per-axis flip flags.

    Args:
        batch: B, >= 1.
        ndim: number of spatial axes (2 or 3).
        generator: source of randomness; the flags live on its device.
        p: probability of flipping each axis.

    Returns:
        ``(B, ndim)`` bool; ``flags[b, a]`` flips spatial axis ``a`` (0 = first spatial axis) of sample ``b``.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected a positive integer, got {batch!r}")
    if ndim not in (2, 3):
        raise ValueError(f"ndim: expected 2 or 3 spatial axes, got {ndim!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], got {p}")
    return torch.rand(batch, ndim, generator=generator, device=generator.device) < p


def apply_flips(flags: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Flip every tensor with the same per-sample flags (image, pseudo-label and confidence stay aligned; §8.6).

    The spatial axes are the last ``flags.shape[1]`` axes of each tensor, so images ``(B, C, *S)`` and maps
    ``(B, *S)`` can be passed together.

    Args:
        flags: ``(B, ndim)`` bool from :func:`sample_flips` (any device).
        *tensors: ``(B, ..., *S)`` tensors of any dtype.

    Returns:
        Tuple of flipped tensors in the order given.

    Raises:
        ValueError: if ``flags`` is not ``(B, ndim)`` bool or a tensor does not have batch ``B`` and ``ndim``
            trailing spatial axes.
    """
    if not isinstance(flags, torch.Tensor) or flags.dtype != torch.bool or flags.ndim != 2:
        raise ValueError(f"flags: expected a (B, ndim) bool tensor, got {getattr(flags, 'dtype', type(flags))} "
                         f"{tuple(getattr(flags, 'shape', ()))}")
    b, ndim = flags.shape
    out = []
    for index, x in enumerate(tensors):
        if x.ndim < ndim + 1 or x.shape[0] != b:
            raise ValueError(f"tensors[{index}]: expected shape (B={b}, ..., {ndim} spatial axes), got {tuple(x.shape)}")
        f = flags.to(x.device)
        view = (b,) + (1,) * (x.ndim - 1)
        for a in range(ndim):
            axis = x.ndim - ndim + a
            x = torch.where(f[:, a].view(view), x.flip(axis), x)
        out.append(x)
    return tuple(out)
