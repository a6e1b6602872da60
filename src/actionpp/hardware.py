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
