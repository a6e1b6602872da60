"""Dependency check and install plan: nothing is installed unless the caller carries the plan out."""

from __future__ import annotations

import pytest

from ACTIONppLogic import dependencies as deps
from ACTIONppLogic.dependencies import Requirement


def test_requirements_file_has_lower_bounds_only_and_no_torch():
    text = deps.REQUIREMENTS.read_text()
    requirements = deps.loadRequirements()
    names = {r.name.lower() for r in requirements}
    assert {"monai", "simpleitk", "h5py"} <= names and "torch" not in names
    assert "==" not in text and all(r.minimum for r in requirements)


def test_parse_and_compare_versions():
    assert deps.parseRequirements("# c\nmonai[nibabel]>=1.3  # x\n\nh5py\n") == [Requirement("monai", "1.3"),
                                                                             Requirement("h5py")]
    with pytest.raises(ValueError, match="expected 'name' or 'name>=version'"):
        deps.parseRequirements("torch==2.0")
    assert deps.versionAtLeast("2.13.0+cpu", "2.1") and deps.versionAtLeast("1.3", "1.3.0")
    assert not deps.versionAtLeast("1.2.9", "1.3") and deps.versionAtLeast("10.0", "9.9")
    assert Requirement("SimpleITK").importName == "SimpleITK" and Requirement("scikit-image").importName == "skimage"


def test_check_lists_missing_and_too_old_packages_with_the_plan():
    plan = deps.checkDependencies([Requirement("numpy", "1.0"), Requirement("numpy", "999"),
                                   Requirement("surely-not-installed-xyz", "1.0")], torch=Requirement("torch", "1.0"))
    assert plan.torch is None  # torch is installed in the test environment
    assert plan.pip == ["numpy>=999", "surely-not-installed-xyz>=1.0"]
    assert [m.installed is None for m in plan.missing] == [False, True]
    text = plan.describe()
    assert "too old" in text and "not installed" in text and "pip install numpy>=999" in text


def test_install_runs_torch_first_then_pip_and_needs_a_torch_installer():
    calls = []
    plan = deps.InstallPlan(torch=Requirement("torch", "2.1"), pip=["monai>=1.3"])
    deps.installDependencies(plan, pipInstall=lambda r: calls.append(("pip", r)),
                             installTorch=lambda r: calls.append(("torch", r)))
    assert calls == [("torch", "torch>=2.1"), ("pip", ["monai>=1.3"])]
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        deps.installDependencies(plan, pipInstall=lambda r: None)
    assert deps.InstallPlan().empty
