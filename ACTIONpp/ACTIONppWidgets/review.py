"""Review panel (section 4): Slicer's Segment Editor embedded in the module panel, so that a model's result or a new
label map is corrected in place, next to *Accept as labels* and *Train*, without switching modules.

What the editor needs when it lives outside the Segment Editor module follows that module's own widget
(Slicer Modules/Scripted/SegmentEditor/SegmentEditor.py): a parameter node set before anything else, keyboard
shortcuts installed on enter, and on exit the active effect cleared, shortcuts removed and view observations dropped.
The parameter node is the panel's own (``logic.segmentEditorNode()``, singleton tag ``ACTIONpp``), not the module's.
"""

from __future__ import annotations


class ReviewPanel:
    """Drives ``ui.segmentEditorWidget`` (a ``qMRMLSegmentEditorWidget``) inside ``ui.reviewCollapsibleButton``."""

    WIDGETS = ("reviewCollapsibleButton", "reviewLabel", "segmentEditorWidget")
    UNDO_STATES = 10

    def __init__(self, ui, logic):
        self.ui, self.logic = ui, logic
        self.editor = ui.segmentEditorWidget
        self.editor.setMaximumNumberOfUndoStates(self.UNDO_STATES)
        self.selectParameterNode()

    def selectParameterNode(self) -> None:
        """Give the editor the panel's parameter node (again after a scene was closed or imported)."""
        node = self.logic.segmentEditorNode()
        if self.editor.mrmlSegmentEditorNode() is not node:
            self.editor.setMRMLSegmentEditorNode(node)

    def edit(self, volume, segmentation, message: str) -> None:
        """Open ``segmentation`` over ``volume`` in the embedded editor and show the section with ``message``."""
        self.selectParameterNode()
        self.editor.setSegmentationNode(segmentation)
        self.editor.setSourceVolumeNode(volume)
        self.ui.reviewLabel.setText(message)
        self.ui.reviewCollapsibleButton.collapsed = False

    def editing(self):
        """``(volume, segmentation)`` in the editor now (either may be None)."""
        return self.editor.sourceVolumeNode(), self.editor.segmentationNode()

    def enter(self) -> None:
        self.selectParameterNode()
        self.editor.installKeyboardShortcuts()

    def exit(self) -> None:
        self.editor.setActiveEffect(None)
        self.editor.uninstallKeyboardShortcuts()
        self.editor.removeViewObservations()

    def sceneStartClose(self) -> None:
        self.editor.setSegmentationNode(None)
        self.editor.removeViewObservations()
