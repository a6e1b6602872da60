"""Checks made before an engine process starts: can the chosen device be used, and how long will a run take.

The device check asks the engine itself (``python -m actionpp devices`` in the same interpreter and environment the
job will get), so what it reports is what the training process would see; nothing here imports torch.
"""

from __future__ import annotations

import json
import subprocess

from . import engine


class DeviceError(RuntimeError):
    """The chosen device cannot be used; the message says what was found and what to do."""


def probeDevices(python: str, baseEnv: dict[str, str] | None = None, timeout: float = 120.0) -> dict:
    """The engine's ``devices`` report (see ``actionpp.hardware.device_report``); raise DeviceError when the engine
    cannot even start (then training could not either)."""
    command = engine.engineCommand(python, "devices")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=engine.engineEnvironment(baseEnv, device="auto"), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError(f"could not ask PyTorch which devices it sees ({command[0]}): {exc}") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"the engine could not start in {command[0]}: {last}")
    return json.loads(lines[-1])


def deviceProblem(device: str, report: dict) -> str:
    """Why ``device`` (auto | cpu | cuda | cuda:N | mps) cannot be used given the engine's ``report``; "" if it can."""
    device = (device or "auto").strip().lower()
    torchVersion = report.get("torch", "?")
    if device.startswith("cuda"):
        if report.get("cuda_build") is None:
            return (f"No GPU for training: PyTorch {torchVersion} in this Slicer is a CPU-only build. Install a CUDA "
                    "build (PyTorch extension: 'Install PyTorch' with a CUDA computation backend) or choose CPU.")
        gpus = report.get("gpus") or []
        if not report.get("cuda_available") or not gpus:
            reason = report.get("cuda_error") or "no GPU visible (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)"
            return (f"No GPU for training: PyTorch {torchVersion} was built for CUDA {report['cuda_build']} but "
                    f"finds no usable GPU: {reason}. Choose CPU, or install the NVIDIA driver.")
        if ":" in device:
            index = device.split(":", 1)[1]
            if not index.isdigit() or int(index) >= len(gpus):
                return f"No GPU '{device}': PyTorch sees {len(gpus)} GPU(s): {', '.join(gpus)}."
    if device == "mps" and not report.get("mps_available"):
        return f"No Apple GPU (MPS) for PyTorch {torchVersion} on this machine: choose CPU."
    return ""


def describeDevice(device: str, report: dict) -> str:
    """What ``device`` will run on, for the panel: ``GPU 0: NVIDIA H100`` or ``CPU``."""
    device = (device or "auto").strip().lower()
    gpus = report.get("gpus") or []
    if device == "cpu" or not (report.get("cuda_available") and gpus) and device == "auto":
        return "CPU"
    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    return f"GPU {index}: {gpus[index]}" if index < len(gpus) else device
