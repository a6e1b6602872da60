"""The Studio page: trame-slicer views of the scene and the ACTIONpp workflow around them.

Everything the page does goes through ``ACTIONppLogic.core.ModuleLogic`` (the same facade the Qt panel and the batch
script use): ``listVolumes`` / ``guessSegmentation`` / ``checkCuration`` for the case list, ``startTraining`` /
``pollTraining`` / ``cancelTraining`` / ``resumeTraining`` for *Train*, ``listModels`` / ``segment`` /
``pollSegmentation`` for *Segment*. A periodic task polls the running job and pushes its state to the page.

The page only ever sends node IDs and model paths that this module listed itself; both are looked up again on the
server before use, so nothing outside ``--data`` / ``--work`` can be named through it.
"""

from __future__ import annotations

import asyncio
import os
import sys

from trame.app import TrameApp
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_vuetify.ui.vuetify3 import SinglePageLayout

from . import plot, security, workspace
from .labeling import LABEL_STATE, LabelingMixin

workspace.ensureLogicOnPath()
from ACTIONppLogic import export, jobs, mrml  # noqa: E402
from ACTIONppLogic.core import ModuleLogic  # noqa: E402
from ACTIONppLogic.jobs import TrainingSettings  # noqa: E402

METHODS = [{"title": "ACTION++", "value": "actionpp"}, {"title": "ACTION", "value": "action"},
           {"title": "Mean teacher", "value": "mean-teacher"}, {"title": "Supervised only", "value": "supervised"}]
DEVICES = [{"title": "Auto", "value": "auto"}, {"title": "CPU", "value": "cpu"}, {"title": "GPU 0", "value": "cuda:0"}]
POLL_SECONDS = 0.5


def testid(name: str) -> list[str]:
    """The ``raw_attrs`` that give a widget a stable ``data-testid`` for tests."""
    return [f'data-testid="{name}"']


