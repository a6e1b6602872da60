"""What the compute device does fast, for choices that trade precision for speed (docs/method.md §ASCL)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from actionpp.config import PRECISIONS


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16_matmul(device: torch.device) -> bool:
    """True where bfloat16 matrix products run on dedicated hardware: CUDA GPUs that support bf16 (Ampere and later)
    and CPUs with AMX-BF16 or AVX512-BF16 (Intel Sapphire Rapids and later, AMD Zen 4 and later). Elsewhere bf16
    products are emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())
    return False


def matmul_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``float32`` / ``bfloat16`` as asked, or for ``auto`` bfloat16 where :func:`native_bf16_matmul`, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if native_bf16_matmul(device) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def device_report() -> dict:
    """What this PyTorch sees, for front ends that check a device choice before launching a run.

    ``{"torch": version, "cuda_build": CUDA version torch was built for or None (a CPU-only build),
    "cuda_available": bool, "gpus": [names], "mps_available": bool}``; ``cuda_error`` holds the reason CUDA failed to
    initialise (e.g. no driver) when the build has CUDA but no GPU is usable.
    """
    report = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": False, "gpus": [],
              "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if torch.version.cuda is not None:
        try:
            torch.cuda.init()
            report["cuda_available"] = torch.cuda.is_available()
            report["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception as exc:  # no driver, no device, or CUDA_VISIBLE_DEVICES hides every GPU
            report["cuda_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return report
