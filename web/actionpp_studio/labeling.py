"""Labels of the selected case on the page: trame-slicer's segmentation editor (paint / erase), new labels for an
unlabeled case (``ModuleLogic.createLabelsFor`` with the dataset's classes), and *Save labels* to
``WORK/labels/<case>.seg.nrrd`` (``workspace.saveLabels``: never inside ``--data``, never over a file the page did
not load).

A mixin of :class:`~actionpp_studio.app.StudioApp`: it uses the app's ``state``, ``logic``, ``slicerApp``, ``folders``
and ``selectCase`` / ``refreshCases`` / ``_say``.
"""

from __future__ import annotations

import os

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer.segmentation import SegmentationEffectErase, SegmentationEffectPaint

from . import workspace

workspace.ensureLogicOnPath()
from ACTIONppLogic import export, mrml  # noqa: E402

EFFECTS = {"paint": SegmentationEffectPaint, "erase": SegmentationEffectErase}
LABEL_STATE = {"segments": [], "segment": None, "effect": "none", "edit_info": "", "has_labels": False,
               "labels_file": "", "labels_dirty": False, "label_classes": "", "can_discard": False}


def _testid(name: str) -> list[str]:
    return [f'data-testid="{name}"']


STARTED_HERE = "ACTIONppStudio.StartedHere"
"""Set on labels started with *New labels*: until saved, *Discard* may remove them."""


