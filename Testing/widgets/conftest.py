"""Fixtures of the widget tests (PySide6, offscreen); the helpers are in ``actionpp_widget_testing``.

Each test module starts with ``pytest.importorskip("PySide6.QtUiTools")``, so without PySide6 the widget tests are
skipped with that reason; the fixtures import the helpers lazily for the same reason.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def qapp():
    from actionpp_widget_testing import qapplication

    return qapplication()


@pytest.fixture
def ui(qapp):
    from actionpp_widget_testing import loadUi

    widget, namespace = loadUi(qapp)
    yield namespace
    widget.deleteLater()


@pytest.fixture
def logic():
    from actionpp_widget_testing import FakeLogic

    return FakeLogic()


@pytest.fixture
def recorder():
    from actionpp_widget_testing import Recorder

    return Recorder()
