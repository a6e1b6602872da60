"""The module's in-app self-test (Slicer: Developer mode -> Reload and Test; ``ACTIONppTest`` in ACTIONpp.py).

It runs inside Slicer on Slicer's scene: exports two synthetic labeled volumes and one unlabeled, checks the
curation report and imports a label map back as a segmentation; then, when the engine's dependencies are installed,
trains six iterations in a ``PythonSlicer`` process and segments the unlabeled volume. Everything it writes goes to
its own temporary work folder, removed afterwards.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from ACTIONppLogic import jobs as _jobs


def syntheticScene(labeled: int = 2, unlabeled: int = 1, prefix: str = "ACTIONpp test"):
    """``(volumes, segmentations)`` added to Slicer's scene: volumes as a user loads them (4 x 32 x 32 voxels of
    1 x 1 x 5 mm, a noisy ring around a bright core, shifted per volume) named ``<prefix> <i>``, and for the first
    ``labeled`` a segmentation as the Segment Editor makes one (reference geometry = its volume), named
    ``<prefix> <i> segmentation``, with segments "ring" and "core" in an order that differs between volumes."""
    import numpy as np

    yy, xx = np.mgrid[:32, :32]
    volumes, segmentations = [], []
    for i in range(labeled + unlabeled):
        ring = np.broadcast_to(((yy - 16) ** 2 + (xx - 14 - i) ** 2) < 80, (4, 32, 32)).copy()
        core = np.broadcast_to(((yy - 16) ** 2 + (xx - 14 - i) ** 2) < 20, (4, 32, 32)).copy()
        image = (ring * 1.0 + core + np.random.default_rng(i).normal(0, 0.2, ring.shape)).astype(np.float32)
        volume = slicer.util.addVolumeFromArray(image, name=f"{prefix} {i}")
        volume.SetSpacing(1.0, 1.0, 5.0)
        volume.SetOrigin(10.0, -5.0, 2.5 * i)
        volumes.append(volume)
        if i < labeled:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{prefix} {i} segmentation")
            segmentation.CreateDefaultDisplayNodes()
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            for name in (["ring", "core"] if i % 2 == 0 else ["core", "ring"]):
                segmentId = segmentation.GetSegmentation().AddEmptySegment("", name)
                mask = (ring & ~core) if name == "ring" else core
                slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), segmentation, segmentId,
                                                                 volume)
            segmentations.append(segmentation)
    return volumes, segmentations


class SelfTest(ScriptedLoadableModuleTest):
    """Synthetic volumes: export + curation + import always; a tiny training and segmentation when the engine's
    dependencies are installed. The module's ``ACTIONppTest`` subclasses this and supplies ``makeLogic``."""

    @staticmethod
    def makeLogic(workFolder):
        """``workFolder -> logic``: the module's Slicer logic class on that work folder (set by the subclass)."""
        raise NotImplementedError("ACTIONppTest (ACTIONpp.py) supplies the module's logic")

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.workFolder = Path(tempfile.mkdtemp(prefix="ACTIONppTest-"))

    def tearDown(self):
        shutil.rmtree(self.workFolder, ignore_errors=True)  # the test's own folder: exported data, runs, models

    def runTest(self):
        for test in (self.test_ExportCurationImport, self.test_TrainAndSegment):
            self.setUp()
            try:
                test()
            finally:
                self.tearDown()

    def test_ExportCurationImport(self):
        import numpy as np
        import SimpleITK as sitk

        self.delayDisplay("Export, curation check and import")
        volumes, segmentations = syntheticScene()
        logic = self.makeLogic(self.workFolder)
        cases = [(v, logic.guessSegmentation(v)) for v in volumes]
        self.assertEqual([s.GetName() if s else None for _, s in cases], ["ACTIONpp test 0 segmentation",
                                                                     "ACTIONpp test 1 segmentation", None])
        report = logic.checkCuration(cases)
        self.assertTrue(report.canTrain, [p.message for p in report.problems])
        self.assertEqual(report.classes, {"ring": 1, "core": 2})
        result = logic.exportDataset(cases)
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(result.folder / "labelsTr" / "ACTIONpp_test_1.nrrd")))
        ring = slicer.util.arrayFromSegmentBinaryLabelmap(segmentations[1], segmentations[1].GetSegmentation()
                                                          .GetSegmentIdBySegmentName("ring"), volumes[1])
        np.testing.assert_array_equal(label == 1, ring > 0)

        bad = logic.checkCuration([(volumes[2], None)])
        self.assertFalse(bad.canTrain)

        from ACTIONppLogic import prediction

        imported = prediction.importPrediction(result.folder / "labelsTr" / "ACTIONpp_test_0.nrrd",
                                               result.labels, volumes[0], logic.context.segmentationsLogic)
        seg = imported.GetSegmentation()
        self.assertEqual([seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())], ["ring", "core"])
        self.assertTrue(seg.ContainsRepresentation("Closed surface"))
        self.delayDisplay("Export, curation check and import passed")

    def test_TrainAndSegment(self):
        logic = self.makeLogic(self.workFolder)
        plan = logic.dependencyPlan()
        if not plan.empty:
            self.delayDisplay("Skipping training: " + plan.describe())
            return
        self.delayDisplay("Tiny training in a PythonSlicer process")
        volumes, _ = syntheticScene()
        cases = [(v, logic.guessSegmentation(v)) for v in volumes]
        settings = _jobs.TrainingSettings(method="actionpp", iterations=6, device="cpu", checkpointEvery=3,
                                          extraArgs=["--patch", "32", "32", "--batch-labeled", "2",
                                                     "--batch-unlabeled", "1", "--channels", "8", "16"])
        job = logic.startTraining(cases, settings, waitForCompletion=True)
        self.assertEqual(job.state, _jobs.FINISHED, job.logTail())
        models, _ = logic.listModels()
        self.assertEqual(models[0].path, job.runDir)
        segmentation = logic.segment(volumes[2], models[0], device="cpu", waitForCompletion=True)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 2)
        logging.info(f"ACTIONpp self-test: {segmentation.GetName()} created from {job.runDir}")
        self.delayDisplay("Training and segmentation passed")