class LabelingMixin:
    _edited = None

    def _editLabelsOf(self, volume) -> None:
        """Make the case's labels the editor's segmentation (none for an unlabeled case), tools off."""
        editor = self.slicerApp.segmentation_editor
        editor.deactivate_effect()
        self.state.effect = "none"
        labels = self.logic.guessSegmentation(volume)
        self._edited = labels
        self.state.label_classes = ", ".join(self.logic.segmentNames(self._classesTemplate()) or ())
        if labels is None:
            self.state.update({"segments": [], "segment": None, "edit_info": "", "has_labels": False,
                               "labels_file": "", "labels_dirty": False, "can_discard": False})
            return
        editor.set_active_segmentation(labels, volume)
        saved = labels.GetAttribute(workspace.LABELS_FILE_ATTRIBUTE) or ""
        self.state.update({"has_labels": True, "labels_dirty": False, "can_discard": self._discardable(labels),
                           "labels_file": os.path.relpath(saved, self.folders.work) if saved else ""})
        self.state.segments = [{"title": name, "value": sid} for sid, name in mrml.segmentNames(labels)]
        self.state.segment = editor.get_active_segment_id() or (self.state.segments[0]["value"]
                                                                 if self.state.segments else None)
        self._updateEditInfo()

    @staticmethod
    def _discardable(labels) -> bool:
        return bool(labels.GetAttribute(STARTED_HERE)) and not labels.GetAttribute(workspace.LABELS_FILE_ATTRIBUTE)

    def _classesTemplate(self):
        """The labels of the first labeled case: their segments are the dataset's classes."""
        return next((s for s in map(self.logic.guessSegmentation, self.logic.listVolumes()) if s is not None), None)

    def _updateEditInfo(self) -> None:
        if self._edited is None or not self.state.segment:
            return
        segment = self._edited.GetSegmentation().GetSegment(self.state.segment)
        if segment is None:
            return
        count = export.segmentVoxelCount(self._edited, self.state.segment)
        self.state.edit_info = f"{segment.GetName()}: {count} voxels"

    def _selectSegment(self, segment) -> None:
        if self._edited is not None and segment:
            self.slicerApp.segmentation_editor.set_active_segment_id(segment)
            self._updateEditInfo()

    def setEffect(self, effect: str) -> None:
        editor = self.slicerApp.segmentation_editor
        if self._edited is None or effect not in EFFECTS:
            editor.deactivate_effect()
            self.state.effect = "none"
            return
        if self.state.segment:
            editor.set_active_segment_id(self.state.segment)
        editor.set_active_effect_type(EFFECTS[effect])
        self.state.effect = effect

    def _onEdited(self, *_) -> None:
        with self.state:
            self.state.labels_dirty = True
            self._updateEditInfo()
            self.refreshCases()

    def newLabels(self) -> None:
        """Start labels for the selected (unlabeled) case, with the dataset's classes, and open them for editing."""
        volume = self._volume(self.state.selected_case)
        if volume is None or self.logic.guessSegmentation(volume) is not None:
            return
        template = self._classesTemplate()
        if template is None:
            self._say("New labels: no labeled case to take the classes from", "error")
            return
        labels = self.logic.createLabelsFor(volume, like=template)
        labels.SetAttribute(STARTED_HERE, "1")
        self.selectCase(volume.GetID())
        self.refreshCases()
        self.state.labels_dirty = True
        self._say(f"New labels for {volume.GetName()}: paint, then Save labels")

    def discardLabels(self) -> None:
        """Remove labels started on the page and never saved (the case is unlabeled again)."""
        volume = self._volume(self.state.selected_case)
        labels = self.logic.guessSegmentation(volume) if volume is not None else None
        if labels is None or not self._discardable(labels):
            return
        self.slicerApp.segmentation_editor.deactivate_effect()
        self.logic.scene.RemoveNode(labels)
        self._edited = None
        self.selectCase(volume.GetID())
        self.refreshCases()
        self._say(f"Discarded the new labels of {volume.GetName()}")

    def saveLabels(self) -> None:
        volume = self._volume(self.state.selected_case)
        labels = self.logic.guessSegmentation(volume) if volume is not None else None
        if labels is None:
            return
        try:
            path = workspace.saveLabels(labels, self.folders, volume.GetName())
        except (ValueError, OSError) as exc:
            self._say(f"Save labels: {exc}", "error")
            return
        self.state.update({"labels_file": str(path.relative_to(self.folders.work)), "labels_dirty": False,
                           "can_discard": False})
        self._say(f"Saved the labels of {volume.GetName()} to {path.relative_to(self.folders.work)}", "success")

    def _labelPanel(self) -> None:
        with html.Div(v_if="selected_case", classes="mt-2"):
            html.Div("Labels of the selected case", classes="text-subtitle-1")
            with html.Div(v_if="!has_labels"):
                v3.VBtn("New labels", click=self.newLabels, disabled=("!label_classes",), size="small",
                        prepend_icon="mdi-brush", raw_attrs=_testid("new-labels-button"))
                html.Div("{{ label_classes ? 'Unlabeled: start labels with the classes ' + label_classes "
                         ": 'Unlabeled, and no labeled case to take classes from' }}", classes="text-caption")
            with html.Div(v_if="has_labels"):
                with html.Div(classes="d-flex align-center"):
                    v3.VSelect(label="Segment", v_model=("segment",), items=("segments",), density="compact",
                               hide_details=True, classes="mr-1", raw_attrs=_testid("segment-select"))
                    with v3.VBtnToggle(v_model=("effect",), density="compact", mandatory=True,
                                       update_modelValue=(self.setEffect, "[$event]")):
                        v3.VBtn("Paint", value="paint", raw_attrs=_testid("paint-button"))
                        v3.VBtn("Erase", value="erase", raw_attrs=_testid("erase-button"))
                        v3.VBtn("Off", value="none", raw_attrs=_testid("edit-off-button"))
                html.Div("{{ edit_info }}", classes="text-caption", raw_attrs=_testid("edit-info"))
                with html.Div(classes="d-flex align-center"):
                    v3.VBtn("Save labels", click=self.saveLabels, size="small", classes="mr-2",
                            prepend_icon="mdi-content-save", raw_attrs=_testid("save-labels-button"))
                    v3.VBtn("Discard", v_if="can_discard", click=self.discardLabels, size="small", variant="outlined",
                            classes="mr-2", raw_attrs=_testid("discard-labels-button"))
                    html.Div("{{ labels_dirty ? 'not saved' : (labels_file ? 'saved in ' + labels_file : "
                             "'from the data folder') }}", classes="text-caption", raw_attrs=_testid("labels-file"))
