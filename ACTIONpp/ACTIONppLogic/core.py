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
from pathlib import Path

import json
import shutil

from . import dependencies, devices, engine, export, jobs, mrml, prediction, registry
from .jobs import SLOTS, TrainingJob, TrainingSettings
from .status import Estimate, SegmentationStatus, TrainingStatus


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
        self._deviceReport: dict | None = None
        self.extraModels: list[Path] = []
        """Run folders added with :meth:`loadModel` (outside ``WORK/runs``)."""
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
        """Scalar volumes a user can train on (labelmaps, hidden nodes and model outputs such as uncertainty maps
        left out), in scene order."""
        nodes = []
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = self.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetHideFromEditors() or mrml.isModelResult(node):
                continue
            nodes.append(node)
        return nodes

    def listSegmentations(self) -> list:
        return [self.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]

    def guessSegmentation(self, volume):
        """The segmentation made on ``volume`` in the Segment Editor (its reference geometry is the volume), or None.

        A model's result (``mrml.isModelResult``) is never proposed: it becomes labels only through
        :meth:`acceptAsLabels`, after a person has reviewed it.
        """
        for segmentation in self.listSegmentations():
            if mrml.isModelResult(segmentation):
                continue
            role = segmentation.GetReferenceImageGeometryReferenceRole()
            if segmentation.GetNodeReferenceID(role) == volume.GetID():
                return segmentation
        return None

    def acceptAsLabels(self, segmentation, volume=None):
        """Copy a reviewed model result into a NEW segmentation that counts as labels of ``volume``.

        ``volume`` defaults to the result's reference volume. The original node is left as it is (still a model
        result). Returns the new node, named ``<name> (reviewed)``, beside the volume in the subject hierarchy.
        """
        role = segmentation.GetReferenceImageGeometryReferenceRole()
        volume = volume or self.nodeByID(segmentation.GetNodeReferenceID(role))
        if volume is None:
            raise ValueError(f"segmentation '{segmentation.GetName()}': expected a reference volume to accept it "
                             "for, found none; pass the volume")
        base = segmentation.GetName().replace(" ACTIONpp", "").strip() or volume.GetName()
        accepted = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                mrml.uniqueName(self.scene, f"{base} (reviewed)"))
        accepted.CreateDefaultDisplayNodes()
        accepted.GetSegmentation().DeepCopy(segmentation.GetSegmentation())
        accepted.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        if segmentation.GetTransformNodeID():
            accepted.SetAndObserveTransformNodeID(segmentation.GetTransformNodeID())
        mrml.placeBeside(accepted, volume)
        return accepted

    @staticmethod
    def segmentNames(segmentation) -> list[str]:
        return [name for _, name in mrml.segmentNames(segmentation)]

    # ---- curation and export -------------------------------------------------------------------------------------
    def checkCuration(self, cases) -> export.CurationReport:
        return export.checkCuration(cases)

    def exportDataset(self, cases, folder=None) -> export.ExportResult:
        folder = Path(folder) if folder else _stamp(self.workFolder / "datasets")
        return export.exportDataset(cases, folder, self.context.segmentationsLogic)

    # ---- checks before launch ------------------------------------------------------------------------------------
    def deviceReport(self) -> dict:
        """What PyTorch in the engine's interpreter sees (asked once per logic, a few seconds)."""
        if self._deviceReport is None:
            self._deviceReport = devices.probeDevices(self.python or "python", self.baseEnv)
        return self._deviceReport

    def checkDevice(self, device: str) -> None:
        """Raise :class:`~ACTIONppLogic.devices.DeviceError` when ``device`` cannot be used (before any job starts).

        ``auto`` and ``cpu`` always work and need no check."""
        if (device or "auto").strip().lower() in ("auto", "cpu"):
            return
        problem = devices.deviceProblem(device, self.deviceReport())
        if problem:
            raise devices.DeviceError(problem)

    def estimateTraining(self, dataset, settings: TrainingSettings, steps: int = 5, timeout: float = 600.0) -> Estimate:
        """Time ``steps`` steps of each stage of the configured training on ``dataset`` (the engine's
        ``--probe-steps``, in a throw-away run in ``WORK/estimates``, removed afterwards) and scale them to the
        run's planned totals, which the engine reports (pre-training steps included)."""
        self.checkDevice(settings.device)
        probe = TrainingSettings(**{**vars(settings), "extraArgs": [*settings.extraArgs, "--probe-steps", str(steps)]})
        folder = _stamp(self.workFolder / "estimates")
        job = TrainingJob(dataset, folder, probe, python=self.python, baseEnv=self.baseEnv)
        try:
            job.start()
            state = job.wait(timeout=timeout)
            if state == jobs.RUNNING:
                job.cancel()
                raise jobs.JobError(f"timing {steps} iterations took longer than {timeout:.0f} s")
            if state != jobs.FINISHED or job.progress.secondsPerIteration is None:
                raise jobs.JobError(f"timing {steps} iterations failed: {job.errorMessage() or state}")
            device = devices.describeDevice(settings.device, self.deviceReport())
            progress = job.progress
            return Estimate(progress.secondsPerIteration, progress.trainTotal, device,
                            progress.pretrainSecondsPerIteration or 0.0, progress.pretrainTotal)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # made by this call, never the user's

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
        self.checkDevice(settings.device)
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
        """``(models, skipped runs)``: the runs under ``WORK/runs`` (newest first), then models loaded from
        elsewhere with :meth:`loadModel`."""
        models, skipped = registry.listModels(self.runsFolder)
        known = {m.path.resolve() for m in models}
        for path in list(self.extraModels):
            try:
                info = registry.readModel(path)
            except ValueError:  # moved or deleted since it was loaded
                self.extraModels.remove(path)
                continue
            if info.path.resolve() not in known:
                models.append(info)
                known.add(info.path.resolve())
        return models, skipped

    def loadModel(self, path) -> registry.ModelInfo:
        """Add a trained model from anywhere: a run folder or its ``model.pt``. Raises ``ValueError`` with one line
        naming the path and what is wrong (not a run, unfinished, ``model.json`` unreadable, no labels)."""
        try:
            info = registry.readModel(path)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if info.path not in self.extraModels:
            self.extraModels.append(info.path)
        return info

    def listUnfinishedRuns(self) -> list:
        """Runs under ``WORK/runs`` that stopped before their model was written but have a checkpoint to resume
        from (e.g. from before Slicer was restarted), newest first."""
        _, skipped = registry.listModels(self.runsFolder)
        return sorted((run for run in skipped if run.resumable), key=lambda run: run.path.name, reverse=True)

    def segment(self, volume, model, device: str = "auto", createSurface: bool = True,
                waitForCompletion: bool = False, extraArgs: list[str] | None = None, uncertainty: bool = False):
        """Predict ``volume`` with ``model`` (a :class:`~ACTIONppLogic.registry.ModelInfo` or a run folder).

        The volume is written through its storage node into ``WORK/predictions/<stamp>/``; the result becomes a new
        segmentation node when the process ends (at :meth:`pollSegmentation`, or before returning with
        ``waitForCompletion``, which then returns the node). Otherwise returns the running
        :class:`~ACTIONppLogic.jobs.PredictionJob`.
        """
        info = model if isinstance(model, registry.ModelInfo) else registry.readModel(model)
        self.checkDevice(device)
        current = SLOTS.current(self.scene, jobs.PredictionJob.kind)
        if current is not None and current.poll() == jobs.RUNNING:
            raise jobs.JobBusyError("a segmentation is already running for this scene; wait for it or cancel it")
        folder = _stamp(self.workFolder / "predictions")
        folder.mkdir(parents=True)
        stem = mrml.safeFileStem(volume.GetName())
        inputPath, outputPath = folder / f"{stem}.nrrd", folder / f"{stem}_label.nrrd"
        mrml.writeVolume(volume, inputPath)
        args = list(extraArgs or []) + (["--uncertainty"] if uncertainty else [])
        job = jobs.PredictionJob(info.path, inputPath, outputPath, device=device, python=self.python,
                                 baseEnv=self.baseEnv, extraArgs=args, logPath=folder / "predict.log")
        SLOTS.claim(self.scene, job)
        self._prediction = {"job": job, "volumeID": volume.GetID(), "model": info, "createSurface": createSurface,
                            "segmentation": None, "uncertainty": uncertainty, "uncertaintyNode": None}
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
            try:
                pending["segmentation"] = prediction.importPrediction(
                    job.outputPath, info.labels, volume, self.context.segmentationsLogic,
                    name=f"{volume.GetName()} ACTIONpp ({info.name})", createSurface=pending["createSurface"],
                    modelPath=str(info.path))
                if pending["uncertainty"]:
                    pending["uncertaintyNode"] = prediction.importUncertainty(
                        prediction.uncertaintyPath(job.outputPath), volume,
                        name=f"{volume.GetName()} ACTIONpp uncertainty ({info.name})", modelPath=str(info.path))
            except (OSError, ValueError) as exc:
                pending["error"] = str(exc)
        if pending.get("error"):
            return SegmentationStatus(jobs.FAILED, errorMessage=pending["error"], logTail=job.logTail())
        if state == jobs.FAILED:
            return SegmentationStatus(state, errorMessage=job.errorMessage(), logTail=job.logTail())
        return SegmentationStatus(state, segmentation=pending["segmentation"], uncertainty=pending["uncertaintyNode"])

    def rankVolumes(self, volumes, model, device: str = "auto", timeout: float | None = None) -> list:
        """``[(volume, score)]``, most uncertain first: how unsure ``model`` is about each volume
        (``actionpp rank``: entropy where it does not call background, and class volumes against the labeled cases';
        engine's rank.py).

        The volumes are written through storage nodes into ``WORK/rankings/<stamp>/``; blocks until done."""
        info = model if isinstance(model, registry.ModelInfo) else registry.readModel(model)
        self.checkDevice(device)
        folder = _stamp(self.workFolder / "rankings")
        images = folder / "images"
        images.mkdir(parents=True)
        byCase, used = {}, set()
        for volume in volumes:
            stem, i = mrml.safeFileStem(volume.GetName()), 2
            case = stem
            while case.casefold() in used:
                case, i = f"{stem}_{i}", i + 1
            used.add(case.casefold())
            mrml.writeVolume(volume, images / f"{case}.nrrd")
            byCase[case] = volume
        out = folder / "ranking.json"
        job = jobs.Job(engine.engineCommand(self.python or "python", "rank", str(info.path), str(images), "--out",
                                            str(out), "--device", device),
                       folder / "rank.log", env=engine.engineEnvironment(self.baseEnv, device=device))
        job.start()
        if job.wait(timeout=timeout) != jobs.FINISHED:
            job.cancel()
            raise jobs.JobError(f"ranking failed: {job.errorMessage() or 'timed out'} (log: {job.logPath})")
        ranking = json.loads(out.read_text(encoding="utf-8"))
        return [(byCase[row["case"]], float(row["score"])) for row in ranking if row["case"] in byCase]

    def segmentEditorNode(self):
        """The panel's own Segment Editor parameter node (see :func:`mrml.segmentEditorNode`)."""
        return mrml.segmentEditorNode(self.scene)

    def createLabelsFor(self, volume, like=None):
        """A new, empty segmentation on ``volume`` for *Label next* (see :func:`mrml.newSegmentationFor`)."""
        return mrml.newSegmentationFor(self.scene, volume, like)

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
