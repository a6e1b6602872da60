"""Precision choices that depend on the device."""

import pytest
import torch

from actionpp import hardware
from actionpp.config import Config, ConfigError


def test_explicit_precisions_and_auto(monkeypatch):
    cpu = torch.device("cpu")
    assert hardware.matmul_dtype("float32", cpu) == torch.float32
    assert hardware.matmul_dtype("bfloat16", cpu) == torch.bfloat16
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert hardware.matmul_dtype("auto", cpu) == torch.float32  # emulated bf16 would be slower
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert hardware.matmul_dtype("auto", cpu) == torch.bfloat16
    assert hardware.matmul_dtype("auto", torch.device("meta")) == torch.float32  # unknown devices: float32
    with pytest.raises(ValueError, match="precision"):
        hardware.matmul_dtype("half", cpu)


def test_cpu_flags_are_read_from_cpuinfo():
    flags = hardware._cpu_flags()
    assert isinstance(flags, frozenset)  # empty off Linux


def test_config_checks_ascl_precision():
    with pytest.raises(ConfigError, match="ascl_precision|ascl-precision"):
        Config(ascl_precision="fp8")
