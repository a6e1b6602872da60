"""Fixtures of the Slicer-logic tests: a headless MRML scene (slicer-core), synthetic volumes and segmentations,
tiny phantom datasets. Helpers and constants live in ``actionpp_logic_testing``.

MRML tests start with ``pytest.importorskip("slicer_core")`` (the wheel's own package name: ``import slicer`` alone
could find the unrelated PyPI package called ``slicer``), so without slicer-core they are skipped with that reason.
Job, registry and dependency tests need no VTK.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from actionpp_logic_testing import SLICER_CORE_REASON, addSegmentation, addVolume, requireEngine


@pytest.fixture
def ctx():
    """A new headless scene with colour, volumes and segmentations logics (skips without slicer-core)."""
    pytest.importorskip("slicer_core", reason=SLICER_CORE_REASON)
    from ACTIONppLogic import mrml

    context = mrml.createHeadlessScene()
    yield context
    context.scene.Clear(1)


@pytest.fixture
def mk():
    """``mk.volume(...)`` / ``mk.segmentation(...)``: the helpers of actionpp_logic_testing."""
    return SimpleNamespace(volume=addVolume, segmentation=addSegmentation)


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    """A 3-case cardiac phantom dataset (2 labeled), 4 x 32 x 32: trains in milliseconds per step."""
    requireEngine()
    from actionpp.data.phantoms import make_phantoms

    out = tmp_path_factory.mktemp("phantoms") / "cardiac"
    make_phantoms("cardiac", 3, 2, out, seed=0, test_cases=0, size=(4, 32, 32))
    return out
