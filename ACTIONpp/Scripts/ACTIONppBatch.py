"""Train (and optionally segment a folder) without the GUI, with the same logic the ACTIONpp module uses.

In Slicer::

    Slicer --no-main-window --python-script ACTIONpp/Scripts/ACTIONppBatch.py -- --data DIR --out RUN \\
        [--predict DIR --pred-out DIR] [--work DIR] [engine flags, e.g. --iterations 20 --method actionpp --device cpu]

Under plain Python where ``slicer-core`` is installed (how CI runs it)::

    python ACTIONpp/Scripts/ACTIONppBatch.py --data DIR --out RUN ...

``--data`` is either an nnU-Net raw dataset (has ``dataset.json``: trained on as is) or a folder of volumes, each
with an optional ``<name>.seg.nrrd`` segmentation: those are loaded into an MRML scene through storage nodes and
exported with the module's export logic (segment names -> classes, checked by the curation check). Flags this script
does not know are passed to ``actionpp train`` unchanged (``--init-from RUN`` continues from a trained model). With
``--predict``, every volume of that folder is segmented; ``--pred-out`` gets ``<name>.nrrd`` label maps and
``<name>.seg.nrrd`` segmentations. With ``--rank``, the unlabeled volumes are ranked by the new model's uncertainty
into ``<out>/ranking.json`` (label the first one next).

Exit status 0 on success, 1 with one line ``ACTIONppBatch: error: ...`` on stderr on failure, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent.parent  # the folder of ACTIONpp.py (this script is in Scripts/)
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

PROG = "ACTIONppBatch"
VOLUME_ENDINGS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
SEGMENTATION_ENDINGS = (".seg.nrrd", ".seg.nhdr", ".seg.nii.gz", ".seg.nii")


class BatchError(Exception):
    """A failure reported as one line on stderr, exit status 1."""


def buildParser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="Other flags (e.g. --iterations 20 --method actionpp --device cpu) are passed "
                                       "to 'actionpp train'.")
    p.add_argument("--data", required=True, help="nnU-Net raw dataset, or folder of volumes + <name>.seg.nrrd")
    p.add_argument("--out", required=True, help="new run folder")
    p.add_argument("--work", help="where an exported dataset is written (default: <out>_dataset beside the run)")
    p.add_argument("--predict", help="folder of volumes to segment with the trained model")
    p.add_argument("--pred-out", help="output folder for --predict (label maps and .seg.nrrd)")
    p.add_argument("--python", help="interpreter for the engine (default: PythonSlicer in Slicer, else this Python)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds of training")
    p.add_argument("--rank", action="store_true",
                   help="after training, rank the dataset's unlabeled volumes by the model's uncertainty: "
                        "<out>/ranking.json, most uncertain (label next) first")
    p.add_argument("--install-dependencies", action="store_true",
                   help="install missing engine packages (torch via the PyTorch extension in Slicer, others via pip)")
    return p


# ---- scene and files ---------------------------------------------------------------------------------------------
def _inSlicer() -> bool:
    """True inside the Slicer application (not under slicer-core, and not without any ``slicer`` package)."""
    try:
        import slicer
    except ImportError:
        return False
    return getattr(slicer, "app", None) is not None


def sceneContext():
    from ACTIONppLogic import mrml

    if _inSlicer():
        import slicer

        mrml.registerSegmentationConverterRules()
        return mrml.SceneContext(slicer.mrmlScene, slicer.modules.segmentations.logic())
    return mrml.createHeadlessScene()


def _ending(path: Path, endings) -> str | None:
    name = path.name.lower()
    return next((e for e in sorted(endings, key=len, reverse=True) if name.endswith(e)), None)


def findVolumes(folder: Path) -> list[tuple[Path, Path | None]]:
    """``[(volume file, its .seg.nrrd or None)]`` in name order; segmentation files alone are errors."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    segmentations = {p.name[: -len(_ending(p, SEGMENTATION_ENDINGS))]: p for p in files
                     if _ending(p, SEGMENTATION_ENDINGS)}
    volumes = [(p.name[: -len(_ending(p, VOLUME_ENDINGS))], p) for p in files
               if _ending(p, VOLUME_ENDINGS) and not _ending(p, SEGMENTATION_ENDINGS)]
    if not volumes:
        raise BatchError(f"{folder}: expected volumes ({', '.join(VOLUME_ENDINGS)}) or a dataset.json, found none")
    stems = {stem for stem, _ in volumes}
    orphans = sorted(set(segmentations) - stems)
    if orphans:
        raise BatchError(f"{segmentations[orphans[0]]}: expected a volume named {orphans[0]}.<ending> beside it, "
                         "found none")
    return [(path, segmentations.get(stem)) for stem, path in volumes]


