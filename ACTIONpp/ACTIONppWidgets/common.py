"""Small helpers that let the same controller code drive Slicer's PythonQt widgets and PySide6 widgets.

PythonQt exposes Qt properties as attributes (``spinBox.value`` is an int, ``lineEdit.text`` a str) while PySide6
exposes getter methods (``spinBox.value()``, ``checkBox.isChecked()``). :func:`read` accepts both. Setters
(``setValue``, ``setText``...) and signals (``clicked.connect``) are the same in both.
"""

from __future__ import annotations

_MISSING = object()


def read(widget, prop: str):
    """Value of Qt property ``prop`` of ``widget`` under PythonQt (attribute) or PySide6 (getter / ``is`` getter)."""
    value = getattr(widget, prop, _MISSING)
    if value is _MISSING:
        value = getattr(widget, "is" + prop[0].upper() + prop[1:])
    return value() if callable(value) else value


def connect(signal, handler) -> None:
    """Connect ``signal`` to ``handler`` called with no argument (drops ``checked``, indices, texts...)."""
    signal.connect(lambda *args: handler())


def comboData(combo):
    """Data of the current combo item (None when the combo is empty)."""
    if read(combo, "currentIndex") < 0:
        return None
    return combo.itemData(read(combo, "currentIndex"))


def fillCombo(combo, items, select=None) -> None:
    """Replace the items of ``combo`` with ``[(text, data)]`` and select the item whose data is ``select``."""
    combo.blockSignals(True)
    try:
        combo.clear()
        for text, data in items:
            combo.addItem(text, data)
        index = combo.findData(select) if select is not None else -1
        combo.setCurrentIndex(index if index >= 0 else (0 if items else -1))
    finally:
        combo.blockSignals(False)


def selectData(combo, data) -> bool:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
    return index >= 0


class Hooks:
    """Callbacks the module widget supplies; every one is optional and defaults to doing nothing.

    - ``showError(message, details)``: error dialog (``details``: the log tail).
    - ``confirm(question) -> bool``: ask before installing dependencies.
    - ``installDependencies(plan)``: carry out an install plan (PyTorchUtils + pip in Slicer).
    - ``showCurves()``: put the training chart in the layout.
    - ``onCurves(curves)``: new curve data at each poll (tests read it; Slicer's chart is fed by the logic).
    - ``onTrainingFinished(runDir)``: a model is ready.
    - ``onSegmentation(node)``: a segmentation was created.
    - ``currentVolume() -> node``: the volume shown in the slice views (for "segment the volume in view").
    - ``busy()``: context manager (wait cursor) around blocking steps such as the export.
    - ``chooseModelPath() -> str``: file dialog for *Load model...* ("" when cancelled).
    - ``onLabelsAccepted(node)``: a reviewed result became labels (the Data table refreshes).
    - ``onModelSelected(path)``: the chosen model changed, also when the list was refilled ("" for none).
    - ``openForLabeling(volume, segmentation)``: show the volume and open the Segment Editor on the segmentation.
    - ``onUncertainty(node)``: an uncertainty map was created (shown over the slices).
    """

    def __init__(self, **hooks):
        self._hooks = hooks

    def __getattr__(self, name):
        hook = self.__dict__.get("_hooks", {}).get(name)
        if hook is not None:
            return hook
        if name == "confirm":
            return lambda question: False
        if name == "busy":
            return _NullContext
        if name in ("currentVolume", "chooseModelPath"):
            return lambda: None
        return lambda *args, **kwargs: None


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
