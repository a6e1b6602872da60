"""Render the ACTIONpp panel as Slicer shows it (the real .ui and widget code, offscreen Qt, real MRML) to a PNG.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/render_panel.py docs/images/slicer_panel.png

Uses the application stand-in of the widget tests (Testing/widgets/slicer_app_double.py); the scene holds three
synthetic volumes, two of them segmented, as in the walk-through of docs/slicer.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "Testing" / "widgets"), str(REPO / "ACTIONpp")]


def main(out: str) -> None:
    import pytest
    from PySide6 import QtCore, QtWidgets
    from slicer_app_double import SlicerApplication
    from test_module_in_slicer import _scene

    from ACTIONppLogic import mrml

    qapp = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as monkeypatch:
        context = mrml.createHeadlessScene()
        app = SlicerApplication(qapp, context, Path(tmp) / "settings").install(monkeypatch)
        QtCore.QSettings().setValue("ACTIONpp/WorkFolder", str(Path.home() / "ACTIONpp"))
        _scene()
        app.openModule()
        panel = app.widgetParent
        panel.resize(520, 980)
        panel.show()
        qapp.processEvents()
        image = panel.grab().toImage()
        if not image.save(out):
            raise OSError(f"{out}: could not write the picture")
        app.close()
        context.scene.Clear(1)
    print(f"wrote {out} ({image.width()} x {image.height()})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "slicer_panel.png")