class StudioApp(LabelingMixin, TrameApp):
    """One scene, one ``ModuleLogic``, one page. ``engineArgs`` are passed to every training unchanged."""

    def __init__(self, folders: workspace.Folders, server=None, token: str | None = None,
                 engineArgs: list[str] | None = None):
        super().__init__(server)
        self.folders = folders
        self.token = token
        self.engineArgs = list(engineArgs or [])
        self.slicerApp = SlicerApp()
        mrml.registerSegmentationConverterRules()
        context = mrml.SceneContext(self.slicerApp.scene, self.slicerApp.segmentations_logic)
        self.logic = ModuleLogic(context, folders.work, python=sys.executable, baseEnv=dict(os.environ))
        self.result = None
        self._training = False
        self._segmenting = False
        self._shown = None
        workspace.loadCases(context, folders)

        register_rca_factories(self.slicerApp.view_manager, self.server)
        self.layoutManager = LayoutManager(self.slicerApp.scene, self.slicerApp.view_manager, self.server)
        self.layoutManager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layoutManager.set_layout("Axial Primary")

        self.server.controller.on_server_bind.add(lambda wslinkServer: security.installTokenCheck(wslinkServer, token))
        self.server.controller.on_server_ready.add(self._startPolling)
        self.server.controller.on_server_exited.add(self._stopJobs)
        self._initState()
        self.slicerApp.segmentation_editor.segmentation_modified.connect(self._onEdited)
        self.state.change("segment")(lambda segment, **_: self._selectSegment(segment))
        self._buildUi()
        volumes = self.logic.listVolumes()
        if volumes:
            self.selectCase(volumes[0].GetID())

    # ---- state ---------------------------------------------------------------------------------------------------
    def _initState(self) -> None:
        s = self.state
        s.trame__title = "ACTIONpp Studio"
        s.update({"cases": [], "selected_case": None, "curation": [], "can_train": False, "classes": "",
                  "method": "actionpp", "dims": 2, "iterations": 1000, "device": "auto",
                  "training": False, "progress": 0, "progress_text": "", "can_resume": False,
                  "models": [], "model": None, "segmenting": False, "result_ready": False, "result_name": "",
                  "result_title": "",
                  "message": "", "message_type": "info", "curves_svg": "", "unfinished": [], "unfinished_run": None,
                  **LABEL_STATE})
        self.refreshCases()
        self.refreshModels()
        self.refreshUnfinished()

    def refreshCases(self) -> None:
        """The case list and the curation check, from the logic."""
        rows, cases = [], []
        for volume in self.logic.listVolumes():
            segmentation = self.logic.guessSegmentation(volume)
            cases.append((volume, segmentation))
            classes = self.logic.segmentNames(segmentation) if segmentation else []
            rows.append({"id": volume.GetID(), "name": volume.GetName(),
                         "labels": segmentation.GetName() if segmentation else "unlabeled",
                         "classes": ", ".join(classes), "labeled": segmentation is not None})
        report = self.logic.checkCuration(cases)
        self.state.cases = rows
        self.state.curation = [{"severity": p.severity, "text": p.message} for p in report.problems]
        self.state.can_train = bool(report.canTrain)
        self.state.classes = (f"{report.labeled} labeled, {report.unlabeled} unlabeled; classes: "
                              + ", ".join(report.classes))

    def refreshModels(self, select: str | None = None) -> None:
        models, _ = self.logic.listModels()
        self.state.models = [{"title": f"{m.name}: {m.describe()}", "value": str(m.path)} for m in models]
        values = [m["value"] for m in self.state.models]
        if select in values:
            self.state.model = select
        elif self.state.model not in values:
            self.state.model = values[0] if values else None

    def refreshUnfinished(self, select: str | None = None) -> None:
        """The work folder's runs that stopped before their model, with a checkpoint (``listUnfinishedRuns``): what
        *Resume* continues, also after a restart of Studio."""
        runs = self.logic.listUnfinishedRuns()
        self.state.unfinished = [{"title": run.path.name, "value": str(run.path)} for run in runs]
        values = [r["value"] for r in self.state.unfinished]
        if select in values or self.state.unfinished_run not in values:
            self.state.unfinished_run = select if select in values else (values[0] if values else None)

    def _say(self, text: str, kind: str = "info") -> None:
        self.state.message, self.state.message_type = text, kind

    # ---- scene ---------------------------------------------------------------------------------------------------
    def _volume(self, nodeId):
        """The volume of the case list with this ID (None for anything else the page might send)."""
        return next((v for v in self.logic.listVolumes() if v.GetID() == nodeId), None)

    def selectCase(self, nodeId) -> None:
        volume = self._volume(nodeId)
        if volume is None:
            return
        self.state.selected_case = nodeId
        display = self.slicerApp.display_manager
        if self._shown is not None and self._shown is not volume:
            display.hide_volume(self._shown)
        self._shown = volume
        display.show_volume(volume, do_reset_views=True)
        shown = {self.logic.guessSegmentation(volume)}
        if self.result is not None and self._referenceOf(self.result) == nodeId:
            shown.add(self.result)
        for segmentation in self.logic.listSegmentations():
            segmentation.SetDisplayVisibility(segmentation in shown)
        self._editLabelsOf(volume)

    @staticmethod
    def _referenceOf(segmentation):
        return segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole())

    # ---- training ------------------------------------------------------------------------------------------------
    def train(self) -> None:
        try:
            cases = [(v, self.logic.guessSegmentation(v)) for v in self.logic.listVolumes()]
            settings = TrainingSettings(method=self.state.method, dims=int(self.state.dims),
                                        iterations=int(self.state.iterations), device=self.state.device,
                                        extraArgs=self.engineArgs)
            job = self.logic.startTraining(cases, settings)
        except (ValueError, OSError, jobs.JobError) as exc:
            self._say(f"Train: {exc}", "error")
            return
        self._training = True
        self.state.update({"training": True, "progress": 0, "progress_text": "Starting...", "can_resume": False})
        self._say(f"Training in {job.runDir.name}")

    def cancel(self) -> None:
        self.logic.cancelTraining()
        self._pollTraining()

    def resume(self) -> None:
        """Continue the unfinished run chosen in the list: this scene's stopped training, or a run from before a
        restart (``adoptRun`` makes it the scene's job; the page only names runs the logic listed)."""
        chosen = next((run.path for run in self.logic.listUnfinishedRuns()
                       if str(run.path) == self.state.unfinished_run), None)
        try:
            if chosen is None:
                raise jobs.JobError("choose an unfinished run")
            job = self.logic.trainingJob
            if job is None or job.runDir.resolve() != chosen.resolve():
                self.logic.adoptRun(workspace.confine(chosen, (self.folders.work,)))
            self.logic.resumeTraining()
        except (ValueError, OSError, jobs.JobError) as exc:
            self._say(f"Resume: {exc}", "error")
            return
        self._training = True
        self.state.update({"training": True, "can_resume": False, "progress_text": "Resuming..."})
        self._say(f"Resumed {chosen.name} from its last checkpoint")

    def _pollTraining(self) -> None:
        status = self.logic.pollTraining()
        if status is None:
            return
        self.state.progress = round(100 * status.progress.fraction)
        self.state.progress_text = status.progress.summary()
        self.state.curves_svg = plot.curvesSvg(status.curves.series, status.progress.total)
        if status.state == jobs.RUNNING:
            return
        self._training = False
        self.state.training = False
        self.state.can_resume = bool(status.resumable)
        self.refreshUnfinished(select=str(status.runDir))
        if status.state == jobs.FINISHED:
            self.refreshModels(select=str(status.runDir))
            self._say(f"Training finished: {status.runDir.name}", "success")
        elif status.state == jobs.FAILED:
            self._say(f"Training failed: {status.errorMessage}", "error")
        else:
            self._say("Training cancelled; Resume continues from the last checkpoint", "warning")

    # ---- segmentation --------------------------------------------------------------------------------------------
    def _model(self):
        models, _ = self.logic.listModels()
        return next((m for m in models if str(m.path) == self.state.model), None)

    def segment(self) -> None:
        volume, model = self._volume(self.state.selected_case), self._model()
        if volume is None or model is None:
            self._say("Segment: choose a case and a trained model first", "error")
            return
        try:
            workspace.confine(model.path, self.folders.roots + tuple(self.logic.extraModels))
            self.logic.segment(volume, model, device=self.state.device, createSurface=True)
        except (ValueError, OSError, jobs.JobError) as exc:
            self._say(f"Segment: {exc}", "error")
            return
        self._segmenting = True
        self.state.update({"segmenting": True, "result_ready": False})
        self._say(f"Segmenting {volume.GetName()} with {model.name}")

    def _pollSegmentation(self) -> None:
        status = self.logic.pollSegmentation()
        if status is None or status.state == jobs.RUNNING:
            return
        self._segmenting = False
        self.state.segmenting = False
        if status.state == jobs.FINISHED and status.segmentation is not None:
            self.result = status.segmentation
            self.selectCase(self._referenceOf(self.result))
            self.state.update({"result_ready": True, "result_title": self.result.GetName(),
                               "result_name": mrml.safeFileStem(self.result.GetName())})
            self._say(f"Result: {self.result.GetName()}", "success")
        else:
            self._say(f"Segment failed: {status.errorMessage}", "error")

    def downloadResult(self):
        """The result as ``.seg.nrrd`` bytes (written under ``WORK/downloads``), as a trame attachment."""
        if self.result is None:
            return None
        folder = workspace.confine(self.folders.work / "downloads", (self.folders.work,))
        folder.mkdir(exist_ok=True)
        path = folder / f"{mrml.safeFileStem(self.result.GetName())}.seg.nrrd"
        mrml.writeSegmentation(self.result, path)
        return self.server.protocol.addAttachment(path.read_bytes())

    def _stopJobs(self, **_) -> None:
        """The server is stopping: stop a running training (Resume continues it later) and segmentation."""
        self.logic.cancelTraining()
        self.logic.cancelSegmentation()

    # ---- poll ----------------------------------------------------------------------------------------------------
    def _startPolling(self, **_) -> None:
        asyncio.get_event_loop().create_task(self._pollForever())

    async def _pollForever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if not (self._training or self._segmenting):
                continue
            with self.state:
                if self._training:
                    self._pollTraining()
                if self._segmenting:
                    self._pollSegmentation()

    # ---- page ----------------------------------------------------------------------------------------------------
    def _buildUi(self) -> None:
        ctrl = self.server.controller
        with SinglePageLayout(self.server, full_height=True) as self.ui:
            self.ui.title.set_text("ACTIONpp Studio")
            with self.ui.toolbar:
                v3.VSpacer()
                html.Div("{{ message }}", classes="text-body-2 mx-4", raw_attrs=testid("message"),
                         style=("{color: message_type === 'error' ? '#ff6b6b' : 'inherit'}",))
            with self.ui.content:
                with html.Div(classes="d-flex", style="height: calc(100vh - 64px);"):
                    with html.Div(classes="pa-2", style="width: 420px; overflow-y: auto; flex: none;"):
                        self._casePanel(ctrl)
                        self._labelPanel()
                        self._trainPanel(ctrl)
                        self._segmentPanel(ctrl)
                    with html.Div(style="flex: 1; position: relative;", raw_attrs=testid("views")):
                        self.layoutManager.initialize_layout_grid(self.ui)

    def _casePanel(self, ctrl) -> None:
        html.Div("Cases", classes="text-subtitle-1")
        with v3.VList(density="compact", raw_attrs=testid("case-list"), classes="mb-1"):
            v3.VListItem(v_for="row in cases", key="row.id", active=("row.id === selected_case",),
                         title=("row.name",), subtitle=("row.labeled ? row.labels + ': ' + row.classes : "
                                                         "'unlabeled'",),
                         click=(self.selectCase, "[row.id]"), raw_attrs=[':data-case="row.name"'])
        html.Div("{{ classes }}", classes="text-caption")
        html.Div("{{ item.severity === 'error' ? '✖' : '⚠' }} {{ item.text }}", v_for="item in curation",
                 classes="text-caption", raw_attrs=testid("curation"))

    def _trainPanel(self, ctrl) -> None:
        html.Div("Train", classes="text-subtitle-1 mt-3")
        v3.VSelect(label="Method", v_model=("method",), items=("methods", METHODS), density="compact",
                   hide_details=True, classes="mb-1")
        with html.Div(classes="d-flex"):
            v3.VSelect(label="Dimensions", v_model=("dims",), items=("dims_items", [{"title": "2D", "value": 2},
                                                                                 {"title": "3D", "value": 3}]),
                       density="compact", hide_details=True, classes="mr-1")
            v3.VTextField(label="Iterations", v_model_number=("iterations",), type="number", density="compact",
                          hide_details=True, classes="mr-1")
            v3.VSelect(label="Device", v_model=("device",), items=("devices", DEVICES), density="compact",
                       hide_details=True)
        with html.Div(classes="d-flex mt-1"):
            v3.VBtn("Train", click=self.train, disabled=("training || !can_train",), color="primary",
                    raw_attrs=testid("train-button"), classes="mr-1")
            v3.VBtn("Cancel", click=self.cancel, disabled=("!training",), raw_attrs=testid("cancel-button"),
                    classes="mr-1")
            v3.VBtn("Resume", click=self.resume, disabled=("training || !unfinished_run",),
                    raw_attrs=testid("resume-button"))
        v3.VSelect(v_if="unfinished.length", label="Unfinished run (Resume continues it)", v_model=("unfinished_run",),
                   items=("unfinished",), density="compact", hide_details=True, classes="mt-1",
                   raw_attrs=testid("unfinished-select"))
        v3.VProgressLinear(model_value=("progress",), height=8, classes="mt-2", color="primary",
                           raw_attrs=testid("progress") + [':aria-valuenow="progress"'])
        html.Div("{{ progress_text }}", classes="text-caption", raw_attrs=testid("progress-text"))
        html.Div(v_html=("curves_svg",), raw_attrs=testid("curves"))

    def _segmentPanel(self, ctrl) -> None:
        html.Div("Segment", classes="text-subtitle-1 mt-3")
        v3.VSelect(label="Model", v_model=("model",), items=("models",), density="compact", hide_details=True,
                   raw_attrs=testid("model-select"), no_data_text="no trained model yet")
        v3.VBtn("Segment selected case", click=self.segment, disabled=("!model || segmenting || !selected_case",),
                color="primary", classes="mt-1", raw_attrs=testid("segment-button"))
        with html.Div(v_if="result_ready", classes="mt-2", raw_attrs=testid("result-ready")):
            html.Div("{{ result_title }}: shown in the views", classes="text-caption")
            v3.VBtn("Download .seg.nrrd", prepend_icon="mdi-download", variant="outlined", size="small",
                    raw_attrs=testid("download-button"),
                    click=(f"utils.download(result_name + '.seg.nrrd', "
                           f"trigger('{ctrl.trigger_name(self.downloadResult)}'), 'application/octet-stream')"))