def loadCases(context, folder: Path):
    """Read the folder's volumes and segmentations into the scene through storage nodes."""
    from ACTIONppLogic import mrml

    cases = []
    for volumePath, segmentationPath in findVolumes(folder):
        volume = mrml.readVolume(context.scene, volumePath)
        segmentation = mrml.readSegmentation(context.scene, segmentationPath) if segmentationPath else None
        cases.append((volume, segmentation))
    return cases


# ---- steps -------------------------------------------------------------------------------------------------------
def checkDependencies(install: bool) -> None:
    from ACTIONppLogic import dependencies

    plan = dependencies.checkDependencies()
    if plan.empty:
        return
    if not install:
        raise BatchError("missing packages: " + "; ".join(str(m) for m in plan.missing)
                         + " (rerun with --install-dependencies)")
    if _inSlicer():
        import slicer

        def installTorch(requirement):
            import PyTorchUtils

            PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                          torchVersionRequirement=requirement[len("torch"):])

        dependencies.installDependencies(plan, slicer.util.pip_install, installTorch)
    else:
        import subprocess

        def pipInstall(requirements):
            subprocess.run([sys.executable, "-m", "pip", "install", *requirements], check=True)

        dependencies.installDependencies(plan, pipInstall)


def _printer():
    last = {"iteration": -1, "time": 0.0}

    def show(job):
        p = job.progress
        now = time.monotonic()
        if p.iteration != last["iteration"] and (now - last["time"] >= 1.0 or p.done):
            last.update(iteration=p.iteration, time=now)
            print(f"{PROG}: {p.summary()}", flush=True)

    return show


def train(args, engineArgs, python, baseEnv):
    from ACTIONppLogic import export, jobs
    from ACTIONppLogic.core import ModuleLogic

    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise BatchError(f"--data {data}: expected a dataset folder or a folder of volumes, found nothing")
    try:
        jobs.checkRunFolderFree(out)
    except jobs.JobBusyError as exc:
        raise BatchError(f"--out {exc}") from exc
    if out.exists() and any(out.iterdir()):
        raise BatchError(f"--out {out}: expected a new or empty run folder, found files in it")
    context = None
    if (data / "dataset.json").is_file():
        dataset = data
    else:
        context = sceneContext()
        cases = loadCases(context, data)
        work = Path(args.work) if args.work else out.parent / f"{out.name}_dataset"
        try:
            result = ModuleLogic(context, work).exportDataset(cases, work)
        except export.CurationError as exc:
            raise BatchError(f"{data}: " + "; ".join(p.message for p in exc.problems)) from exc
        except (FileExistsError, OSError) as exc:
            raise BatchError(str(exc)) from exc
        dataset = result.folder
        print(f"{PROG}: exported {len(result.labeledCaseIds)} labeled + {len(result.unlabeledCaseIds)} unlabeled "
              f"volumes to {dataset} (classes: {', '.join(n for n in result.labels if n != 'background')})", flush=True)
    job = jobs.TrainingJob(dataset, out, python=python, baseEnv=baseEnv, args=engineArgs).start()
    print(f"{PROG}: training in {out} (log: {job.logPath})", flush=True)
    state = job.wait(timeout=args.timeout, callback=_printer())
    if state == jobs.RUNNING:
        job.cancel()
        raise BatchError(f"training did not finish within --timeout {args.timeout:g} s (cancelled; resume with "
                         f"'actionpp train --resume --out {out}')")
    if state != jobs.FINISHED:
        raise BatchError(f"training failed: {job.errorMessage()} (log: {job.logPath})")
    return context, dataset


