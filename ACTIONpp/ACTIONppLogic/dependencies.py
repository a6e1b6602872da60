"""What the engine needs in Slicer's Python, what is missing, and how to install it.

Checking never imports the packages (``importlib.util.find_spec`` + installed metadata), so torch is not loaded into
the Slicer process. Installing happens only when the GUI has asked the user (or a batch run passes
``--install-dependencies``): torch through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA build), the
rest with pip from ``Resources/requirements.txt`` (``>=`` bounds, no pins).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = "torch>=2.1"

# distribution name -> import name, where they differ
_IMPORT_NAMES = {"simpleitk": "SimpleITK", "pyyaml": "yaml", "scikit-image": "skimage", "pillow": "PIL"}


@dataclass(frozen=True)
class Requirement:
    name: str
    minimum: str = ""

    def __str__(self) -> str:
        return f"{self.name}>={self.minimum}" if self.minimum else self.name

    @property
    def importName(self) -> str:
        return _IMPORT_NAMES.get(self.name.lower(), self.name.replace("-", "_"))


@dataclass(frozen=True)
class MissingPackage:
    requirement: Requirement
    installed: str | None
    """Installed version when too old, None when absent."""

    def __str__(self) -> str:
        if self.installed is None:
            return f"{self.requirement.name} (not installed; needs {self.requirement})"
        return f"{self.requirement.name} {self.installed} (too old; needs {self.requirement})"


@dataclass
class InstallPlan:
    """``torch``: install through PyTorchUtils; ``pip``: requirement strings for one pip call."""

    torch: Requirement | None = None
    pip: list[str] = field(default_factory=list)
    missing: list[MissingPackage] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.torch is None and not self.pip

    def describe(self) -> str:
        lines = [f"- {m}" for m in self.missing]
        how = []
        if self.torch is not None:
            how.append("PyTorch through the PyTorch extension (it picks the build for your GPU)")
        if self.pip:
            how.append("pip install " + " ".join(self.pip))
        return "Missing for ACTIONpp training:\n" + "\n".join(lines) + "\n\nWill install: " + "; ".join(how) + "."


def parseRequirements(text: str) -> list[Requirement]:
    """``name`` or ``name>=version`` per line; comments and blank lines ignored; extras are dropped."""
    requirements = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(?:>=\s*([0-9][0-9A-Za-z.\-]*))?\s*(;.*)?", line)
        if not match:
            raise ValueError(f"requirements: expected 'name' or 'name>=version', found '{line}'")
        requirements.append(Requirement(match.group(1), match.group(3) or ""))
    return requirements


def loadRequirements(path=REQUIREMENTS) -> list[Requirement]:
    return parseRequirements(Path(path).read_text(encoding="utf-8"))


def _versionTuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.+\-]", version):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def versionAtLeast(installed: str, minimum: str) -> bool:
    """Numeric comparison of release segments (``2.13.0+cpu`` >= ``2.1``); enough for ``>=`` bounds."""
    if not minimum:
        return True
    a, b = _versionTuple(installed), _versionTuple(minimum)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def installedVersion(requirement: Requirement) -> str | None:
    """The installed version, "" when importable without metadata, None when not importable."""
    if importlib.util.find_spec(requirement.importName) is None:
        return None
    try:
        return importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def checkDependencies(requirements: list[Requirement] | None = None, torch: Requirement | None = None) -> InstallPlan:
    """Compare what is installed with torch + ``requirements`` and return the plan that fixes the gaps."""
    requirements = loadRequirements() if requirements is None else requirements
    torch = torch or Requirement(*TORCH_REQUIREMENT.split(">="))
    plan = InstallPlan()
    for requirement in [torch, *requirements]:
        version = installedVersion(requirement)
        if version is None or (version and not versionAtLeast(version, requirement.minimum)):
            plan.missing.append(MissingPackage(requirement, version))
            if requirement.name.lower() == "torch":
                plan.torch = requirement
            else:
                plan.pip.append(str(requirement))
    return plan


def installDependencies(plan: InstallPlan, pipInstall, installTorch=None) -> None:
    """Carry out ``plan``: ``installTorch(requirement_string)`` first, then ``pipInstall(list_of_requirements)``.

    In Slicer: ``installTorch`` wraps ``PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
    torchVersionRequirement=">=2.1")`` and ``pipInstall`` is ``slicer.util.pip_install``. Must run on the main thread
    (pip dialogs are Qt objects). Raises RuntimeError when torch is needed and no installer is given.
    """
    if plan.torch is not None:
        if installTorch is None:
            raise RuntimeError("PyTorch is missing: install the PyTorch extension (Extensions Manager) and restart "
                               "Slicer")
        installTorch(str(plan.torch))
    if plan.pip:
        pipInstall(list(plan.pip))
