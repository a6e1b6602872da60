"""Training panel: settings, Train / Cancel / Resume, progress bar with iteration and ETA, log box, error dialog."""

from __future__ import annotations

import shlex

from .common import Hooks, comboData, connect, fillCombo, read

METHODS = [("ACTION++ (semi-supervised)", "actionpp"), ("ACTION (semi-supervised)", "action"),
           ("Mean teacher (semi-supervised)", "mean-teacher"), ("Supervised only", "supervised")]
DIMS = [("2D (slice by slice)", "2"), ("3D (patches)", "3")]
DEVICES = [("Auto (GPU if available)", "auto"), ("GPU (CUDA)", "cuda"), ("CPU", "cpu")]


class TrainingPanel:
    """Drives one training job through the logic (``startTraining``, ``pollTraining``, ``cancelTraining``,
    ``resumeTraining``, ``dependencyPlan``). A timer (``QTimer`` in Slicer, injected) calls :meth:`poll`.

    ``settingsFactory(**fields)`` builds the settings object handed to ``logic.startTraining`` (the logic's
    ``TrainingSettings`` in Slicer).
    """

    WIDGETS = ("methodComboBox", "dimsComboBox", "iterationsSpinBox", "deviceComboBox", "extraArgsLineEdit",
               "trainButton", "cancelButton", "resumeButton", "trainingProgressBar", "progressLabel", "logTextEdit",
               "unfinishedRunComboBox", "continueCheckBox")
    POLL_MS = 1000
    ESTIMATE_FROM = 1000
    """Runs of at least this many iterations are timed on a few iterations first and the estimate is shown."""

    def __init__(self, ui, logic, settingsFactory, casesProvider, canTrain, blockingMessage=lambda: "",
                 timer=None, hooks: Hooks | None = None, modelProvider=lambda: None):
        """``modelProvider()``: the selected trained model, the start of *Continue from the selected model*."""
        self.ui, self.logic = ui, logic
        self.modelProvider = modelProvider
        self.settingsFactory = settingsFactory
        self.casesProvider, self.canTrain, self.blockingMessage = casesProvider, canTrain, blockingMessage
        self.timer = timer
        self.hooks = hooks or Hooks()
        self.state = "idle"
        self.resumable = False
        fillCombo(ui.methodComboBox, METHODS, "actionpp")
        fillCombo(ui.dimsComboBox, DIMS, "2")
        fillCombo(ui.deviceComboBox, DEVICES, "auto")
        connect(ui.trainButton.clicked, self.onTrain)
        connect(ui.cancelButton.clicked, self.onCancel)
        connect(ui.resumeButton.clicked, self.onResume)
        if timer is not None:
            timer.setInterval(self.POLL_MS)
            connect(timer.timeout, self.poll)
        ui.trainingProgressBar.setValue(0)
        self.refreshUnfinished()

    # ---- settings ------------------------------------------------------------------------------------------------
    def device(self) -> str:
        return comboData(self.ui.deviceComboBox) or "auto"

    def settings(self):
        """The GUI's choices as the logic's settings object."""
        extra = shlex.split(read(self.ui.extraArgsLineEdit, "text") or "")
        fields = dict(method=comboData(self.ui.methodComboBox) or "actionpp",
                      dims=int(comboData(self.ui.dimsComboBox) or 2),
                      iterations=int(read(self.ui.iterationsSpinBox, "value")), device=self.device(), extraArgs=extra)
        if read(self.ui.continueCheckBox, "checked"):
            model = self.modelProvider()
            if model is None:
                raise ValueError("'Continue from the selected model' needs a model: choose one under Segment")
            fields["initFrom"] = str(model.path)
        return self.settingsFactory(**fields)

    # ---- buttons -------------------------------------------------------------------------------------------------
    def refreshUnfinished(self) -> None:
        """List the work folder's runs that stopped early and can be resumed (e.g. from before a restart)."""
        runs = self.logic.listUnfinishedRuns()
        items = [(f"{run.path.name} ({run.reason})", str(run.path)) for run in runs]
        fillCombo(self.ui.unfinishedRunComboBox, items, comboData(self.ui.unfinishedRunComboBox))
        self.ui.unfinishedRunComboBox.setEnabled(bool(items))
        self.updateButtons()

    def updateButtons(self) -> None:
        running = self.state == "running"
        allowed = self.canTrain()
        self.ui.trainButton.setEnabled(not running and allowed)
        message = "" if allowed else self.blockingMessage()
        self.ui.trainButton.setToolTip(message or "Export the selected volumes and train in a separate process.")
        self.ui.cancelButton.setEnabled(running)
        chosen = comboData(self.ui.unfinishedRunComboBox) is not None
        self.ui.resumeButton.setEnabled(not running and (self.resumable or chosen))

    def onTrain(self) -> None:
        if not self._dependenciesReady():
            return
        dataset = None
        try:
            settings, cases = self.settings(), self.casesProvider()
            with self.hooks.busy():
                self.logic.checkDevice(settings.device)
                if (settings.iterations or 0) >= self.ESTIMATE_FROM:
                    dataset = self.logic.exportDataset(cases).folder
                    estimate = self.logic.estimateTraining(dataset, settings)
            if dataset is not None and not self.hooks.confirm(f"Training will take {estimate.describe()}.\n\n"
                                                              "Start it now?"):
                self.ui.progressLabel.setText(f"Not started (estimated {estimate.describe()}).")
                return
            with self.hooks.busy():
                self.logic.startTraining(cases, settings, dataset=dataset)
        except Exception as exc:  # shown to the user, never swallowed
            self.hooks.showError(f"Could not start training: {exc}", "")
            return
        self.ui.logTextEdit.setPlainText("")
        self.ui.trainingProgressBar.setValue(0)
        self.ui.progressLabel.setText("Starting...")
        self.markRunning()
        self.hooks.showCurves()

    def onCancel(self) -> None:
        self.logic.cancelTraining()
        self.poll()

    def onResume(self) -> None:
        """Resume this scene's stopped training, else the unfinished run chosen in the list."""
        try:
            if not self.resumable:
                runDir = comboData(self.ui.unfinishedRunComboBox)
                if runDir is None:
                    raise RuntimeError("no stopped training in this scene and no unfinished run chosen")
                self.logic.adoptRun(runDir)
            self.logic.resumeTraining()
        except Exception as exc:
            self.hooks.showError(f"Could not resume training: {exc}", "")
            return
        self.ui.progressLabel.setText("Resuming from the last checkpoint...")
        self.markRunning()

    def markRunning(self) -> None:
        """Show a job as running and poll it (also used when the module is reloaded during a run)."""
        self.state, self.resumable = "running", False
        if self.timer is not None:
            self.timer.start()
        self.updateButtons()

    def _dependenciesReady(self) -> bool:
        plan = self.logic.dependencyPlan()
        if plan.empty:
            return True
        if not self.hooks.confirm(plan.describe() + "\n\nInstall them now? This can take several minutes."):
            return False
        try:
            with self.hooks.busy():
                self.hooks.installDependencies(plan)
        except Exception as exc:
            self.hooks.showError(f"Installing the dependencies failed: {exc}", "")
            return False
        plan = self.logic.dependencyPlan()
        if not plan.empty:
            self.hooks.showError("Some dependencies are still missing (a restart of Slicer may be needed).",
                                 plan.describe())
            return False
        return True

    # ---- progress ------------------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Read the job's new progress and log; react once when it ends."""
        status = self.logic.pollTraining()
        if status is None:
            if self.timer is not None:
                self.timer.stop()
            return
        progress = status.progress
        bar = self.ui.trainingProgressBar
        bar.setMaximum(max(1, progress.stepsTotal))  # the whole run: pre-training steps + iterations
        bar.setValue(min(progress.stepsDone, max(1, progress.stepsTotal)))
        self.ui.progressLabel.setText(progress.summary())
        if status.newLog:
            self.ui.logTextEdit.appendPlainText(status.newLog.rstrip("\n"))
        self.hooks.onCurves(status.curves)
        previous, self.state, self.resumable = self.state, status.state, status.resumable
        if status.state != "running":
            if self.timer is not None:
                self.timer.stop()
            if previous == "running":
                self._ended(status)
        self.updateButtons()

    def _ended(self, status) -> None:
        self.refreshUnfinished()
        if status.state == "finished":
            self.ui.progressLabel.setText(f"Finished: {status.progress.summary()} · model in {status.runDir}")
            self.hooks.onTrainingFinished(status.runDir)
        elif status.state == "cancelled":
            where = " Resume continues from the last checkpoint." if status.resumable else ""
            at = (f"pre-training step {status.progress.iteration}" if status.progress.phase == "pretrain"
                  else f"iteration {status.progress.iteration}")
            self.ui.progressLabel.setText(f"Cancelled at {at}.{where}")
        elif status.state == "failed":
            self.ui.progressLabel.setText(f"Failed: {status.errorMessage}")
            self.hooks.showError(f"Training failed: {status.errorMessage}", status.logTail)
