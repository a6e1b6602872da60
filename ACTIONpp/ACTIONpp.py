"""ACTIONpp: train ACTION++ semi-supervised segmentation on your own volumes inside 3D Slicer, then segment new ones.

This file is kept thin: the module description, the parameter node kept with the scene, the widget that wires the
``.ui`` to the controllers in ``ACTIONppWidgets``, the logic (Slicer's logic class holding an
``ACTIONppLogic.core.ModuleLogic``) and the in-app self-test (its cases in ``ACTIONppTesting``). The training
engine (``actionpp``, pure PyTorch/MONAI) always runs in a separate ``PythonSlicer`` process.

Note on names: the package ``ACTIONppLogic`` holds the non-GUI code; the class ``ACTIONppLogic`` defined below
is the Slicer logic facade (Slicer's naming convention). The package is imported under other names first.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # before Slicer 5.4
    def _(text):
        return text

    def translate(context, text):
        return text

_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if _MODULE_DIR not in sys.path:
    sys.path.insert(0, _MODULE_DIR)

from ACTIONppLogic import engine as _engine  # noqa: E402

# The engine ships beside this file in an installed extension, and in <repo>/src in a clone: make
# ``import actionpp`` work in Slicer's Python console too. Nothing is installed here.
_engine.ensureEngineOnPath()

from ACTIONppLogic import core as _core  # noqa: E402
from ACTIONppLogic import jobs as _jobs  # noqa: E402
from ACTIONppLogic import mrml as _mrml  # noqa: E402
from ACTIONppTesting import selftest as _selftest  # noqa: E402
from ACTIONppWidgets import CurationPanel, Hooks, ReviewPanel, SegmentPanel, SettingsBinding, TrainingPanel  # noqa: E402

SETTINGS_WORK_FOLDER = "ACTIONpp/WorkFolder"


def defaultWorkFolder() -> Path:
    """The work folder last chosen in any scene (application settings), else ``~/ACTIONpp``."""
    stored = qt.QSettings().value(SETTINGS_WORK_FOLDER)
    return Path(stored) if stored else Path.home() / "ACTIONpp"


@parameterNodeWrapper
class ACTIONppParameterNode:
    """The panel's choices, kept in the scene (saved in .mrml / .mrb, restored when the scene is loaded).

    method: actionpp | action | mean-teacher | supervised; dims: 2 or 3; device: auto | cpu | cuda | cuda:N;
    workFolder: where datasets, runs and predictions go ("" until first shown); model: the selected model's run folder.
    """

    method: str = "actionpp"
    dims: int = 2
    iterations: int = 2000
    device: str = "auto"
    workFolder: str = ""
    model: str = ""


#
# Module
#
class ACTIONpp(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ACTIONpp")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["ACTIONpp contributors"]
        self.parent.helpText = _(
            "Train a segmentation model on your own volumes with ACTION++ semi-supervised learning: a few volumes "
            "segmented in the Segment Editor plus unlabeled volumes. "
            "1. Data: pick the segmentation of each labeled volume (segment names become classes); "
            "2. Train: runs in a separate process with progress, curves, Cancel and Resume; "
            "3. Segment: apply a trained model to any volume, the result is a new segmentation shown in 2D and 3D. "
            "Batch use: Scripts/ACTIONppBatch.py in this module's folder.")
        self.parent.acknowledgementText = _(
            "ACTION++ is by Chenyu You et al. (adaptive anatomical contrast, MICCAI 2023); this module "
            "re-implements it on PyTorch and MONAI. Built with 3D Slicer, MONAI and SimpleITK.")


#
# Widget
#
class ACTIONppWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        # Set before the base class: without a parent, Slicer's base __init__ calls setup() at once. Its
        # super().__init__() also runs VTKObservationMixin.__init__ (this class's next base).
        self.logic = None
        self.curation = self.training = self.segment = self.settings = self.review = None
        self._parameterNode = None
        self._refreshPending = False
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ACTIONpp.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = ACTIONppLogic()
        hooks = Hooks(showError=self.showError, confirm=self.confirm, installDependencies=self.installDependencies,
                      showCurves=self.showCurves, onTrainingFinished=self.onTrainingFinished,
                      onSegmentation=self.onSegmentation, currentVolume=self.volumeInView, busy=slicer.util.WaitCursor,
                      chooseModelPath=self.chooseModelPath, onLabelsAccepted=self.onLabelsAccepted,
                      onModelSelected=lambda path: self.settings and self.settings.fromGui(),
                      openForLabeling=self.openForLabeling, onUncertainty=self.onUncertainty)
        self.trainingTimer, self.segmentTimer = qt.QTimer(), qt.QTimer()
        selectedModel = lambda: self.segment.selectedModel() if self.segment is not None else None  # noqa: E731
        device = lambda: self.training.device() if self.training is not None else "auto"  # noqa: E731
        self.curation = CurationPanel(self.ui, self.logic, qt, hooks, onChanged=self._curationChanged,
                                      modelProvider=selectedModel, deviceProvider=device)
        self.training = TrainingPanel(self.ui, self.logic, _jobs.TrainingSettings, self.curation.cases,
                                      self.curation.canTrain, self.curation.blockingMessage, timer=self.trainingTimer,
                                      hooks=hooks, modelProvider=selectedModel)
        self.segment = SegmentPanel(self.ui, self.logic, deviceProvider=self.training.device, timer=self.segmentTimer,
                                    hooks=hooks)
        self.settings = SettingsBinding(self.ui, selectModel=self.selectModel)
        self.review = ReviewPanel(self.ui, self.logic)
        self.ui.workFolderPathLineEdit.currentPathChanged.connect(self.onWorkFolderChanged)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onSceneNodesChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onSceneNodesChanged)
        slicer.app.aboutToQuit.connect(self.onAboutToQuit)
        self.initializeParameterNode()
        self.curation.refresh()
        if self.logic.trainingJob is not None:  # the module was reloaded while a job ran
            self.training.poll()
            if self.logic.trainingJob.running:
                self.training.markRunning()

    def cleanup(self) -> None:
        """Stop polling. A running training keeps running in its own process (Cancel stops it)."""
        self.removeObservers()
        for timer in (getattr(self, "trainingTimer", None), getattr(self, "segmentTimer", None)):
            if timer is not None:
                timer.stop()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self.curation is not None:
            self.curation.refresh()
        if self.review is not None:
            self.review.enter()

    def exit(self) -> None:
        if self.review is not None:
            self.review.exit()

    # ---- parameter node ----------------------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        """Show the scene's parameter node (created with defaults and this application's work folder if new)."""
        node = self.logic.getParameterNode()
        if not node.workFolder:
            node.workFolder = str(self.logic.workFolder)
        self.setParameterNode(node)

    def setParameterNode(self, node) -> None:
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.onParameterNodeModified)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.settings.setParameters(node)

    def onParameterNodeModified(self, caller, event) -> None:
        self.settings.toGui()

    # ---- scene -------------------------------------------------------------------------------------------------
    def onSceneStartClose(self, caller, event) -> None:
        self.askAboutRunningTraining(_("The scene is being closed"))
        self.setParameterNode(None)
        self.review.sceneStartClose()

    def onSceneEndClose(self, caller, event) -> None:
        self.logic.sceneClosed()
        if self.parent.isEntered:
            self.initializeParameterNode()
            self.curation.refresh()
            self.review.selectParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        """A scene was loaded: its parameter node (merged into this scene's) holds the saved settings."""
        self.initializeParameterNode()
        self.curation.refresh()

    def onAboutToQuit(self) -> None:
        self.askAboutRunningTraining(_("Slicer is closing"))

    def askAboutRunningTraining(self, when: str) -> None:
        """Ask whether a running training should stop or keep running; say where its run folder is."""
        job = self.logic.trainingJob
        if job is None or job.poll() != _jobs.RUNNING:
            return
        stop = slicer.util.confirmYesNoDisplay(
            _("{when} while a training is running (run folder: {run}).\n\nStop it? Yes stops it (Resume continues "
              "it later from its last checkpoint). No leaves it running in the background: its model appears in "
              "that folder when it ends, and Load model... adds it.").format(when=when, run=job.runDir),
            windowTitle=_("ACTIONpp"))
        if stop:
            self.logic.cancelTraining()
            logging.info(f"ACTIONpp: training stopped; run folder {job.runDir}")
        else:
            logging.info(f"ACTIONpp: training left running (pid {job.pid}); run folder {job.runDir}")

    def onSceneNodesChanged(self, caller, event) -> None:
        if not self._refreshPending:  # many nodes arrive at once when loading: refresh once afterwards
            self._refreshPending = True
            qt.QTimer.singleShot(200, self._refreshFromScene)

    def _refreshFromScene(self) -> None:
        self._refreshPending = False
        if self.curation is not None:
            self.curation.refresh()

    def _curationChanged(self) -> None:
        if self.training is not None:
            self.training.updateButtons()

    def onWorkFolderChanged(self, path) -> None:
        if path:
            self.logic.workFolder = Path(path)
            qt.QSettings().setValue(SETTINGS_WORK_FOLDER, str(path))
            self.segment.refreshModels()
            self.training.refreshUnfinished()

    def selectModel(self, path) -> None:
        """Select the model at ``path``; one outside the work folder's runs is loaded first (if still there)."""
        if str(path) not in self.segment.models:
            try:
                self.logic.loadModel(path)
            except ValueError as exc:
                logging.warning(f"ACTIONpp: the scene's model is not available: {exc}")
                return
        self.segment.refreshModels(select=str(path))

    def adoptRun(self, runDir) -> None:
        """Show an unfinished run (e.g. from before a restart) so that *Resume* continues it."""
        self.logic.adoptRun(runDir)
        self.training.poll()

    # ---- hooks -------------------------------------------------------------------------------------------------
    def showError(self, message, details="") -> None:
        extra = {"detailedText": details} if details else {}
        slicer.util.errorDisplay(message, windowTitle=_("ACTIONpp"), **extra)

    def confirm(self, question) -> bool:
        return slicer.util.confirmOkCancelDisplay(question, windowTitle=_("ACTIONpp"))

    def chooseModelPath(self) -> str:
        path = qt.QFileDialog.getOpenFileName(None, _("Load a trained ACTIONpp model"), str(self.logic.workFolder),
                                              _("ACTIONpp model (model.pt model.json)"))
        return path[0] if isinstance(path, tuple) else path  # PythonQt returns the path; PySide (path, filter)

    def installDependencies(self, plan) -> None:
        def installTorch(requirement):
            try:
                import PyTorchUtils
            except ImportError as exc:
                raise RuntimeError(_("PyTorch is needed: install the 'PyTorch' extension from the Extensions "
                                     "Manager, restart Slicer, and try again.")) from exc
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=requirement[len("torch"):])
            if torch is None:
                raise RuntimeError(_("PyTorch was not installed."))

        self.logic.installDependencies(plan, lambda requirements: slicer.util.pip_install(list(requirements)),
                                       installTorch)

    def showCurves(self) -> None:
        if self.logic.curvesPlot is not None:
            slicer.modules.plots.logic().ShowChartInLayout(self.logic.curvesPlot.chart)

    def onTrainingFinished(self, runDir) -> None:
        self.segment.refreshModels(select=str(runDir))

    def onSegmentation(self, segmentationNode) -> None:
        """Show the result and open it in the embedded Segment Editor for review."""
        segmentationNode.GetDisplayNode().SetVisibility(True)
        role = segmentationNode.GetReferenceImageGeometryReferenceRole()
        volume = slicer.mrmlScene.GetNodeByID(segmentationNode.GetNodeReferenceID(role))
        self.review.edit(volume, segmentationNode, _("Correct '{name}' with the editor below, then press 'Accept as "
                                                      "labels' (section 3).").format(name=segmentationNode.GetName()))

    def onLabelsAccepted(self, segmentationNode) -> None:
        """Show the accepted copy as its volume's labels in the Data table."""
        role = segmentationNode.GetReferenceImageGeometryReferenceRole()
        volume = slicer.mrmlScene.GetNodeByID(segmentationNode.GetNodeReferenceID(role))
        self.curation.refresh()
        if volume is not None:
            self.curation.setChoice(volume, segmentationNode)

    def openForLabeling(self, volume, segmentation) -> None:
        """Show ``volume`` in the slice views and ``segmentation`` in the embedded Segment Editor."""
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.review.edit(volume, segmentation, _("Label '{name}' with the editor below; it is already its labels in "
                                                 "the Data table.").format(name=volume.GetName()))

    def onUncertainty(self, node) -> None:
        """Show the uncertainty map over the slices (half transparent); the result volume stays the background."""
        slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.5)

    def volumeInView(self):
        layoutManager = slicer.app.layoutManager()
        sliceWidget = layoutManager.sliceWidget("Red") if layoutManager else None
        if sliceWidget is None:
            return None
        volumeId = sliceWidget.sliceLogic().GetSliceCompositeNode().GetBackgroundVolumeID()
        return slicer.mrmlScene.GetNodeByID(volumeId) if volumeId else None