def predict(args, context, python, baseEnv, device):
    from ACTIONppLogic import jobs, mrml, prediction, registry

    source, target = Path(args.predict), Path(args.pred_out)
    if not source.is_dir():
        raise BatchError(f"--predict {source}: expected a folder of volumes, found nothing")
    model = registry.readModel(args.out)
    context = context or sceneContext()
    volumes = [mrml.readVolume(context.scene, path) for path, _ in findVolumes(source)]
    target.mkdir(parents=True, exist_ok=True)
    stems = [mrml.safeFileStem(v.GetName()) for v in volumes]
    existing = [target / f"{s}{e}" for s in stems for e in (".nrrd", ".seg.nrrd") if (target / f"{s}{e}").exists()]
    if existing:
        raise BatchError(f"{existing[0]}: output exists; expected a new file")
    with tempfile.TemporaryDirectory(prefix="actionpp-predict-") as staging:
        for volume, stem in zip(volumes, stems):  # only the volumes, in a format the engine reads, geometry kept
            mrml.writeVolume(volume, Path(staging) / f"{stem}.nrrd")
        job = jobs.PredictionJob(model.path, staging, target, device=device, python=python, baseEnv=baseEnv,
                                 logPath=target / "predict.log").start()
        if job.wait() != jobs.FINISHED:
            raise BatchError(f"prediction failed: {job.errorMessage()} (log: {job.logPath})")
    for volume, stem in zip(volumes, stems):
        segmentation = prediction.importPrediction(target / f"{stem}.nrrd", model.labels, volume,
                                                   context.segmentationsLogic, createSurface=False)
        mrml.writeSegmentation(segmentation, target / f"{stem}.seg.nrrd")
    print(f"{PROG}: segmented {len(volumes)} volume(s) into {target}", flush=True)


def rank(args, dataset: Path, python, baseEnv, device):
    """Rank the unlabeled training images of ``dataset`` with the new model into ``<out>/ranking.json``."""
    from ACTIONppLogic import engine, jobs

    out = Path(args.out) / "ranking.json"
    labels = {p.name.split(".")[0] for p in (dataset / "labelsTr").glob("*") if not p.name.startswith(".")}
    unlabeled = [p for p in sorted((dataset / "imagesTr").glob("*_0000.*")) if p.name.split("_0000.")[0] not in labels]
    if not unlabeled:
        print(f"{PROG}: nothing to rank: every training volume is labeled", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="actionpp-rank-") as staging:
        for image in unlabeled:
            (Path(staging) / image.name).symlink_to(image.resolve())
        job = jobs.Job(engine.engineCommand(python, "rank", str(args.out), staging, "--out", str(out), "--device",
                                            device), Path(args.out) / "rank.log",
                       env=engine.engineEnvironment(baseEnv, device=device)).start()
        if job.wait() != jobs.FINISHED:
            raise BatchError(f"ranking failed: {job.errorMessage()} (log: {job.logPath})")
    import json

    ranking = json.loads(out.read_text(encoding="utf-8"))
    print(f"{PROG}: ranked {len(ranking)} unlabeled volume(s) into {out}; label next: {ranking[0]['case']} "
          f"(uncertainty {ranking[0]['score']:.3f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    parser = buildParser()
    try:
        args, engineArgs = parser.parse_known_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if bool(args.predict) != bool(args.pred_out):
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: --predict and --pred-out go together", file=sys.stderr)
        return 2
    try:
        from ACTIONppLogic import engine

        if engine.ensureEngineOnPath() is None:
            raise BatchError(f"the actionpp engine was not found beside {MODULE_DIR} or in {MODULE_DIR.parent / 'src'}")
        checkDependencies(args.install_dependencies)
        python = args.python or engine.defaultPython()
        baseEnv = None
        if _inSlicer():
            import slicer

            baseEnv = slicer.util.startupEnvironment()
        context, dataset = train(args, engineArgs, python, baseEnv)
        device = engineArgs[engineArgs.index("--device") + 1] if "--device" in engineArgs[:-1] else "auto"
        if args.predict:
            predict(args, context, python, baseEnv, device)
        if args.rank:
            rank(args, dataset, python, baseEnv, device)
    except (BatchError, OSError, ValueError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    print(f"{PROG}: done: model {Path(args.out) / 'model.pt'}", flush=True)
    return 0


if __name__ == "__main__":
    status = main()
    if _inSlicer():
        import slicer

        slicer.util.exit(status)
    else:
        sys.exit(status)
