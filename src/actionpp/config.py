"""The one configuration of a training run.

Defaults follow the official ACTION++ code (../docs/method.md §9) where the paper fixes a value; every loss weight,
threshold, queue size, anchor count and temperature bound is a field. A :class:`Config` is built from CLI flags, a
JSON/YAML file or a Slicer parameter node, validated in ``__post_init__`` and saved into the run folder and every
checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
from numbers import Integral, Real
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS = ("supervised", "mean-teacher", "action", "actionpp")
NETWORKS = ("unet", "basicunet", "vnet")
PRECISIONS = ("auto", "float32", "bfloat16")
ASCL_TARGETS = ("matched", "unmatched", "centroids")
TRAIN_PRECISIONS = ("fp32", "bf16", "fp16")
MIXES = ("cutmix", "classmix", "none")
TAU_STEPS = ("iteration", "epoch")
TEACHERS = ("eval", "official")
CACHES = ("auto", "memory", "disk", "none")


PRETRAIN_AUTO_FRACTION = 0.25
PRETRAIN_AUTO_MAX = 250
"""``--pretrain-iterations -1`` (auto) = ``min(PRETRAIN_AUTO_FRACTION * iterations, PRETRAIN_AUTO_MAX)`` for
action/actionpp, 0 for the others. The cap: a longer stage over-fits one or two labeled cases and the run ends below
its mean teacher (benchmarks/README.md, "The auto stage capped at 250 steps")."""

DIMS_3D = {"ascl_target_weight": (0.1, 0.2), "pretrain_tau_teacher": (0.01, 0.6), "mix": ("cutmix", "classmix"),
           "pretrain_tau_period": (0.1, 1.0), "ascl_tau_max": (1.0, 0.07)}
"""Official 2D -> 3D constants (docs/method.md, "2D and 3D"): with ``dims_defaults`` (default) a 3D run whose field
still holds the 2D value gets the 3D value. ``ascl_tau_max = 0.07`` makes the 3D ASCL temperature the fixed 0.07."""


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong kind; the message names the field."""


