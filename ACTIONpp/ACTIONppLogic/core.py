"""``ModuleLogic``: the one object the widget and the batch script talk to.

It owns no GUI and never touches ``slicer.app``: the scene and the segmentations logic come in a
:class:`~ACTIONppLogic.mrml.SceneContext`, the interpreter for engine subprocesses and its environment are passed
in (``PythonSlicer`` + ``slicer.util.startupEnvironment()`` in the application, ``sys.executable`` in tests).

Work folder layout (everything the module writes)::

    WORK/datasets/<stamp>/     exported nnU-Net raw datasets
    WORK/runs/<stamp>-<method>/ training runs (the model registry lists these)
    WORK/predictions/<stamp>/  input volume + predicted label map of each Segment click
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import dependencies, export, jobs, mrml, prediction, registry
from .jobs import SLOTS, TrainingJob, TrainingSettings


@dataclass
class TrainingStatus:
    """What one poll of the training job tells the GUI."""

    state: str
    progress: jobs.Progress
    curves: jobs.Curves
    newLog: str
    runDir: Path
    errorMessage: str = ""
    logTail: str = ""
    resumable: bool = False


@dataclass
class SegmentationStatus:
    state: str
    segmentation: object = None
    errorMessage: str = ""
    logTail: str = ""


def _stamp(parent: Path, suffix: str = "") -> Path:
    base = time.strftime("%Y%m%d-%H%M%S") + (f"-{suffix}" if suffix else "")
    candidate, i = parent / base, 2
    while candidate.exists():
        candidate = parent / f"{base}-{i}"
        i += 1
    return candidate


class ModuleLogic:
    """Curate -> export -> train -> register -> segment, for one scene."""

    def __init__(self, context: mrml.SceneContext, workFolder, python: str | None = None,
                 baseEnv: dict[str, str] | None = None):
        self.context = context
        self.workFolder = Path(workFolder)
        self.python = python
        self.baseEnv = baseEnv
        self.curvesPlot = None
        self._prediction: dict | None = None

    # ---- scene ---------------------------------------------------------------------------------------------------
    @property
    def scene(self):
        return self.context.scene

    @property
    def runsFolder(self) -> Path:
        return self.workFolder / "runs"

    def sceneClosed(self) -> None:
        """The scene was cleared: the curves chart went with it (a running job keeps running)."""
        self.curvesPlot = None

    def nodeByID(self, nodeId: str | None):
        return self.scene.GetNodeByID(nodeId) if nodeId else None

    def listVolumes(self) -> list:
        """Scalar volumes a user can train on (labelmaps and hidden nodes left out), in scene order."""
        nodes = []
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = self.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetHideFromEditors():
                continue
            nodes.append(node)
        return nodes

    def listSegmentations(self) -> list:
        return [self.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]

    def guessSegmentation(self, volume):
        """The segmentation made on ``volume`` in the Segment Editor (its reference geometry is the volume), or None."""
        for segmentation in self.listSegmentations():
            role = segmentation.GetReferenceImageGeometryReferenceRole()
            if segmentation.GetNodeReferenceID(role) == volume.GetID():
                return segmentation
        return None

    @staticmethod
    def segmentNames(segmentation) -> list[str]:
        return [name for _, name in mrml.segmentNames(segmentation)]

    # ---- curation and export -------------------------------------------------------------------------------------
    def checkCuration(self, cases) -> export.CurationReport:
        return export.checkCuration(cases)

    def exportDataset(self, cases, folder=None) -> export.ExportResult:
        folder = Path(folder) if folder else _stamp(self.workFolder / "datasets")
        return export.exportDataset(cases, folder, self.context.segmentationsLogic)

    # ---- training ------------------------------------------------------------------------------------------------
    @property
    def trainingJob(self) -> TrainingJob | None:
        return SLOTS.current(self.scene, TrainingJob.kind)

    def startTraining(self, cases, settings: TrainingSettings, runDir=None, dataset=None,
                      waitForCompletion: bool = False, callback=None) -> TrainingJob:
        """Export ``cases`` (unless ``dataset``, an existing dataset folder, is given) and start training.

        Raises :class:`~ACTIONppLogic.jobs.JobBusyError` if this scene already has a running training job,
        :class:`~ACTIONppLogic.export.CurationError` if the selection has errors. With ``waitForCompletion`` the
        call blocks until the process ends (batch use); ``callback(job)`` runs at each poll.
        """
        current = self.trainingJob
        if current is not None and current.poll() == jobs.RUNNING:
            raise jobs.JobBusyError("a training job is already running for this scene; cancel it or wait for it")
        if dataset is None:
            dataset = self.exportDataset(cases).folder
        runDir = Path(runDir) if runDir else _stamp(self.runsFolder, settings.method)
        job = TrainingJob(dataset, runDir, settings, python=self.python, baseEnv=self.baseEnv)
        SLOTS.claim(self.scene, job)
        self._resetCurvesPlot()
        job.start()
        if waitForCompletion:
            job.wait(callback=callback)
        return job

    def adoptRun(self, runDir, settings: TrainingSettings | None = None) -> TrainingJob:
        """Make an existing run folder (e.g. from before a restart) the scene's training job, to resume it."""
        job = TrainingJob.fromRunFolder(runDir, python=self.python, baseEnv=self.baseEnv,
                                        args=(settings.toArgs() if settings else None))
        SLOTS.claim(self.scene, job)
        self._resetCurvesPlot()
        return job

    def resumeTraining(self, waitForCompletion: bool = False, callback=None) -> TrainingJob:
        job = self.trainingJob
        if job is None:
            raise jobs.JobError("no training to resume in this scene")
        SLOTS.claim(self.scene, job)
        job.resume()
        if waitForCompletion:
            job.wait(callback=callback)
        return job

    def cancelTraining(self) -> None:
        job = self.trainingJob
        if job is not None:
            job.cancel()

    def pollTraining(self) -> TrainingStatus | None:
        """Read new progress; update the curves chart; None when this scene never had a training job."""
        job = self.trainingJob
        if job is None:
            return None
        state = job.poll()
        if self.curvesPlot is not None:
            self.curvesPlot.update(job.curves)
        failed = state == jobs.FAILED
        return TrainingStatus(state, job.progress, job.curves, job.newLogText(), job.runDir,
                              errorMessage=job.errorMessage() if failed else "",
                              logTail=job.logTail() if failed else "", resumable=job.resumable)

    def _resetCurvesPlot(self) -> None:
        try:
            from .plots import TrainingCurvesPlot
        except ImportError:  # pragma: no cover - VTK missing
            return
        if self.curvesPlot is not None:
            self.curvesPlot.remove()
        self.curvesPlot = TrainingCurvesPlot(self.scene)

    # ---- models and segmentation ---------------------------------------------------------------------------------
    def listModels(self):
        """``(models, skipped runs)`` under ``WORK/runs``."""
        return registry.listModels(self.runsFolder)

    def segment(self, volume, model, device: str = "auto", createSurface: bool = True,
                waitForCompletion: bool = False, extraArgs: list[str] | None = None):
        """Predict ``volume`` with ``model`` (a :class:`~ACTIONppLogic.registry.ModelInfo` or a run folder).

        The volume is written through its storage node into ``WORK/predictions/<stamp>/``; the result becomes a new
        segmentation node when the process ends (at :meth:`pollSegmentation`, or before returning with
        ``waitForCompletion``, which then returns the node). Otherwise returns the running
        :class:`~ACTIONppLogic.jobs.PredictionJob`.
        """
        info = model if isinstance(model, registry.ModelInfo) else registry.readModel(model)
        current = SLOTS.current(self.scene, jobs.PredictionJob.kind)
        if current is not None and current.poll() == jobs.RUNNING:
            raise jobs.JobBusyError("a segmentation is already running for this scene; wait for it or cancel it")
        folder = _stamp(self.workFolder / "predictions")
        folder.mkdir(parents=True)
        stem = mrml.safeFileStem(volume.GetName())
        inputPath, outputPath = folder / f"{stem}.nrrd", folder / f"{stem}_label.nrrd"
        mrml.writeVolume(volume, inputPath)
        job = jobs.PredictionJob(info.path, inputPath, outputPath, device=device, python=self.python,
                                 baseEnv=self.baseEnv, extraArgs=extraArgs, logPath=folder / "predict.log")
        SLOTS.claim(self.scene, job)
        self._prediction = {"job": job, "volumeID": volume.GetID(), "model": info, "createSurface": createSurface,
                            "segmentation": None}
        job.start()
        if waitForCompletion:
            job.wait()
            status = self.pollSegmentation()
            if status.state != jobs.FINISHED:
                raise RuntimeError(status.errorMessage or "segmentation failed")
            return status.segmentation
        return job

    def pollSegmentation(self) -> SegmentationStatus | None:
        """State of the last segmentation; imports the result once, when the process has finished."""
        if self._prediction is None:
            return None
        pending = self._prediction
        job = pending["job"]
        state = job.poll()
        if state == jobs.FINISHED and pending["segmentation"] is None:
            volume = self.nodeByID(pending["volumeID"])
            if volume is None:
                return SegmentationStatus(jobs.FAILED, errorMessage="the input volume was removed from the scene")
            info = pending["model"]
            pending["segmentation"] = prediction.importPrediction(
                job.outputPath, info.labels, volume, self.context.segmentationsLogic,
                name=f"{volume.GetName()} ACTIONpp ({info.name})", createSurface=pending["createSurface"])
        if state == jobs.FAILED:
            return SegmentationStatus(state, errorMessage=job.errorMessage(), logTail=job.logTail())
        return SegmentationStatus(state, segmentation=pending["segmentation"])

    def cancelSegmentation(self) -> None:
        if self._prediction is not None:
            self._prediction["job"].cancel()

    # ---- dependencies --------------------------------------------------------------------------------------------
    @staticmethod
    def dependencyPlan() -> dependencies.InstallPlan:
        return dependencies.checkDependencies()

    @staticmethod
    def installDependencies(plan: dependencies.InstallPlan, pipInstall, installTorch=None) -> None:
        dependencies.installDependencies(plan, pipInstall, installTorch)
