"""Data panel: which volumes take part, which segmentation labels each, what the curation check says, and which
unlabeled volume to label next (the selected model's uncertainty)."""

from __future__ import annotations

from .common import Hooks, connect, read

SKIP = "skip"
UNLABELED = "unlabeled"
COLUMN_VOLUME, COLUMN_ROLE, COLUMN_SEGMENTS, COLUMN_SCORE = 0, 1, 2, 3


class CurationPanel:
    """Fills ``volumesTableWidget`` from the scene and keeps the check's verdict up to date.

    Row = one scalar volume. Its combo box chooses: not used, unlabeled, or one of the scene's segmentations
    (default: the segmentation made on that volume in the Segment Editor, else unlabeled). Choices survive a refresh.
    """

    WIDGETS = ("volumesTableWidget", "refreshVolumesButton", "countsLabel", "classesLabel", "problemsTextEdit",
               "rankButton", "labelNextButton")

    def __init__(self, ui, logic, qt, hooks: Hooks | None = None, onChanged=None, modelProvider=lambda: None,
                 deviceProvider=lambda: "auto"):
        """``modelProvider()``: the selected trained model (or None), used by *Rank unlabeled*."""
        self.ui, self.logic, self.qt = ui, logic, qt
        self.hooks = hooks or Hooks()
        self.onChanged = onChanged
        self.modelProvider, self.deviceProvider = modelProvider, deviceProvider
        self.report = None
        self.scores: dict[str, float] = {}  # volume ID -> uncertainty of the last ranking
        self._rows: list[tuple[str, object]] = []  # (volume ID, combo box)
        self._choices: dict[str, str] = {}  # volume ID -> SKIP | UNLABELED | segmentation ID
        table = ui.volumesTableWidget
        table.setColumnCount(4)
        table.setHorizontalHeaderLabels(["Volume", "Labels", "Segments", "Uncertainty"])
        connect(ui.refreshVolumesButton.clicked, self.refresh)
        connect(ui.rankButton.clicked, self.onRank)
        connect(ui.labelNextButton.clicked, self.onLabelNext)

    # ---- table ---------------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the rows from the scene, keeping the user's choices for volumes still there."""
        for volumeId, combo in self._rows:
            self._choices[volumeId] = combo.itemData(read(combo, "currentIndex"))
        volumes = self.logic.listVolumes()
        segmentations = self.logic.listSegmentations()
        table = self.ui.volumesTableWidget
        table.setRowCount(0)
        table.setRowCount(len(volumes))
        self._rows = []
        for row, volume in enumerate(volumes):
            table.setItem(row, COLUMN_VOLUME, self.qt.QTableWidgetItem(volume.GetName()))
            combo = self.qt.QComboBox()
            combo.addItem("(not used)", SKIP)
            combo.addItem("unlabeled", UNLABELED)
            for segmentation in segmentations:
                combo.addItem(segmentation.GetName(), segmentation.GetID())
            choice = self._choices.get(volume.GetID())
            if choice is None or combo.findData(choice) < 0:
                guess = self.logic.guessSegmentation(volume)
                choice = guess.GetID() if guess is not None else UNLABELED
            combo.setCurrentIndex(combo.findData(choice))
            connect(combo.currentIndexChanged, self._onChoiceChanged)
            table.setCellWidget(row, COLUMN_ROLE, combo)
            table.setItem(row, COLUMN_SEGMENTS, self.qt.QTableWidgetItem(""))
            score = self.scores.get(volume.GetID())
            table.setItem(row, COLUMN_SCORE, self.qt.QTableWidgetItem("" if score is None else f"{score:.3f}"))
            self._rows.append((volume.GetID(), combo))
        self.update()

    def setChoice(self, volume, segmentation=None, skip: bool = False) -> None:
        """Choose programmatically (tests, the self-test): a segmentation, unlabeled (None) or not used."""
        for volumeId, combo in self._rows:
            if volumeId == volume.GetID():
                choice = SKIP if skip else segmentation.GetID() if segmentation is not None else UNLABELED
                combo.setCurrentIndex(combo.findData(choice))
        self.update()

    def _onChoiceChanged(self) -> None:
        self.update()

    def cases(self) -> list:
        """``[(volume, segmentation or None)]`` for the rows in use."""
        cases = []
        for volumeId, combo in self._rows:
            choice = combo.itemData(read(combo, "currentIndex"))
            volume = self.logic.nodeByID(volumeId)
            if choice == SKIP or volume is None:
                continue
            cases.append((volume, None if choice == UNLABELED else self.logic.nodeByID(choice)))
        return cases

    # ---- what to label next --------------------------------------------------------------------------------------
    def unlabeledVolumes(self) -> list:
        return [volume for volume, segmentation in self.cases() if segmentation is None]

    def onRank(self) -> None:
        """Score the unlabeled volumes with the selected model (blocking, wait cursor) and show the scores."""
        model, volumes = self.modelProvider(), self.unlabeledVolumes()
        if model is None or not volumes:
            self.hooks.showError("Ranking needs a trained model (choose one under Segment) and unlabeled volumes.", "")
            return
        try:
            with self.hooks.busy():
                ranking = self.logic.rankVolumes(volumes, model, device=self.deviceProvider())
        except Exception as exc:
            self.hooks.showError(f"Could not rank the volumes: {exc}", "")
            return
        self.scores = {volume.GetID(): score for volume, score in ranking}
        self.refresh()

    def nextToLabel(self):
        """The unlabeled volume with the highest score of the last ranking, or None."""
        ranked = [(self.scores[v.GetID()], i, v) for i, v in enumerate(self.unlabeledVolumes())
                  if v.GetID() in self.scores]
        return max(ranked, key=lambda t: (t[0], -t[1]))[2] if ranked else None

    def onLabelNext(self) -> None:
        """Give the most uncertain unlabeled volume a new segmentation and open it for labeling."""
        volume = self.nextToLabel()
        if volume is None:
            self.hooks.showError("Rank the unlabeled volumes first (Rank unlabeled).", "")
            return
        segmentation = self.logic.createLabelsFor(volume)
        self.refresh()
        self.setChoice(volume, segmentation)
        self.hooks.openForLabeling(volume, segmentation)

    # ---- verdict -------------------------------------------------------------------------------------------------
    def update(self) -> None:
        """Run the curation check on the current rows and show counts, classes and problems."""
        for row, (volumeId, combo) in enumerate(self._rows):
            choice = combo.itemData(read(combo, "currentIndex"))
            segmentation = self.logic.nodeByID(choice) if choice not in (SKIP, UNLABELED) else None
            names = ", ".join(self.logic.segmentNames(segmentation)) if segmentation is not None else ""
            item = self.ui.volumesTableWidget.item(row, COLUMN_SEGMENTS)
            if item is not None:
                item.setText(names)
        self.report = self.logic.checkCuration(self.cases())
        report = self.report
        self.ui.countsLabel.setText(f"Labeled: {report.labeled} · Unlabeled: {report.unlabeled}")
        classes = ", ".join(f"{name} ({value})" for name, value in report.classes.items())
        self.ui.classesLabel.setText(f"Classes: {classes}" if classes else "Classes: none yet")
        lines = [("✖ " if p.severity == "error" else "⚠ ") + p.message for p in report.problems]
        self.ui.problemsTextEdit.setPlainText("\n".join(lines) if lines else "✔ Ready to train.")
        if self.onChanged is not None:
            self.onChanged()

    def canTrain(self) -> bool:
        return self.report is not None and self.report.canTrain

    def blockingMessage(self) -> str:
        """Why training is blocked ("" when it is not)."""
        if self.report is None:
            return "Refresh the volume list first."
        errors = [p for p in self.report.problems if p.severity == "error"]
        return errors[0].message if errors else ""
