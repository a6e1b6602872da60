"""Stand-ins for the Slicer designer widgets ACTIONpp's .ui uses, on PySide6, each reproducing what the module relies
on from the Slicer/CTK class it is named after (files named in each docstring). Used by ``slicer_app_double``."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtWidgets


class qMRMLWidget(QtWidgets.QWidget):  # noqa: N801 - Slicer's class name, looked up by the .ui loader
    """``Libs/MRML/Widgets/qMRMLWidget``: holds a scene; ``setMRMLScene`` emits ``mrmlSceneChanged``, which the .ui
    connects to each MRML child widget's ``setMRMLScene``."""

    mrmlSceneChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(QtWidgets.QComboBox):  # noqa: N801
    """``Libs/MRML/Widgets/qMRMLNodeComboBox``: lists the scene's nodes of ``nodeTypes`` (subclasses too unless
    ``showChildNodeTypes`` is false; nodes hidden from editors left out), follows node additions and removals, and
    emits ``currentNodeChanged(node)``. With ``noneEnabled`` false the first node listed becomes current, as the
    combo box selects the first item inserted into an empty list."""

    currentNodeChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._observers = []
        self.currentIndexChanged.connect(lambda index: self.currentNodeChanged.emit(self.currentNode()))

    def _accepts(self, node) -> bool:
        types = list(self.property("nodeTypes") or [])
        showChildren = self.property("showChildNodeTypes")
        showChildren = True if showChildren is None else bool(showChildren)
        if node.GetHideFromEditors():
            return False
        if showChildren:
            return any(node.IsA(t) for t in types)
        return node.GetClassName() in types

    def setMRMLScene(self, scene):
        if scene is self._scene:
            return
        if self._scene is not None:
            for tag in self._observers:
                self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        self.clear()
        if scene is None:
            return
        for i in range(scene.GetNumberOfNodes()):
            self._add(scene.GetNthNode(i))
        self._observers = [scene.AddObserver(scene.NodeAddedEvent, self._onNodeAdded),
                           scene.AddObserver(scene.NodeRemovedEvent, self._onNodeRemoved)]

    def _add(self, node):
        if node is not None and self._accepts(node) and self.findData(node.GetID()) < 0:
            self.addItem(node.GetName(), node.GetID())

    def _onNodeAdded(self, caller, event, callData=None):
        self._refreshSoon()

    def _onNodeRemoved(self, caller, event, callData=None):
        self._refreshSoon()

    def _refreshSoon(self):
        # VTK passes the node as call data only to observers declared with a call-data type: re-read the scene.
        current = self.currentNodeID()
        ids = []
        for i in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(i)
            if self._accepts(node):
                ids.append(node.GetID())
        for index in reversed(range(self.count())):
            if self.itemData(index) not in ids:
                self.removeItem(index)
        for nodeId in ids:
            self._add(self._scene.GetNodeByID(nodeId))
        if current and self.findData(current) >= 0:
            self.setCurrentIndex(self.findData(current))

    def currentNodeID(self):
        index = self.currentIndex()
        return self.itemData(index) if index >= 0 else None

    def currentNode(self):
        nodeId = self.currentNodeID()
        return self._scene.GetNodeByID(nodeId) if (nodeId and self._scene is not None) else None

    def setCurrentNode(self, node):
        self.setCurrentIndex(self.findData(node.GetID()) if node is not None else -1)

    def nodeCount(self):
        return self.count()


class ctkCollapsibleButton(QtWidgets.QGroupBox):  # noqa: N801
    """``CTK Libs/Widgets/ctkCollapsibleButton``: a titled container (``text``) that can be ``collapsed`` (drawn
    here as a group box with that title)."""

    def getText(self):
        return self.title()

    def setText(self, text):
        self.setTitle(text)

    def getCollapsed(self):
        return bool(self.property("_collapsed"))

    def setCollapsed(self, collapsed):
        self.setProperty("_collapsed", bool(collapsed))
        for child in self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindDirectChildrenOnly):
            child.setVisible(not collapsed)

    text = QtCore.Property(str, getText, setText)
    collapsed = QtCore.Property(bool, getCollapsed, setCollapsed)