@dataclass
class Config:
    """Every setting of a run. Field names double as CLI flags (``batch_labeled`` -> ``--batch-labeled``)."""

    # --- data and run -------------------------------------------------------------------------------------
    data: str = ""
    """Dataset folder (nnU-Net raw layout, SSL4MIS ACDC h5 layout or UA-MT LA h5 layout)."""
    out: str = ""
    """Run folder: config.json, events.jsonl, checkpoints/last.pt, model.pt."""
    labeled_cases: int = 0
    """Keep labels for only the first N labeled training cases (0: all). How the h5 benchmark layouts pick 3/7 patients."""
    method: str = "actionpp"
    dims: int = 2
    """2: slice-wise along the through-plane axis (as ACDC is done); 3: patch-based."""
    network: str = "unet"
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    patch: tuple[int, ...] = ()
    """Training patch (2 numbers in 2D, 3 in 3D; z, y, x order). Empty: (128, 128) in 2D, (16, 96, 96) in 3D."""
    iterations: int = 2000
    batch_labeled: int = 4
    batch_unlabeled: int = 4
    device: str = "auto"
    seed: int = 1337
    workers: int = 0
    """Data-loading worker processes (0: load in the training process)."""
    cache: str = "auto"
    """Where training volumes live (data/volumes.py): 'memory' (z-scored once, held), 'disk' (z-scored once into
    RUN/cache/*.npy, memory-mapped per draw, deleted when the run finishes), 'none' (read from the dataset at each
    draw), or 'auto' (memory when the volumes take under 1/4 of the available memory, else disk). The run's
    config.json records the resolved choice."""
    checkpoint_every: int = 200
    val_every: int = 0
    """Validate every N iterations on the labeled validation split (0: only at the end)."""
    val_fraction: float = 0.0
    """Fraction of labeled cases held out for validation (at least one labeled case always trains)."""
    precision: str = "fp32"
    """Training precision: fp32, or autocast in bf16 / fp16 (CPU and GPU; fp16 with a gradient scaler). The
    contrastive logits and log-sum-exps are always computed in float32."""
    amp: bool = False
    """Old switch, kept as an alias: ``--amp`` means ``--precision fp16`` on CUDA and nothing on CPU."""
    memory_check: bool = True
    """Estimate peak memory before training and stop, proposing a smaller patch or batch, when it would not fit."""
    probe_steps: int = 0
    """Time the run instead of doing it: each stage stops after this many steps and nothing is saved (the GUI's
    duration estimate); the events still give the planned totals. 0: a normal run."""

    # --- optimisation (official fine-tuning: SGD 0.01, momentum 0.9, Nesterov, wd 1e-4, poly 0.9) --------------
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    poly_power: float = 0.9
    head_lr_scale: float = 1.0
    """Learning rate of the representation head relative to ``lr`` (official: 1). The head learns only from the
    contrastive terms, weighted 0.01, so at 1 its steps are 100x smaller than the network's; 1 / weight (100) gives it
    unit-weight steps without pulling harder on the backbone (docs/method.md, "Why the contrastive losses ...")."""

    # --- mean teacher and unlabeled branch -------------------------------------------------------------------
    ema_momentum: float = 0.99
    teacher: str = "official"
    """'official' (default): parameters-only EMA, teacher in train mode (dropout on, BN statistics of the batch it
    sees), as the official code; 'eval': eval mode with BN running statistics averaged with the parameters. Official
    is the default because it matched or beat 'eval' on 5 of 6 paired seeds on unseen phantom variants (mean +0.010
    Dice, benchmarks/README.md) and its pseudo-labels do not depend on running statistics gathered on strongly
    augmented, mixed images."""
    unsup_weight: float = 1.0
    strong_threshold: float = 0.97
    """delta_s: pseudo-label confidence threshold of the unsupervised loss, and AnCo's hard-anchor threshold."""
    weak_threshold: float = 0.7
    """delta_w: teacher confidence that makes an unlabeled pixel valid for AnCo."""
    split_bn: bool = True
    """Run the student on the labeled and the unlabeled half separately, so BatchNorm never normalises clean labeled
    images with statistics of strongly augmented ones (ours; joint: --no-split-bn). See benchmarks/README.md."""
    unsup_rampup: float = 0.0
    """Sigmoid ramp-up of the pseudo-label weight over this fraction of the run (0: none, as the official code)."""
    unsup_threshold: str = "fixed"
    """'fixed': delta_s for every class (official); 'class-adaptive': delta_s scaled per class by the teacher's
    relative confidence in that class, so slowly learned (rare) classes get pseudo-labels too."""
    class_conf_momentum: float = 0.99
    unsup_mask: str = "pixel"
    """'pixel': only confident pixels enter the pseudo-label loss (ours); 'image': official per-image weighting."""
    mix: str = "cutmix"
    strong_aug: bool = True

    # --- anatomical contrast (AnCo) --------------------------------------------------------------------------
    embed_dim: int = 128
    head_full_res: bool = False
    """``unet`` only: also give the representation head the full-resolution map of the top up block's transposed
    convolution (``C`` channels, before the last residual unit), so that the four pixels of a 2 x 2 cell no longer
    share one embedding (the other decoder maps end at half resolution). basicunet and vnet have a full-resolution
    map already."""
    anco_weight: float = 0.01
    anco_anchors: int = 256
    anco_negatives: int = 512
    anco_pool: int = 512
    """Valid pixels embedded per class as prototype estimate and negative pool (ours; the official code uses all)."""
    anco_share_negatives: bool = True
    """One negative set per class shared by its anchors (ours: same expected loss, ~5x cheaper); False: per anchor."""
    anco_tau: float = 0.5
    """Constant temperature of AnCo for ``--method action``."""
    anco_tau_min: float = 0.1
    anco_tau_max: float = 1.0

    # --- adaptive supervised contrast (ASCL) ------------------------------------------------------------------
    ascl_weight: float = 0.01
    ascl_tau_min: float = 0.07
    ascl_tau_max: float = 1.0
    ascl_target_weight: float = 0.1
    ascl_queue: int = 12288
    ascl_anchors_per_class: int = 256
    ascl_centroid_momentum: float = 0.9
    ascl_precision: str = "auto"
    """dtype of ASCL's teacher side (the teacher's pass over the labeled half and its embeddings) and of its two
    queue products: 'auto' = bfloat16 where the device has bf16 matrix units (Ampere+ GPUs, CPUs with AMX/AVX512-BF16),
    float32 elsewhere; or 'float32' / 'bfloat16'. Pseudo-labels, the student and every loss sum stay float32."""
    centers: str = "auto"
    """'auto' (simplex when C <= D+1, optimised otherwise) or a .npy file of C x D unit vectors."""
    ascl_targets: str = "matched"
    """What ASCL's targeted term pulls towards (an ablation switch): 'matched' (the paper: the fixed uniform centres,
    assigned to classes by the Hungarian algorithm on the running centroids), 'unmatched' (the same centres, class
    ``c`` always to centre ``c``) or 'centroids' (the running class centroids themselves: learned prototypes, no
    uniformity prior)."""

    # --- temperature schedule ----------------------------------------------------------------------------------
    tau_period: float = 0.1
    """Period of the cosine temperature as a fraction of the run (official 2D: 0.1, about 10 cycles)."""
    tau_step: str = "iteration"

    dims_defaults: bool = True
    """3D runs use the official 3D constants (:data:`DIMS_3D`) for fields left at their 2D defaults; off: keep them."""

    # --- continuing from a trained model ------------------------------------------------------------------------
    init_from: str = ""
    """Run folder or model.pt whose weights the student and teacher start from (classes matched by name; see
    warmstart.py). The contrastive pre-training stage is skipped when set."""

    # --- contrastive pre-training (ISD-style relational distillation) -------------------------------------------
    pretrain_iterations: int = -1
    """-1 (auto): 25 % of ``iterations``, at most 250, for action/actionpp (the paper's pipeline), 0 for supervised
    and mean-teacher; 0 turns the stage off. Runs before, and in addition to, ``iterations``."""
    pretrain_tau_period: float = 0.1
    """Period of the pre-training cosine temperatures as a fraction of the stage (official: 0.1 in 2D, 1.0 in 3D)."""
    pretrain_memory: int = 36
    pretrain_latent_dim: int = 128
    pretrain_tau_student: float = 0.1
    pretrain_tau_teacher: float = 0.01
    pretrain_tau_max: float = 1.0
    pretrain_window: int = 32
    pretrain_pool: int = 4
    pretrain_global_weight: float = 1.0
    pretrain_local_weight: float = 1.0

    # --- inference -------------------------------------------------------------------------------------------
    overlap: float = 0.5

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (e.g. who launched the run); never read by the engine."""

    def __post_init__(self) -> None:
        self._check_types()
        self.channels = tuple(int(c) for c in self.channels)
        self.patch = tuple(int(p) for p in self.patch)
        if not self.patch:
            self.patch = (128, 128) if self.dims == 2 else (16, 96, 96)
        if self.dims == 3 and self.dims_defaults:
            for name, (two, three) in DIMS_3D.items():
                if getattr(self, name) == two:
                    setattr(self, name, three)
        if isinstance(self.pretrain_iterations, int) and self.pretrain_iterations == -1:
            auto = self.method in ("action", "actionpp") and isinstance(self.iterations, int)
            size = min(round(PRETRAIN_AUTO_FRACTION * self.iterations), PRETRAIN_AUTO_MAX)
            self.pretrain_iterations = max(1, size) if auto else 0
        self.validate()

    def _check_types(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is not of its default's kind.

        Booleans are not numbers here, integers are accepted for float fields, and float fields must be finite.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if isinstance(default, bool):
                ok, kind = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                ok, kind = isinstance(value, Integral) and not isinstance(value, bool), "an integer"
            elif isinstance(default, float):
                ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
                kind = "a finite number"
            elif isinstance(default, str):
                ok, kind = isinstance(value, str), "a string"
            elif isinstance(default, tuple):
                ok = isinstance(value, (list, tuple)) and all(isinstance(v, Integral) and not isinstance(v, bool)
                                                              for v in value)
                kind = "a list of integers"
            else:
                ok, kind = isinstance(value, dict), "a mapping"
            if not ok:
                raise ConfigError(f"--{_flag(f.name)}: expected {kind}, got {value!r}")
            if isinstance(default, int) and not isinstance(default, bool) and type(value) is not int:
                setattr(self, f.name, int(value))  # numpy integers -> int (JSON-serialisable)
            elif isinstance(default, float) and type(value) not in (int, float):
                setattr(self, f.name, float(value))

    # ------------------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that is out of range."""
        _choice("method", self.method, METHODS)
        _choice("network", self.network, NETWORKS)
        _choice("mix", self.mix, MIXES)
        _choice("unsup_mask", self.unsup_mask, ("pixel", "image"))
        _choice("unsup_threshold", self.unsup_threshold, ("fixed", "class-adaptive"))
        _choice("tau_step", self.tau_step, TAU_STEPS)
        _choice("teacher", self.teacher, TEACHERS)
        _choice("cache", self.cache, CACHES)
        _choice("ascl_precision", self.ascl_precision, PRECISIONS)
        _choice("ascl_targets", self.ascl_targets, ASCL_TARGETS)
        _choice("precision", self.precision, TRAIN_PRECISIONS)
        _choice("dims", self.dims, (2, 3))
        if len(self.patch) != self.dims:
            raise ConfigError(f"--patch: expected {self.dims} sizes for --dims {self.dims}, got {list(self.patch)}")
        if len(self.channels) < 2 or any(c < 1 for c in self.channels):
            raise ConfigError(f"--channels: expected at least 2 positive widths, got {list(self.channels)}")
        if self.head_full_res and self.network != "unet":
            raise ConfigError(f"--head-full-res: only for --network unet ({self.network} already gives the head a "
                              "full-resolution map)")
        if self.network == "basicunet" and len(self.channels) != 5:
            raise ConfigError(f"--channels: basicunet expects 5 widths, got {list(self.channels)}")
        factor = 16 if self.network == "vnet" else 2 ** (len(self.channels) - 1)
        if any(p < 1 or p % factor for p in self.patch):
            raise ConfigError(f"--patch: {self.network} with {len(self.channels)} levels needs sizes divisible by "
                              f"{factor}, got {list(self.patch)}")
        for name in ("iterations", "batch_labeled", "checkpoint_every", "embed_dim", "anco_anchors",
                     "anco_negatives", "anco_pool", "ascl_queue", "ascl_anchors_per_class", "pretrain_memory",
                     "pretrain_latent_dim", "pretrain_window", "pretrain_pool"):
            _positive_int(name, getattr(self, name))
        for name in ("labeled_cases", "batch_unlabeled", "workers", "val_every", "pretrain_iterations",
                     "probe_steps"):
            _nonneg_int(name, getattr(self, name))
        if self.method != "supervised" and self.batch_unlabeled < 1:
            raise ConfigError(f"--batch-unlabeled: method {self.method!r} needs at least 1, got {self.batch_unlabeled}")
        for name in ("lr", "anco_tau", "anco_tau_min", "anco_tau_max", "ascl_tau_min", "ascl_tau_max",
                     "pretrain_tau_student", "pretrain_tau_teacher", "pretrain_tau_max", "tau_period",
                     "pretrain_tau_period"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"--{_flag(name)}: expected a positive number, got {getattr(self, name)}")
        for name in ("momentum", "ema_momentum", "strong_threshold", "weak_threshold", "ascl_centroid_momentum",
                     "overlap", "class_conf_momentum"):
            v = float(getattr(self, name))
            if not 0.0 <= v < 1.0 and not (name.endswith("threshold") and v == 1.0):
                raise ConfigError(f"--{_flag(name)}: expected a value in [0, 1), got {v}")
        if not 0.0 <= self.unsup_rampup <= 1.0:
            raise ConfigError(f"--unsup-rampup: expected a fraction in [0, 1], got {self.unsup_rampup}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction: expected a value in [0, 1), got {self.val_fraction}")
        if not float(self.head_lr_scale) > 0:
            raise ConfigError(f"--head-lr-scale: expected a positive number, got {self.head_lr_scale}")
        for name in ("weight_decay", "unsup_weight", "anco_weight", "ascl_weight", "ascl_target_weight",
                     "pretrain_global_weight", "pretrain_local_weight", "poly_power"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"--{_flag(name)}: expected a value >= 0, got {getattr(self, name)}")
        for lo, hi in (("anco_tau_min", "anco_tau_max"), ("ascl_tau_min", "ascl_tau_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"--{_flag(lo)} ({getattr(self, lo)}) must not exceed --{_flag(hi)} ({getattr(self, hi)})")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        d["patch"] = list(self.patch)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; see 'actionpp train --help'")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """Read a JSON or YAML file (keys are field names; '-' is accepted for '_')."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml  # optional dependency

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:  # noqa: BLE001 - report any parse error in one line
            raise ConfigError(f"{path}: cannot parse ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{path}: expected setting names as keys, found {bad[0]!r}")
        return cls.from_dict({k.replace("-", "_"): v for k, v in data.items()}, source=str(path))

    def save(self, path: str | Path) -> None:
        """Write the settings as JSON, atomically (a failed write leaves the previous file as it was)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``.

    Raises:
        OSError: with ``filename`` set to ``path`` (the CLI prints it in one line); ``path`` is then unchanged.
    """
    import os
    import tempfile

    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _choice(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"--{_flag(name)}: expected one of {', '.join(map(str, options))}, got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"--{_flag(name)}: expected a positive integer, got {value!r}")


def _nonneg_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"--{_flag(name)}: expected an integer >= 0, got {value!r}")
