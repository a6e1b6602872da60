"""The training loop: ``train_step(batch, it) -> dict`` and ``run()``; no loss code lives here.

Every random choice of iteration ``it`` is drawn from generators seeded with ``(cfg.seed, it)`` (batches, mixing,
augmentation, pixel sampling, dropout), and the state that carries over between iterations (weights, teacher,
optimiser, scaler, ASCL queue and centroids) is in the checkpoint, so ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionpp import checkpoint
from actionpp.config import Config, ConfigError
from actionpp.data.layout import Case, Dataset, load_dataset
from actionpp.data.loaders import IterationBatches, batch_loader
from actionpp.events import EventLog
from actionpp.inference import Predictor, save_model
from actionpp.methods import Learner, resolve_device
from actionpp.metrics import case_metrics
from actionpp.schedules import poly_lr


def step_seed(seed: int, iteration: int) -> int:
    return (seed * 1_000_003 + iteration * 7_919 + 17) % (2**63 - 1)


def split_validation(cfg: Config, ds: Dataset) -> tuple[list[Case], list[Case]]:
    """``(train, val)`` labeled cases: the dataset's own val split, else the last ``val_fraction`` of labeled cases."""
    if ds.val:
        return ds.labeled, ds.val
    n_val = min(int(round(cfg.val_fraction * len(ds.labeled))), len(ds.labeled) - 1)
    return (ds.labeled[:len(ds.labeled) - n_val], ds.labeled[len(ds.labeled) - n_val:]) if n_val else (ds.labeled, [])


