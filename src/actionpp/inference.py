"""Prediction onto the input grid: sliding-window inference in 3D, slice-wise in 2D (MONAI).

The network never sees a resampled image: volumes are predicted at their own voxel grid (the engine trains at the
native grid too), so the output label map has the input's size, spacing, origin and direction by construction.
Softmax scores of overlapping windows are blended with Gaussian weights, then ``argmax``; optionally the largest
connected component of each class is kept (scipy.ndimage labelling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from actionpp import checkpoint
from actionpp.config import Config
from actionpp.data.io import DataError, read_image, write_image
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
        device = torch.device(device)
        return cls(model.to(device).eval(), cfg, labels, device)

    @torch.no_grad()
    def predict_probs(self, image: np.ndarray) -> torch.Tensor:
        """Class probabilities ``C, Z, Y, X`` of one volume ``Z, Y, X`` (softmax of Gaussian-blended windows)."""
        x = torch.from_numpy(normalize(image)).to(self.device)
        net = lambda t: self.model(t)[0]  # noqa: E731 - sliding_window_inference wants a callable on tensors
        roi = tuple(self.cfg.patch)
        if self.cfg.dims == 2:  # each slice is a batch item; windows tile the slice in-plane
            probs = torch.cat([
                sliding_window_inference(x[z:z + 16, None], roi, 16, net, overlap=self.cfg.overlap, mode="gaussian")
                .softmax(1) for z in range(0, x.shape[0], 16)])  # Z, C, Y, X
            return probs.transpose(0, 1)
        return sliding_window_inference(x[None, None], roi, 1, net, overlap=self.cfg.overlap,
                                        mode="gaussian").softmax(1)[0]

    def to_label(self, probs: torch.Tensor, largest_component: bool = False) -> np.ndarray:
        """``argmax`` over classes as a label map ``Z, Y, X`` (uint8, or int16 for label values >= 256)."""
        out = probs.argmax(0).cpu().numpy().astype(np.uint8 if max(self.labels.values()) < 256 else np.int16)
        return keep_largest_component(out, [v for v in self.labels.values() if v]) if largest_component else out

    def predict_array(self, image: np.ndarray, largest_component: bool = False) -> np.ndarray:
        """Label map (z, y, x) of one volume (z, y, x), same shape."""
        return self.to_label(self.predict_probs(image), largest_component)

    def predict_file(self, src: Path, dst: Path, largest_component: bool = False,
                     uncertainty: Path | None = None) -> Path:
        """Write the label map of ``src`` to ``dst``; with ``uncertainty`` also the normalised-entropy map there."""
        image, geometry = read_image(src)
        probs = self.predict_probs(image)
        write_image(self.to_label(probs, largest_component), geometry, dst)
        if uncertainty is not None:
            from actionpp.rank import entropy_map

            write_image(entropy_map(probs), geometry, uncertainty)
        return dst


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
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def uncertainty_path(label_path: Path) -> Path:
    """``<name>_uncertainty<ext>`` beside ``<name><ext>`` (``.nii.gz`` kept as one ending)."""
    name = label_path.name
    ending = ".nii.gz" if name.endswith(".nii.gz") else label_path.suffix
    return label_path.with_name(f"{name[: len(name) - len(ending)]}_uncertainty{ending}")


def predict_paths(model: str | Path, src: str | Path, out: str | Path, device: str = "cpu",
                  largest_component: bool = False, overwrite: bool = False, uncertainty: bool = False) -> list[Path]:
    """Predict a file (``out`` is a file) or a folder (``out`` is a folder, one ``<case><ext>`` per input).

    With ``uncertainty`` each label map gets a float32 ``<name>_uncertainty<ext>`` beside it (entropy / log C).
    Existing outputs are refused unless ``overwrite``: nothing the user owns is replaced silently.
    """
    from actionpp.methods import resolve_device

    predictor = Predictor.load(model, resolve_device(device))
    src, out = Path(src), Path(out)
    images = find_images(src)
    if src.is_file():
        targets = [out]
    else:
        ending = "".join(images[0].suffixes[-2:]) if images[0].name.endswith(".nii.gz") else images[0].suffix
        targets = [out / f"{case_name(p)}{ending}" for p in images]
    extra = [uncertainty_path(t) for t in targets] if uncertainty else []
    for t in targets + extra:
        if t.exists() and not overwrite:
            raise DataError(f"{t}: output exists; expected a new path (pass --overwrite to replace it)")
    return [predictor.predict_file(s, t, largest_component, uncertainty_path(t) if uncertainty else None)
            for s, t in zip(images, targets)]
