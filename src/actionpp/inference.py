"""Prediction onto the input grid: sliding-window inference in 3D, slice-wise in 2D (MONAI).

The network never sees a resampled image: volumes are predicted at their own voxel grid (the engine trains at the
native grid too), so the output label map has the input's size, spacing, origin and direction by construction.
Softmax scores of overlapping windows are blended with Gaussian weights, then ``argmax``; optionally the largest
connected component of each class is kept (scipy.ndimage labelling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from actionpp import checkpoint, memory
from actionpp.config import Config, write_text_atomic
from actionpp.data.io import DataError, check_writable_folder, image_size, read_image, write_image
from actionpp.data.layout import case_name, find_images
from actionpp.data.loaders import normalize
from actionpp.nets import Model

MODEL_FORMAT = "actionpp-model/1"


@dataclass
class Predictor:
    """A trained network with what prediction needs (labels, dims, patch, normalisation)."""

    model: Model
    cfg: Config
    labels: dict[str, int]
    device: torch.device
    class_volumes: dict[str, dict] = field(default_factory=dict)
    """Per foreground class, its volume in mL over the labeled training cases (``median``, ``min``, ``max``,
    ``cases``; see rank.py); empty for models written before it was recorded."""

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        """From ``RUN/model.pt``, a run folder, or any model file written by :func:`save_model`."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.pt"
        bundle = checkpoint.load(path)
        if bundle.get("format") != MODEL_FORMAT:
            raise checkpoint.CheckpointError(f"{path}: expected an ActionPP model ({MODEL_FORMAT}), "
                                             f"found format {bundle.get('format')!r}")
        cfg = Config.from_dict(bundle["config"], source=str(path))
        labels = {str(k): int(v) for k, v in bundle["labels"].items()}
        model = Model(cfg, int(bundle["in_channels"]), len(labels))
        model.load_state_dict(bundle["state_dict"])
        volumes = bundle.get("class_volumes_ml", {})
        if not (isinstance(volumes, dict) and all(isinstance(v, dict) and isinstance(v.get("median"), (int, float))
                                                  for v in volumes.values())):
            raise checkpoint.CheckpointError(f"{path}: expected class_volumes_ml as {{name: {{median: mL, ...}}}}, "
                                             f"found {volumes!r:.80}")
        device = torch.device(device)
        return cls(model.to(device).eval(), cfg, labels, device, volumes)

    @torch.no_grad()
    def predict_scores(self, image: np.ndarray, scores_device: torch.device | str | None = None,
                       probabilities: bool = False) -> torch.Tensor:
        """Blended window outputs ``C, Z, Y, X`` of one volume ``Z, Y, X``: logits, or class probabilities (softmax
        per window, then Gaussian blending) with ``probabilities``. ``scores_device`` keeps the 3D blended scores
        elsewhere than the compute device (e.g. the CPU when the GPU cannot hold them; see :meth:`plan`)."""
        x = torch.from_numpy(normalize(image)).to(self.device)
        net = lambda t: self.model(t)[0]  # noqa: E731 - sliding_window_inference wants a callable on tensors
        if probabilities:
            net = lambda t: self.model(t)[0].softmax(1)  # noqa: E731
        roi = tuple(self.cfg.patch)
        if self.cfg.dims == 2:  # each slice is a batch item; windows tile the slice in-plane; 16 slices at a time
            return torch.cat([sliding_window_inference(x[z:z + 16, None], roi, 16, net, overlap=self.cfg.overlap,
                                                       mode="gaussian") for z in range(0, x.shape[0], 16)]
                             ).transpose(0, 1)
        scores = sliding_window_inference(x[None, None], roi, 1, net, overlap=self.cfg.overlap, mode="gaussian",
                                          sw_device=self.device, device=scores_device or self.device)
        return scores[0]

    @torch.no_grad()
    def predict_probs(self, image: np.ndarray, scores_device: torch.device | str | None = None) -> torch.Tensor:
        """Class probabilities ``C, Z, Y, X`` (for uncertainty maps and ranking; see rank.py)."""
        return self.predict_scores(image, scores_device, probabilities=True)

    def to_label(self, scores: torch.Tensor, largest_component: bool = False) -> np.ndarray:
        """``argmax`` over classes of logits or probabilities ``C, Z, Y, X`` as a label map ``Z, Y, X`` (uint8, or
        int16 for label values >= 256)."""
        out = scores.argmax(0).cpu().numpy().astype(np.uint8 if max(self.labels.values()) < 256 else np.int16)
        return keep_largest_component(out, [v for v in self.labels.values() if v]) if largest_component else out

    @torch.no_grad()
    def predict_array(self, image: np.ndarray, largest_component: bool = False,
                      scores_device: torch.device | str | None = None) -> np.ndarray:
        """Label map (z, y, x) of one volume (z, y, x), same shape.

        The blended window outputs are logits; their argmax is the label (softmax would not change it, and skipping
        it saves a copy of the scores). In 2D the argmax is taken per block of 16 slices.
        """
        if self.cfg.dims == 2:
            x = torch.from_numpy(normalize(image)).to(self.device)
            net = lambda t: self.model(t)[0]  # noqa: E731
            label = torch.cat([sliding_window_inference(x[z:z + 16, None], tuple(self.cfg.patch), 16, net,
                                                        overlap=self.cfg.overlap, mode="gaussian").argmax(1)
                               for z in range(0, x.shape[0], 16)])  # Z, Y, X
            out = label.cpu().numpy().astype(np.uint8 if max(self.labels.values()) < 256 else np.int16)
            return keep_largest_component(out, [v for v in self.labels.values() if v]) if largest_component else out
        return self.to_label(self.predict_scores(image, scores_device), largest_component)

    def predict_file(self, src: Path, dst: Path, largest_component: bool = False,
                     scores_device: torch.device | str | None = None, uncertainty: Path | None = None) -> Path:
        """Write the label map of ``src`` to ``dst``; with ``uncertainty`` also the normalised-entropy map there."""
        image, geometry = read_image(src)
        if uncertainty is None:
            write_image(self.predict_array(image, largest_component, scores_device), geometry, dst)
            return dst
        from actionpp.rank import entropy_map

        probs = self.predict_probs(image, scores_device)
        write_image(self.to_label(probs, largest_component), geometry, dst)
        write_image(entropy_map(probs), geometry, uncertainty)
        return dst

    def plan(self, src: Path, available: int | None = None, host_available: int | None = None) -> torch.device:
        """Where the blended scores of ``src`` go (the compute device, or the CPU when only that fits), from the
        image's header; raises :class:`~actionpp.memory.MemoryPlanError` naming the file when neither fits."""
        size = image_size(src)
        shape = (size[2], size[1], size[0])
        num_classes = len(self.labels)
        need = memory.prediction_bytes(shape, num_classes, self.cfg)
        available = memory.available_bytes(self.device) if available is None else available
        if available is None or need <= available:
            return self.device
        if self.device.type != "cpu" and self.cfg.dims == 3:
            host = memory.available_bytes("cpu") if host_available is None else host_available
            on_device = memory.prediction_bytes(shape, num_classes, self.cfg, scores_on_device=False)
            if on_device <= available and (host is None or memory.prediction_host_bytes(shape, num_classes,
                                                                                        self.cfg) <= host):
                return torch.device("cpu")
        raise memory.MemoryPlanError(
            f"{src}: expected predicting its {' x '.join(map(str, shape))} voxels ({num_classes} classes) to fit the "
            f"{memory.format_size(available)} free on {self.device}, found an estimated peak of "
            f"{memory.format_size(need)}; free memory, use a machine with more, or crop the volume")