#
# Logic
#
class ACTIONppLogic(ScriptedLoadableModuleLogic):
    """The module logic: Slicer's logic class holding a :class:`ACTIONppLogic.core.ModuleLogic` on Slicer's scene.

    Composition, not a second base class: Slicer's ``ScriptedLoadableModuleLogic.__init__`` calls
    ``super().__init__()``, which would reach another base's ``__init__`` without its arguments. Every method and
    attribute of the core (``listVolumes``, ``startTraining``, ``segment``...) is available on this object.

    Usable without the widget (Python console, other modules, batch)::

        logic = slicer.util.getModuleLogic("ACTIONpp")  # or ACTIONppLogic()
        cases = [(volume, logic.guessSegmentation(volume)) for volume in logic.listVolumes()]
        job = logic.startTraining(cases, TrainingSettings(iterations=500), waitForCompletion=True)
        segmentation = logic.segment(newVolume, job.runDir, waitForCompletion=True)
    """

    def __init__(self, workFolder=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _mrml.registerSegmentationConverterRules()
        context = _mrml.SceneContext(slicer.mrmlScene, slicer.modules.segmentations.logic())
        self.core = _core.ModuleLogic(context, workFolder or defaultWorkFolder(), python=_engine.defaultPython(),
                                      baseEnv=slicer.util.startupEnvironment())

    def __getattr__(self, name):
        """Everything else comes from the core (only called for names this object does not have)."""
        core = self.__dict__.get("core")
        if core is None:
            raise AttributeError(name)
        return getattr(core, name)

    @property
    def workFolder(self) -> Path:
        return self.core.workFolder

    @workFolder.setter
    def workFolder(self, value) -> None:
        self.core.workFolder = Path(value)

    def getParameterNode(self) -> ACTIONppParameterNode:
        return ACTIONppParameterNode(super().getParameterNode())


#
# Test (run in Slicer: Developer mode -> Reload and Test, or
#   Slicer --no-main-window --python-code "import slicer.testing; slicer.testing.runUnitTest(['ACTIONpp'], 'ACTIONpp')")
#
class ACTIONppTest(_selftest.SelfTest):
    """The self-test's cases (ACTIONppTesting/selftest.py) on this module's logic class."""

    @staticmethod
    def makeLogic(workFolder) -> ACTIONppLogic:
        return ACTIONppLogic(workFolder=workFolder)
