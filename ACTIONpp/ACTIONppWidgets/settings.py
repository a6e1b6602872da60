"""Keeps the panel's training and model choices and the scene's parameter node in step, both ways.

The parameter node (``ACTIONppParameterNode`` in ACTIONpp.py, a ``slicer.parameterNodeWrapper``) is saved with the
scene; loading a scene therefore restores method, dims, iterations, device, work folder and the selected model.
Any object with those attributes works here (duck typing), and ``StartModify``/``EndModify`` are used when present so
that one GUI change is one ``ModifiedEvent``.
"""

from __future__ import annotations

from .common import comboData, connect, read, selectData

FIELDS = ("method", "dims", "iterations", "device", "workFolder", "model")


class SettingsBinding:
    """``setParameters(node)`` shows ``node`` in the GUI; GUI edits are written back to it."""

    WIDGETS = ("methodComboBox", "dimsComboBox", "iterationsSpinBox", "deviceComboBox", "workFolderPathLineEdit",
               "modelComboBox")

    def __init__(self, ui, selectModel=None):
        """``selectModel(path)``: make the model at ``path`` the current one (the segment panel lists it)."""
        self.ui = ui
        self.selectModel = selectModel
        self.parameters = None
        self._busy = False  # writing to the node, or showing it: ignore the echo
        for signal in (ui.methodComboBox.currentIndexChanged, ui.dimsComboBox.currentIndexChanged,
                       ui.iterationsSpinBox.valueChanged, ui.deviceComboBox.currentIndexChanged,
                       ui.workFolderPathLineEdit.currentPathChanged, ui.modelComboBox.currentIndexChanged):
            connect(signal, self.fromGui)

    def setParameters(self, parameters) -> None:
        self.parameters = parameters
        self.toGui()

    def toGui(self) -> None:
        """Show the node's values (after a scene load, or when another view changed the node)."""
        p = self.parameters
        if p is None or self._busy:
            return
        self._busy = True
        try:
            selectData(self.ui.methodComboBox, p.method)
            selectData(self.ui.dimsComboBox, str(p.dims))
            self.ui.iterationsSpinBox.setValue(int(p.iterations))
            selectData(self.ui.deviceComboBox, p.device)
        finally:
            self._busy = False
        # Outside the guard: these two run the module's own reactions (work folder -> model list).
        if p.workFolder and str(p.workFolder) != read(self.ui.workFolderPathLineEdit, "currentPath"):
            self.ui.workFolderPathLineEdit.setCurrentPath(str(p.workFolder))
        if p.model and p.model != comboData(self.ui.modelComboBox) and self.selectModel is not None:
            self.selectModel(p.model)

    def fromGui(self) -> None:
        p = self.parameters
        if p is None or self._busy:
            return
        self._busy = True
        modify = getattr(p, "StartModify", None)
        wasModifying = modify() if modify else None
        try:
            p.method = comboData(self.ui.methodComboBox) or p.method
            p.dims = int(comboData(self.ui.dimsComboBox) or p.dims)
            p.iterations = int(read(self.ui.iterationsSpinBox, "value"))
            p.device = comboData(self.ui.deviceComboBox) or p.device
            p.workFolder = read(self.ui.workFolderPathLineEdit, "currentPath") or p.workFolder
            model = comboData(self.ui.modelComboBox)
            if model:
                p.model = model
        finally:
            if modify:
                p.EndModify(wasModifying)
            self._busy = False
