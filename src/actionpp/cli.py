"""The ``actionpp`` command: thin argparse wrappers over typed functions.

Subcommands: ``train``, ``predict``, ``evaluate``, ``make-phantoms``, ``demo``, ``devices``, ``rank``. Errors on user input print one line
``actionpp: error: ...`` and exit with status 1; bad usage exits with 2 (argparse).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from actionpp import __version__
from actionpp.config import METHODS, MIXES, NETWORKS, TAU_STEPS, Config

HELP = {
    "labeled_cases": "keep labels on only the first N labeled training cases, the rest become unlabeled (0: all)",
    "method": f"training method: {', '.join(METHODS)}",
    "dims": "2: slice-wise along the through-plane axis; 3: patch-based",
    "network": f"backbone: {', '.join(NETWORKS)} (MONAI)",
    "channels": "feature widths of the UNet levels",
    "patch": "training patch size, z y x in 3D or y x in 2D (default 128 128 / 16 96 96)",
    "iterations": "training iterations",
    "batch_labeled": "labeled images per batch",
    "batch_unlabeled": "unlabeled images per batch",
    "device": "auto, cpu, cuda, cuda:N or mps (auto: CUDA if present)",
    "seed": "random seed; a run is reproducible for a given seed and device",
    "workers": "data-loading worker processes (0: load in the training process)",
    "cache": "where training volumes live: memory (held), disk (RUN/cache/*.npy, memory-mapped, deleted when the "
             "run finishes), none (read from the dataset at each draw), auto (memory when they take under 1/4 of the "
             "available memory, else disk)",
    "checkpoint_every": "write checkpoints/last.pt every N iterations (and at the end)",
    "init_from": "start from this trained model (run folder or model.pt): classes matched by name, added classes "
                 "get a new output row; skips pre-training",
    "val_every": "validate every N iterations (0: only at the end)",
    "val_fraction": "fraction of labeled cases held out for validation",
    "amp": "alias of --precision fp16 on CUDA (ignored on CPU)",
    "precision": "training precision: fp32, bf16 or fp16 autocast (CPU and GPU; fp16 uses a gradient scaler)",
    "memory_check": "estimate peak memory first and stop, proposing a setting that fits, when it would not fit",
    "probe_steps": "time the run instead: stop each stage after N steps and save nothing (duration estimates)",
    "lr": "initial learning rate (SGD, poly decay)",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "nesterov": "Nesterov momentum",
    "poly_power": "exponent of the poly learning-rate decay",
    "ema_momentum": "mean-teacher EMA momentum",
    "unsup_weight": "weight of the pseudo-label loss",
    "strong_threshold": "pseudo-label confidence threshold and AnCo hard-anchor threshold (delta_s)",
    "weak_threshold": "teacher confidence making an unlabeled pixel valid for AnCo (delta_w)",
    "split_bn": "student forward on labeled and unlabeled halves separately (separate BatchNorm statistics)",
    "head_lr_scale": "learning rate of the representation head relative to --lr (1: official; 100 = 1/weight)",
    "teacher": "official: parameters-only EMA teacher in train mode (as the paper's code); eval: eval mode with "
               "averaged BN statistics",
    "unsup_rampup": "sigmoid ramp-up of the pseudo-label weight over this fraction of the run (0: none)",
    "unsup_threshold": "pseudo-label threshold: fixed (delta_s for all classes) or class-adaptive (scaled per class)",
    "class_conf_momentum": "EMA momentum of the per-class teacher confidence (class-adaptive thresholds)",
    "unsup_mask": "pseudo-label gate: pixel (confident pixels only) or image (official per-image weight)",
    "mix": f"mixing inside the unlabeled batch: {', '.join(MIXES)}",
    "strong_aug": "strong augmentation of the unlabeled view",
    "embed_dim": "dimension of the representation-head embeddings",
    "head_full_res": "unet only: also feed the representation head the full-resolution map of the top up block",
    "anco_weight": "weight of the anatomical-contrast loss",
    "anco_anchors": "hard anchors sampled per class",
    "anco_negatives": "negatives per anchor",
    "anco_pool": "valid pixels embedded per class (prototype estimate and negative pool)",
    "anco_share_negatives": "draw one negative set per class for all its anchors (--no-...: per anchor, official)",
    "anco_tau": "AnCo temperature for --method action",
    "anco_tau_min": "AnCo cosine-schedule lower temperature",
    "anco_tau_max": "AnCo cosine-schedule upper temperature",
    "ascl_weight": "weight of the adaptive supervised contrastive loss",
    "ascl_tau_min": "ASCL cosine-schedule lower temperature",
    "ascl_tau_max": "ASCL cosine-schedule upper temperature",
    "ascl_target_weight": "weight of ASCL's targeted (class-centre) term",
    "ascl_queue": "ASCL memory-queue length",
    "ascl_anchors_per_class": "ASCL anchors per class present",
    "ascl_centroid_momentum": "momentum of the running class centroids used for matching",
    "ascl_precision": "dtype of ASCL's teacher pass and queue products: auto (bfloat16 where the device has bf16 "
                      "matrix units), float32 or bfloat16",
    "centers": "class centres: auto (simplex/optimised) or a .npy file of C x D unit vectors",
    "ascl_targets": "what ASCL's targeted term pulls towards: matched (the paper: uniform centres, Hungarian), "
                    "unmatched (centre c for class c) or centroids (the running class centroids)",
    "tau_period": "cosine temperature period as a fraction of the run",
    "tau_step": f"advance the temperature per {' or per '.join(TAU_STEPS)}",
    "pretrain_iterations": "contrastive pre-training iterations before fine-tuning (-1: auto = 25%% of --iterations, "
                           "at most 250, for action/actionpp, none for the others; 0: off)",
    "pretrain_tau_period": "period of the pre-training cosine temperatures, fraction of the stage",
    "dims_defaults": "3D runs take the official 3D constants for settings left at their 2D defaults",
    "pretrain_memory": "pre-training memory-bank size",
    "pretrain_latent_dim": "pre-training latent dimension",
    "pretrain_tau_student": "pre-training student temperature (lower bound of its cosine schedule)",
    "pretrain_tau_teacher": "pre-training teacher temperature (lower bound of its cosine schedule)",
    "pretrain_tau_max": "pre-training upper temperature",
    "pretrain_window": "local-distillation window size (stride is half of it)",
    "pretrain_pool": "local-distillation pooled size per window",
    "pretrain_global_weight": "weight of the global distillation loss",
    "pretrain_local_weight": "weight of the local distillation loss",
    "overlap": "sliding-window overlap at validation/prediction",
}
_SKIP = {"data", "out", "extra"}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    for f in fields(Config):
        if f.name in _SKIP:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{HELP[f.name]} (default: {default})"}
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, tuple):
            p.add_argument(flag, type=int, nargs="+", metavar="N", **kw)
        else:
            p.add_argument(flag, type=type(default), metavar=type(default).__name__.upper(), **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actionpp", description="ACTION++ semi-supervised medical image segmentation.")
    p.add_argument("--version", action="version", version=f"actionpp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model on a dataset folder",
                       description="Train on an nnU-Net raw dataset (labeled + unlabeled images), an SSL4MIS ACDC "
                                   "h5 folder or a UA-MT LA h5 folder. Writes RUN/config.json, events.jsonl, "
                                   "checkpoints/last.pt, model.pt.")
    t.add_argument("data", nargs="?", help="dataset folder (not needed with --resume)")
    t.add_argument("--out", required=True, help="run folder (must be new or empty unless --resume)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    t.add_argument("--config", help="JSON or YAML file of settings; flags given here override it")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(t)

    pr = sub.add_parser("predict", help="segment a file or a folder with a trained model")
    pr.add_argument("model", help="run folder or model.pt")
    pr.add_argument("input", help="image file or folder of images")
    pr.add_argument("--out", required=True, help="output file (for a file input) or folder")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    pr.add_argument("--largest-component", action="store_true", help="keep the largest connected component per class")
    pr.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pr.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                    help="do not estimate peak memory before predicting")
    pr.add_argument("--uncertainty", action="store_true",
                    help="also write <name>_uncertainty<ext>: float32 entropy / log C in [0, 1] on the same grid")
    rk = sub.add_parser("rank", help="rank images by how unsure a model is about them (label the first next)")
    rk.add_argument("model", help="run folder or model.pt")
    rk.add_argument("images", help="image file or folder of images (e.g. the unlabeled ones)")
    rk.add_argument("--out", help="write the ranking as JSON: [{\"case\", \"score\", \"voxels\"}], most uncertain first")
    rk.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")

    ev = sub.add_parser("evaluate", help="Dice, Jaccard, HD95, ASD (mm) of predictions against ground truth")
    ev.add_argument("pred", help="predicted label file or folder")
    ev.add_argument("gt", help="ground-truth label file or folder (matched by case name)")
    ev.add_argument("--labels", help="dataset.json giving class names (default: values as names)")
    ev.add_argument("--out", help="write per-case and summary metrics to this JSON file")

    ph = sub.add_parser("make-phantoms", help="write a synthetic dataset in the nnU-Net raw layout")
    ph.add_argument("--kind", choices=("cardiac", "atrium"), default="cardiac", help="cardiac cine-MRI-like stacks or "
                    "left-atrium-like volumes (default: cardiac)")
    ph.add_argument("--cases", type=int, default=8, help="training cases (default: 8)")
    ph.add_argument("--labeled", type=int, default=2, help="training cases that get labels (default: 2)")
    ph.add_argument("--test-cases", type=int, default=4, help="held-out labeled test cases (default: 4)")
    ph.add_argument("--out", required=True, help="new dataset folder")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    ph.add_argument("--size", type=int, nargs=3, metavar=("Z", "Y", "X"), help="volume size (default per kind)")
    ph.add_argument("--spacing", type=float, nargs=2, metavar=("IN_PLANE", "THROUGH_PLANE"),
                    help="cardiac: voxel size in mm at the default size (default: drawn per case, ~1.5 x 9)")
    ph.add_argument("--oblique", type=float, default=0.0, help="cardiac: rotate the anatomy in-plane by this many "
                    "degrees (+-10 per case) and write matching direction cosines (default: 0)")
    ph.add_argument("--intensity", choices=("default", "alt"), default="default",
                    help="cardiac: tissue contrast scheme; alt = other tissue means and a per-case gamma")

    d = sub.add_parser("demo", help="phantoms -> train each method -> predict -> evaluate -> report.md, side by side")
    d.add_argument("--out", default="demo_out", help="demo folder (default: demo_out)")
    d.add_argument("--methods", nargs="+", choices=METHODS, default=["supervised", "actionpp"],
                   help="methods trained on the same data and compared (default: supervised actionpp)")
    d.add_argument("--iterations", type=int, default=250, help="training iterations per method (default: 250)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    sub.add_parser("devices", help="print, as one JSON object, the PyTorch build and the GPUs it sees")
    sub.add_parser("studio", add_help=False,
                   help="the curate / train / segment workflow in a browser (needs the web extra; "
                        "actionpp studio --help)")
    return p


def _studio(argv: list[str]) -> int:
    """``actionpp studio``: handed to the web package (outside the engine), imported only here."""
    try:
        from actionpp_studio.server import main as studio_main
    except ImportError as e:
        print(f"actionpp: error: studio: expected the web extra (pip install -e \".[web]\"), found it missing ({e})",
              file=sys.stderr)
        return 1
    return studio_main(argv)


def _train(a: argparse.Namespace) -> None:
    from actionpp.trainer import train

    given = {k: v for k, v in vars(a).items() if k in {f.name for f in fields(Config)} - _SKIP}
    base = Config.load(a.config).to_dict() if a.config else {}
    base.update(given)
    if a.data:
        base["data"] = a.data
    base["out"] = a.out
    if not a.resume and not base.get("data"):
        raise ValueError("DATA: expected a dataset folder (or --resume with an existing run)")
    train(Config.from_dict(base), resume=a.resume, show_bar=False if a.quiet else None)


def _predict(a: argparse.Namespace) -> None:
    from actionpp.inference import predict_paths

    written = predict_paths(a.model, a.input, a.out, a.device, a.largest_component, a.overwrite, a.memory_check,
                            uncertainty=a.uncertainty)
    print(f"wrote {len(written)} prediction(s) to {a.out}")


def _evaluate(a: argparse.Namespace) -> None:
    from actionpp.evaluate import evaluate_paths

    evaluate_paths(a.pred, a.gt, a.labels, a.out)


def _phantoms(a: argparse.Namespace) -> None:
    from actionpp.data.phantom_variants import Variant
    from actionpp.data.phantoms import make_phantoms

    variant = Variant(tuple(a.spacing) if a.spacing else None, a.oblique, a.intensity)
    path = make_phantoms(a.kind, a.cases, a.labeled, Path(a.out), seed=a.seed, test_cases=a.test_cases,
                         size=tuple(a.size) if a.size else None, variant=None if variant.is_default else variant)
    print(f"wrote {a.kind} phantoms to {path}")


def _demo(a: argparse.Namespace) -> None:
    from actionpp.demo import run_demo

    report = run_demo(Path(a.out), methods=tuple(a.methods), iterations=a.iterations, device=a.device)
    print(f"report: {report}")


def _rank(a: argparse.Namespace) -> None:
    from actionpp.rank import format_table, rank_images, write_ranking

    if a.out and Path(a.out).exists():
        raise ValueError(f"--out {a.out}: output exists; expected a new path")
    ranking = rank_images(a.model, a.images, a.device)
    print(format_table(ranking))
    if a.out:
        write_ranking(ranking, a.out)


def _devices(a: argparse.Namespace) -> None:
    import json

    from actionpp.hardware import device_report

    print(json.dumps(device_report()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["studio"]:
        return _studio(argv[1:])
    args = build_parser().parse_args(argv)
    run = {"train": _train, "predict": _predict, "evaluate": _evaluate, "make-phantoms": _phantoms,
           "demo": _demo, "devices": _devices,
           "rank": _rank}[args.command]
    try:
        run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"actionpp: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    except OSError as e:  # a write or read the OS refused (disk full, permissions, file too large)
        where = f"{e.filename}: " if e.filename else ""
        print(f"actionpp: error: {where}{e.strerror or type(e).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("actionpp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