class Trainer:
    """Owns the learner, optimiser, data stream, events and checkpoints of one run folder."""

    def __init__(self, cfg: Config, dataset: Dataset | None = None, show_bar: bool | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        self.ds = dataset if dataset is not None else load_dataset(cfg.data, cfg.labeled_cases)
        self.train_cases, self.val_cases = split_validation(cfg, self.ds)
        unlabeled = self.ds.unlabeled or self.train_cases  # no unlabeled data: the labeled images double as such
        per_epoch = sum(c.image.shape[0] if cfg.dims == 2 else 1 for c in unlabeled) / max(cfg.batch_unlabeled, 1)
        torch.manual_seed(cfg.seed)
        self.learner = Learner(cfg, self.ds.num_classes, 1, iters_per_epoch=math.ceil(per_epoch)).to(self.device)
        student = self.learner.student  # a second group only when the head learns at head_lr_scale x lr, so
        groups = ([{"params": list(student.net.parameters()), "scale": 1.0},  # earlier checkpoints still resume
                   {"params": list(student.head.parameters()), "scale": float(cfg.head_lr_scale)}]
                  if cfg.head_lr_scale != 1.0 else [{"params": list(student.parameters()), "scale": 1.0}])
        self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.batches = IterationBatches(cfg, self.train_cases, unlabeled if cfg.method != "supervised" else [])
        self.iteration = 0
        self.show_bar = show_bar

    # ------------------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], it: int) -> dict[str, float]:
        """One optimisation step at iteration ``it``; returns the logged scalars."""
        cfg = self.cfg
        lr = poly_lr(cfg.lr, it, cfg.iterations, cfg.poly_power)
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("scale", 1.0)
        seed = step_seed(cfg.seed, it)
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.learner.train()
        with torch.autocast(self.device.type, enabled=self.amp):
            loss, logs = self.learner(batch, it, g)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"iteration {it}: loss is {float(loss)}; lower --lr or check the data")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.learner.update_teacher()
        out = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}, "lr": lr}
        return out

    # ------------------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "learner": self.learner.state_dict(), **self.learner.extra_state(),
                "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(), "config": self.cfg.to_dict(), "rng": checkpoint.rng_state(),
                "versions": checkpoint.versions()}

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoints" / "last.pt"
        checkpoint.atomic_save(self.state(), path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = checkpoint.load(path, map_location=self.device)
        self.learner.load_state_dict(state["learner"])
        self.learner.load_extra_state(state)
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])

    def validate(self, cases: list[Case]) -> dict[str, float]:
        """Mean Dice per foreground class over ``cases`` (student, sliding window on the whole volume)."""
        predictor = Predictor(self.learner.inference_model(), self.cfg, self.ds.labels, self.device)
        self.learner.eval()
        scores = [case_metrics(predictor.predict_array(c.image), c.label, self.ds.labels, c.geometry.spacing)
                  for c in cases]
        return {name: float(np.mean([s[name]["dice"] for s in scores])) for name in scores[0]}

    # ------------------------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Path:
        """Train to ``cfg.iterations``; returns the path of ``model.pt``."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        last = self.out / "checkpoints" / "last.pt"
        if resume:
            if not last.is_file():
                raise ConfigError(f"--resume: no checkpoint at {last}")
            self.load_checkpoint(last)
        cfg.save(self.out / "config.json")
        events = EventLog(self.out / "events.jsonl", show_bar=self.show_bar)
        try:
            return self._loop(events)
        except Exception as e:
            events.emit("error", message=f"{type(e).__name__}: {e}".splitlines()[0])
            raise
        finally:
            events.close()

    def _pretrain(self, events: EventLog) -> None:
        """Contrastive pre-training of the student, then a teacher that starts from it (fine-tuning's start)."""
        from actionpp.pretrain import pretrain

        # supervised learning sees no unlabeled image, in pre-training either
        unlabeled = [] if self.cfg.method == "supervised" else (self.ds.unlabeled or self.train_cases)
        with_unlabeled = IterationBatches(self.cfg, self.train_cases, unlabeled, length=self.cfg.pretrain_iterations)
        pretrain(self.cfg, self.learner.student, self.ds.num_classes, with_unlabeled, self.device, events, self.out)
        self.learner.reset_teacher()

    def _loop(self, events: EventLog) -> Path:
        cfg, start = self.cfg, self.iteration
        if cfg.pretrain_iterations and start == 0:
            self._pretrain(events)
        events.emit("start", total=cfg.iterations, start_iteration=start, method=cfg.method, device=str(self.device),
                    labels=self.ds.labels, labeled=len(self.train_cases), unlabeled=len(self.ds.unlabeled),
                    val=len(self.val_cases))
        log_every = max(1, cfg.iterations // 1000)
        t0, done = time.perf_counter(), 0
        for it, batch in zip(range(start, cfg.iterations), batch_loader(self.batches, start, cfg.iterations,
                                                                          cfg.workers)):
            logs = self.train_step(batch, it)
            self.iteration, done = it + 1, done + 1
            spi = (time.perf_counter() - t0) / done
            if self.iteration % log_every == 0 or self.iteration == cfg.iterations:
                loss = logs.pop("loss")
                events.emit("iter", iteration=self.iteration, total=cfg.iterations, loss=loss,
                            losses={k: v for k, v in logs.items() if k != "lr"}, lr=logs["lr"],
                            tau=self.learner.temperatures(it), sec_per_iter=spi,
                            eta_s=spi * (cfg.iterations - self.iteration))
            if self.iteration % cfg.checkpoint_every == 0 and self.iteration < cfg.iterations:
                events.emit("checkpoint", iteration=self.iteration, path=str(self.save_checkpoint()))
            if cfg.val_every and self.val_cases and self.iteration % cfg.val_every == 0:
                self._emit_val(events)
        events.emit("checkpoint", iteration=self.iteration, path=str(self.save_checkpoint()))
        meta = self._final_scores(events)
        model_path = self.out / "model.pt"
        save_model(model_path, self.learner.inference_model(), cfg, self.ds.labels, 1, self.ds.median_spacing,
                   {"iterations": self.iteration, **meta})
        events.emit("done", iteration=self.iteration, model=str(model_path), val_dice=meta.get("val_dice"))
        return model_path

    def _emit_val(self, events: EventLog) -> float:
        dice = self.validate(self.val_cases)
        mean = float(np.mean(list(dice.values())))
        events.emit("val", iteration=self.iteration, dice=dice, mean_dice=mean)
        return mean

    def _final_scores(self, events: EventLog) -> dict[str, Any]:
        """Validation Dice at the end, and test Dice when the dataset's test split has labels."""
        meta: dict[str, Any] = {"val_dice": None, "test_dice": None}
        if self.val_cases:
            meta["val_dice"] = self._emit_val(events)
        test = [c for c in self.ds.test if c.label is not None]
        if test:
            dice = self.validate(test)
            meta["test_dice"] = float(np.mean(list(dice.values())))
            meta["test_dice_per_class"] = dice
        return meta


def train(cfg: Config, resume: bool = False, show_bar: bool | None = None) -> Path:
    """Build a :class:`Trainer` and run it; refuses a non-empty run folder unless resuming."""
    out = Path(cfg.out)
    if not cfg.out:
        raise ConfigError("--out: expected a run folder, got nothing")
    if resume:
        saved = out / "config.json"
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} not found; expected a run folder made by 'actionpp train'")
        keep = Config.load(saved).to_dict()
        keep.update(device=cfg.device, workers=cfg.workers)  # where to run may change; what to learn may not
        cfg = Config.from_dict(keep)
    elif out.exists() and any(p.name != "train.log" for p in out.iterdir()):  # a launcher may open its log first
        raise ConfigError(f"--out {out}: folder exists and is not empty; expected a new run folder "
                          "(pass --resume to continue it)")
    return Trainer(cfg, show_bar=show_bar).run(resume=resume)