def keep_largest_component(label: np.ndarray, values: list[int]) -> np.ndarray:
    """Per class value, keep only its largest 26/8-connected island (scipy.ndimage); other islands become 0."""
    out = label.copy()
    for v in values:
        islands, n = ndimage.label(label == v, structure=np.ones((3,) * label.ndim))
        if n > 1:
            sizes = np.bincount(islands.ravel())[1:]
            out[(islands > 0) & (islands != 1 + int(np.argmax(sizes)))] = 0
    return out


def save_model(path: Path, model: Model, cfg: Config, labels: dict[str, int], in_channels: int,
               spacing: tuple[float, ...], meta: dict[str, Any]) -> None:
    """Write ``model.pt`` (weights + everything prediction needs) and ``model.json`` (the same, without weights)."""
    info = {"format": MODEL_FORMAT, "config": cfg.to_dict(), "labels": dict(labels), "in_channels": in_channels,
            "normalization": "zscore", "dims": cfg.dims, "patch": list(cfg.patch), "method": cfg.method,
            "spacing": [float(s) for s in spacing], "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": checkpoint.versions(), **meta}
    checkpoint.atomic_save({**info, "state_dict": model.state_dict()}, path)
    write_text_atomic(path.with_suffix(".json"), json.dumps(info, indent=2) + "\n")


def uncertainty_path(label_path: Path) -> Path:
    """``<name>_uncertainty<ext>`` beside ``<name><ext>`` (``.nii.gz`` kept as one ending)."""
    name = label_path.name
    ending = ".nii.gz" if name.endswith(".nii.gz") else label_path.suffix
    return label_path.with_name(f"{name[: len(name) - len(ending)]}_uncertainty{ending}")


def predict_paths(model: str | Path, src: str | Path, out: str | Path, device: str = "cpu",
                  largest_component: bool = False, overwrite: bool = False, memory_check: bool = True,
                  uncertainty: bool = False) -> list[Path]:
    """Predict a file (``out`` is a file) or a folder (``out`` is a folder, one ``<case><ext>`` per input).

    With ``uncertainty`` each label map gets a float32 ``<name>_uncertainty<ext>`` beside it (entropy / log C).
    Existing outputs are refused unless ``overwrite``: nothing the user owns is replaced silently.
    """
    from actionpp.methods import resolve_device

    src, out = Path(src), Path(out)
    images = find_images(src)
    if src.is_file():
        if out.is_dir():
            raise DataError(f"--out {out}: expected an output file for the input file {src.name}, found a folder")
        targets = [out]
    else:
        ending = "".join(images[0].suffixes[-2:]) if images[0].name.endswith(".nii.gz") else images[0].suffix
        targets = [out / f"{case_name(p)}{ending}" for p in images]
    extra = [uncertainty_path(t) for t in targets] if uncertainty else []
    for t in targets + extra:
        if t.exists() and not overwrite:
            raise DataError(f"{t}: output exists; expected a new path (pass --overwrite to replace it)")
    check_writable_folder(targets[0].parent)  # before the model is loaded or anything is computed
    predictor = Predictor.load(model, resolve_device(device))
    # every volume is known to fit before the first is computed
    where = [predictor.plan(s) if memory_check else None for s in images]
    return [predictor.predict_file(s, t, largest_component, w, uncertainty_path(t) if uncertainty else None)
            for s, t, w in zip(images, targets, where)]
