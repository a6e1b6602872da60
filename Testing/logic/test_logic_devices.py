"""Checks before launch: the device the user chose is asked of the engine's own PyTorch (a real subprocess), and a
training's duration is timed on a few real iterations."""

from __future__ import annotations

import sys

import pytest
from actionpp_logic_testing import ENGINE_ENV, TINY_TRAINING, requireEngine

from ACTIONppLogic import devices
from ACTIONppLogic.jobs import TrainingSettings

CUDA_NO_DRIVER = {"torch": "2.13.0+cu128", "cuda_build": "12.8", "cuda_available": False, "gpus": [],
                  "cuda_error": "Found no NVIDIA driver on your system."}
ONE_GPU = {"torch": "2.13.0+cu128", "cuda_build": "12.8", "cuda_available": True, "gpus": ["NVIDIA H100"]}
CPU_BUILD = {"torch": "2.13.0+cpu", "cuda_build": None, "cuda_available": False, "gpus": []}


@pytest.mark.parametrize("device,report,expected", [
    ("cuda", CPU_BUILD, "PyTorch 2.13.0+cpu in this Slicer is a CPU-only build"),
    ("cuda:0", CUDA_NO_DRIVER, "built for CUDA 12.8 but finds no usable GPU: Found no NVIDIA driver"),
    ("cuda:1", ONE_GPU, "No GPU 'cuda:1': PyTorch sees 1 GPU(s): NVIDIA H100"),
    ("mps", CPU_BUILD, "No Apple GPU"),
    ("cuda", ONE_GPU, ""), ("cuda:0", ONE_GPU, ""), ("cpu", CPU_BUILD, ""), ("auto", CPU_BUILD, "")])
def test_device_problems_name_what_was_found(device, report, expected):
    problem = devices.deviceProblem(device, report)
    assert (expected in problem) if expected else problem == ""
    assert devices.describeDevice("auto", ONE_GPU) == "GPU 0: NVIDIA H100"
    assert devices.describeDevice("auto", CPU_BUILD) == "CPU"


def test_choosing_a_gpu_is_checked_against_the_engines_torch_before_any_job(ctx, tmp_path):
    requireEngine()
    import torch

    from ACTIONppLogic.core import ModuleLogic

    logic = ModuleLogic(ctx, tmp_path / "work", python=sys.executable, baseEnv=ENGINE_ENV)
    report = logic.deviceReport()
    assert report["torch"] == torch.__version__ and report["cuda_build"] == torch.version.cuda
    logic.checkDevice("cpu")
    if torch.cuda.is_available():
        pytest.skip("a usable GPU is present: nothing to refuse")
    with pytest.raises(devices.DeviceError, match="No GPU for training"):
        logic.startTraining([], TrainingSettings(device="cuda"))
    assert not (tmp_path / "work").exists()  # refused before anything was exported or started


def test_estimate_times_a_few_real_iterations_and_cleans_up(ctx, tmp_path, phantoms):
    requireEngine()
    from ACTIONppLogic.core import ModuleLogic

    logic = ModuleLogic(ctx, tmp_path / "work", python=sys.executable, baseEnv=ENGINE_ENV)
    settings = TrainingSettings(method="mean-teacher", iterations=5000, device="cpu", extraArgs=TINY_TRAINING)
    estimate = logic.estimateTraining(phantoms, settings, steps=3)
    assert 0 < estimate.secondsPerIteration < 30 and estimate.iterations == 5000
    assert estimate.pretrainIterations == 0  # mean-teacher has no pre-training stage
    assert estimate.seconds == pytest.approx(estimate.secondsPerIteration * 5000)
    assert "5000 iterations on CPU" in estimate.describe()
    assert list((tmp_path / "work" / "estimates").iterdir()) == []


def test_estimate_includes_the_pretraining_stage_the_engine_plans(ctx, tmp_path, phantoms):
    requireEngine()
    from actionpp.config import Config
    from ACTIONppLogic.core import ModuleLogic

    logic = ModuleLogic(ctx, tmp_path / "work", python=sys.executable, baseEnv=ENGINE_ENV)
    settings = TrainingSettings(method="actionpp", iterations=400, device="cpu",
                                extraArgs=[*TINY_TRAINING, "--pretrain-window", "16"])
    estimate = logic.estimateTraining(phantoms, settings, steps=2)
    planned = Config(method="actionpp", iterations=400).pretrain_iterations  # the engine's own default
    assert estimate.iterations == 400 and estimate.pretrainIterations == planned > 0
    assert 0 < estimate.pretrainSecondsPerIteration < 30
    assert estimate.seconds == pytest.approx(estimate.secondsPerIteration * 400
                                             + estimate.pretrainSecondsPerIteration * planned)
    assert f"{planned} pre-training steps and 400 iterations on CPU" in estimate.describe()
    assert list((tmp_path / "work" / "estimates").iterdir()) == []