class ctkPathLineEdit(QtWidgets.QWidget):  # noqa: N801
    """``CTK Libs/Widgets/ctkPathLineEdit``: a path field; ``currentPath`` property, ``setCurrentPath`` slot and
    ``currentPathChanged(QString)`` signal (emitted when the path changes)."""

    currentPathChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.lineEdit = QtWidgets.QLineEdit(self)
        QtWidgets.QHBoxLayout(self).addWidget(self.lineEdit)
        self.lineEdit.editingFinished.connect(lambda: self.currentPathChanged.emit(self.lineEdit.text()))

    def getCurrentPath(self):
        return self.lineEdit.text()

    def setCurrentPath(self, path):
        if str(path) != self.lineEdit.text():
            self.lineEdit.setText(str(path))
            self.currentPathChanged.emit(str(path))

    currentPath = QtCore.Property(str, getCurrentPath, setCurrentPath)


def _boolProperty(name):
    def get(self):
        return bool(self.property(f"_{name}") if self.property(f"_{name}") is not None else True)

    def set_(self, value):
        self.setProperty(f"_{name}", bool(value))

    return QtCore.Property(bool, get, set_)


class qMRMLSegmentEditorWidget(qMRMLWidget):  # noqa: N801
    """``Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget`` (.h/.cxx): the editor keeps its state in
    a ``vtkMRMLSegmentEditorNode`` through Slicer's own ``vtkSlicerSegmentEditorLogic`` (the real logic here, from
    slicer-core), as the widget does: ``setMRMLSegmentEditorNode`` hands the node to the logic,
    ``setSegmentationNode``/``setSourceVolumeNode`` go to the logic (switching segmentation deactivates the active
    effect), ``segmentationNode()``/``sourceVolumeNode()`` read them back. Keyboard shortcuts and view observations,
    which need the application's views, are recorded as states (``shortcutsInstalled``, ``observingViews``); the
    designer properties the .ui sets are plain bool properties (drawing nothing)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        import slicer

        self._logic = slicer.vtkSlicerSegmentEditorLogic()
        self._editorNode = None
        self._activeEffect = None
        self.undoStates = 0
        self.shortcutsInstalled = False
        self.observingViews = False

    def setMRMLScene(self, scene):
        self._logic.SetMRMLScene(scene)
        super().setMRMLScene(scene)

    def setMRMLSegmentEditorNode(self, node):
        if node is self._editorNode:
            return
        self._editorNode = node
        self._logic.SetSegmentEditorNode(node)

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node):
        if self._logic.GetSegmentationNode() is node:
            return
        self._logic.SetSegmentationNode(node)
        self.setActiveEffect(None)
        self.observingViews = node is not None  # the widget observes the views showing the segmentation

    def segmentationNode(self):
        return self._logic.GetSegmentationNode()

    def setSourceVolumeNode(self, node):
        self._logic.SetSourceVolumeNode(node)

    def sourceVolumeNode(self):
        return self._logic.GetSourceVolumeNode()

    def setActiveEffect(self, effect):
        self._activeEffect = effect

    def activeEffect(self):
        return self._activeEffect

    def setMaximumNumberOfUndoStates(self, count):
        self.undoStates = int(count)

    def installKeyboardShortcuts(self, parent=None):
        self.shortcutsInstalled = True

    def uninstallKeyboardShortcuts(self):
        self.shortcutsInstalled = False

    def setupViewObservations(self):
        self.observingViews = True

    def removeViewObservations(self):
        self.observingViews = False

    segmentationNodeSelectorVisible = _boolProperty("segmentationNodeSelectorVisible")
    sourceVolumeNodeSelectorVisible = _boolProperty("sourceVolumeNodeSelectorVisible")
    switchToSegmentationsButtonVisible = _boolProperty("switchToSegmentationsButtonVisible")


SLICER_DESIGNER_WIDGETS = (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton, ctkPathLineEdit,
                           qMRMLSegmentEditorWidget)


def connectUiConnections(top, uiPath) -> int:
    """Make the ``<connections>`` of the .ui file between ``top``'s named widgets, matching signals and slots by name
    (what uic does in Slicer, where the MRML signatures exist). Returns how many were made."""
    made = 0
    root = ET.parse(uiPath).getroot()
    named = {w.objectName(): w for w in top.findChildren(QtCore.QObject) if w.objectName()}
    named[top.objectName()] = top
    for connection in root.iter("connection"):
        sender, receiver = named.get(connection.findtext("sender")), named.get(connection.findtext("receiver"))
        signal = connection.findtext("signal").split("(")[0]
        slot = connection.findtext("slot").split("(")[0]
        if sender is None or receiver is None:
            raise RuntimeError(f"{uiPath}: connection between unknown widgets {connection.findtext('sender')} -> "
                               f"{connection.findtext('receiver')}")
        getattr(sender, signal).connect(getattr(receiver, slot))
        made += 1
    return made
