"""Segment panel: pick a trained model and a volume, segment it into a new segmentation; one-click re-run on the
volume in view."""

from __future__ import annotations

from .common import Hooks, comboData, connect, fillCombo, read


class SegmentPanel:
    """Uses ``logic.listModels()``, ``logic.segment(volume, model, device=, createSurface=)`` and
    ``logic.pollSegmentation()``; a timer (injected) calls :meth:`poll` while a segmentation runs."""

    WIDGETS = ("modelComboBox", "refreshModelsButton", "loadModelButton", "modelInfoLabel", "inputVolumeSelector",
               "show3DCheckBox", "uncertaintyCheckBox", "segmentButton", "rerunButton", "acceptButton",
               "segmentStatusLabel")
    POLL_MS = 500

    def __init__(self, ui, logic, deviceProvider=lambda: "auto", timer=None, hooks: Hooks | None = None):
        self.ui, self.logic = ui, logic
        self.deviceProvider = deviceProvider
        self.timer = timer
        self.hooks = hooks or Hooks()
        self.models = {}
        self._skipped = []
        self.running = False
        self.lastVolume = None
        self.lastResult = None
        connect(ui.refreshModelsButton.clicked, self.refreshModels)
        connect(ui.loadModelButton.clicked, self.onLoadModel)
        connect(ui.acceptButton.clicked, self.onAccept)
        connect(ui.modelComboBox.currentIndexChanged, self._showModelInfo)
        connect(ui.segmentButton.clicked, self.onSegment)
        connect(ui.rerunButton.clicked, self.onRerun)
        connect(ui.inputVolumeSelector.currentNodeChanged, self.updateButtons)
        if timer is not None:
            timer.setInterval(self.POLL_MS)
            connect(timer.timeout, self.poll)
        self.refreshModels()

    # ---- models --------------------------------------------------------------------------------------------------
    def refreshModels(self, select=None) -> None:
        """List the runs with a model, newest first; keep (or set) the selection."""
        current = select if select is not None else comboData(self.ui.modelComboBox)
        models, skipped = self.logic.listModels()
        self.models = {str(m.path): m for m in models}
        items = [(f"{m.name} · {m.method} · {', '.join(m.classNames)}", str(m.path)) for m in models]
        fillCombo(self.ui.modelComboBox, items, str(current) if current is not None else None)
        self._skipped = skipped
        self._showModelInfo()

    def onLoadModel(self) -> None:
        """*Load model...*: a run folder or ``model.pt`` from anywhere, validated by the logic."""
        path = self.hooks.chooseModelPath()
        if not path:
            return
        try:
            info = self.logic.loadModel(path)
        except Exception as exc:
            self.hooks.showError(f"Could not load the model: {exc}", "")
            return
        self.refreshModels(select=str(info.path))

    def selectedModel(self):
        return self.models.get(comboData(self.ui.modelComboBox) or "")

    def _showModelInfo(self) -> None:
        model = self.selectedModel()
        text = model.describe() if model is not None else "No trained model yet: train one above."
        if self._skipped:
            text += f"\n({len(self._skipped)} unfinished run(s) not listed)"
        self.ui.modelInfoLabel.setText(text)
        self.hooks.onModelSelected(str(model.path) if model is not None else "")
        self.updateButtons()

    # ---- segmenting ----------------------------------------------------------------------------------------------
    def updateButtons(self) -> None:
        ready = self.selectedModel() is not None and not self.running
        self.ui.segmentButton.setEnabled(ready and self.ui.inputVolumeSelector.currentNode() is not None)
        self.ui.rerunButton.setEnabled(ready)
        self.ui.acceptButton.setEnabled(self.lastResult is not None and not self.running)

    def onAccept(self) -> None:
        """Copy the last (reviewed) result into a new segmentation that labels its volume in the Data table."""
        if self.lastResult is None:
            return
        try:
            accepted = self.logic.acceptAsLabels(self.lastResult)
        except Exception as exc:
            self.hooks.showError(f"Could not accept the result as labels: {exc}", "")
            return
        self.ui.segmentStatusLabel.setText(f"'{accepted.GetName()}' now labels its volume in the Data table.")
        self.hooks.onLabelsAccepted(accepted)

    def onSegment(self) -> None:
        self._start(self.ui.inputVolumeSelector.currentNode())

    def onRerun(self) -> None:
        """Segment the volume shown in the views (else the last one segmented, else the selected one)."""
        self._start(self.hooks.currentVolume() or self.lastVolume or self.ui.inputVolumeSelector.currentNode())

    def _start(self, volume) -> None:
        model = self.selectedModel()
        if volume is None or model is None:
            self.hooks.showError("Choose a trained model and a volume first.", "")
            return
        try:
            self.logic.segment(volume, model, device=self.deviceProvider(),
                               createSurface=bool(read(self.ui.show3DCheckBox, "checked")),
                               uncertainty=bool(read(self.ui.uncertaintyCheckBox, "checked")))
        except Exception as exc:
            self.hooks.showError(f"Could not start the segmentation: {exc}", "")
            return
        self.lastVolume = volume
        self.running = True
        self.ui.segmentStatusLabel.setText(f"Segmenting '{volume.GetName()}' with {model.name}...")
        if self.timer is not None:
            self.timer.start()
        self.updateButtons()

    def poll(self) -> None:
        status = self.logic.pollSegmentation()
        if status is None or status.state == "running":
            return
        if self.timer is not None:
            self.timer.stop()
        self.running = False
        if status.state == "finished":
            self.lastResult = status.segmentation
            self.ui.segmentStatusLabel.setText(f"Created '{status.segmentation.GetName()}'. Correct it in "
                                               "section 4, then 'Accept as labels' to train on it.")
            self.hooks.onSegmentation(status.segmentation)
            if getattr(status, "uncertainty", None) is not None:
                self.hooks.onUncertainty(status.uncertainty)
        elif status.state == "failed":
            self.ui.segmentStatusLabel.setText(f"Failed: {status.errorMessage}")
            self.hooks.showError(f"Segmentation failed: {status.errorMessage}", status.logTail)
        else:
            self.ui.segmentStatusLabel.setText("Segmentation cancelled.")
        self.updateButtons()
