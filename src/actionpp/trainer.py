"""The training loop: ``train_step(batch, it) -> dict`` and ``run()``; no loss code lives here.

Every random choice of iteration ``it`` is drawn from generators seeded with ``(cfg.seed, it)`` (batches, mixing,
augmentation, pixel sampling, dropout), and the state that carries over between iterations (weights, teacher,
optimiser, scaler, ASCL queue and centroids) is in the checkpoint, so ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionpp import checkpoint, distributed, memory
from actionpp.config import Config, ConfigError
from actionpp.data.layout import Case, Dataset, load_dataset
from actionpp.data.loaders import IterationBatches, batch_loader
from actionpp.data.volumes import VolumeStore, prune_cache, resolve_cache
from actionpp.events import EventLog
from actionpp.inference import Predictor, save_model
from actionpp.rank import class_volumes_ml
from actionpp.methods import Learner, resolve_device
from actionpp.metrics import case_metrics
from actionpp.runlock import LOCK_NAME, RunLock, RunLockedError, holder
from actionpp.schedules import poly_lr


def step_seed(seed: int, iteration: int, rank: int | None = None) -> int:
    """Seed of iteration ``iteration``'s random choices (and of rank ``rank``'s under torchrun)."""
    base = (seed * 1_000_003 + iteration * 7_919 + 17) % (2**63 - 1)
    return base if rank is None else (base * 31 + 104_729 * (rank + 1)) % (2**63 - 1)


def split_validation(cfg: Config, ds: Dataset) -> tuple[list[Case], list[Case]]:
    """``(train, val)`` labeled cases: the dataset's own val split, else the last ``val_fraction`` of labeled cases."""
    if ds.val:
        return ds.labeled, ds.val
    n_val = min(int(round(cfg.val_fraction * len(ds.labeled))), len(ds.labeled) - 1)
    return (ds.labeled[:len(ds.labeled) - n_val], ds.labeled[len(ds.labeled) - n_val:]) if n_val else (ds.labeled, [])


def _all_finite(tensors) -> bool:
    """True if every element of every tensor is finite (one device synchronisation in all)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


def non_finite_message(iteration: int, loss: float, terms: dict[str, Any], saved: int | None,
                       what: str = "") -> str:
    """One line naming the iteration and what went NaN or infinite (the loss terms, by default), and the
    checkpoint that is kept."""
    if not what:
        bad = [f"{k}={float(v)}" for k, v in terms.items() if not math.isfinite(float(v))]
        what = f"loss went non-finite ({', '.join(bad) if bad else f'total={loss}'})"
    kept = f"checkpoints/last.pt (iteration {saved}) is intact" if saved is not None else "no checkpoint yet"
    return f"iteration {iteration}: {what}; training stopped, {kept}; lower --lr or check the data"


class Trainer:
    """Owns the learner, optimiser, data stream, events and checkpoints of one run folder."""

    def __init__(self, cfg: Config, dataset: Dataset | None = None, show_bar: bool | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.dist, device = distributed.setup(cfg.device)  # one process: (rank 0 of 1, cfg.device)
        self.device = resolve_device(device)
        # every volume is read and checked once, then released: the stores below decide what is kept (--cache)
        self.ds = dataset if dataset is not None else load_dataset(cfg.data, cfg.labeled_cases, hold=False)
        self.train_cases, self.val_cases = split_validation(cfg, self.ds)
        unlabeled = self.ds.unlabeled or self.train_cases  # no unlabeled data: the labeled images double as such
        used = self.train_cases + (unlabeled if cfg.method != "supervised" else [])
        mode, self.cache_reason = resolve_cache(cfg.cache, used)
        self.cfg = cfg = copy.copy(cfg)  # config.json records the resolved choice
        cfg.cache = mode
        if cfg.memory_check:  # before the networks exist: stop early, proposing a patch/batch that fits
            memory.plan_training(cfg, 1, self.ds.num_classes, device=self.device)
        per_epoch = sum(c.shape[0] if cfg.dims == 2 else 1 for c in unlabeled) / max(cfg.batch_unlabeled, 1)
        torch.manual_seed(cfg.seed)
        self.learner = Learner(cfg, self.ds.num_classes, 1, iters_per_epoch=math.ceil(per_epoch)).to(self.device)
        student = self.learner.student  # a second group only when the head learns at head_lr_scale x lr, so
        groups = ([{"params": list(student.net.parameters()), "scale": 1.0},  # earlier checkpoints still resume
                   {"params": list(student.head.parameters()), "scale": float(cfg.head_lr_scale)}]
                  if cfg.head_lr_scale != 1.0 else [{"params": list(student.parameters()), "scale": 1.0}])
        self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
        precision = "fp16" if cfg.precision == "fp32" and cfg.amp and self.device.type == "cuda" else cfg.precision
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        folder = self.out / "cache"  # --cache disk: z-scored volumes as .npy, never in the dataset folder
        self.labeled_store = VolumeStore(self.train_cases, mode, folder)
        self.unlabeled_store = (VolumeStore([], mode, folder) if cfg.method == "supervised" else
                                self.labeled_store.without_labels() if unlabeled is self.train_cases else
                                VolumeStore(unlabeled, mode, folder, with_labels=False))
        self.cache_files = self.labeled_store.files + self.unlabeled_store.files
        if mode == "disk" and self.dist.main:  # files of an earlier source or of cases no longer used
            prune_cache(folder, self.cache_files)
        self.batches = IterationBatches(cfg, self.labeled_store, self.unlabeled_store,
                                        rank=self.dist.rank if self.dist.active else None)
        self.model = self.learner
        if self.dist.active:  # gradients averaged by DDP; buffers by distributed.average_buffers after each step
            self.model = distributed.wrap_ddp(self.learner, self.device)
        self.iteration = 0
        self.saved_iteration: int | None = None
        """Iteration of the last checkpoint written or loaded (None: none yet)."""
        self.show_bar = show_bar

    # ------------------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], it: int) -> dict[str, float]:
        """One optimisation step at iteration ``it``; returns the logged scalars."""
        cfg = self.cfg
        lr = poly_lr(cfg.lr, it, cfg.iterations, cfg.poly_power)
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("scale", 1.0)
        seed = step_seed(cfg.seed, it, self.dist.rank if self.dist.active else None)
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        floats = {k: v for k, v in batch.items() if v.is_floating_point()}
        if not _all_finite(floats.values()):  # one device sync; which tensor only when one is bad
            bad = [k for k, v in floats.items() if not bool(torch.isfinite(v).all())]
            raise FloatingPointError(non_finite_message(it + 1, float("nan"), {}, self.saved_iteration,
                                                        what=f"the batch holds NaN/inf in {', '.join(bad)}"))
        self.learner.train()
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            loss, logs = self.model(batch, it, g)
        if not torch.isfinite(loss):
            raise FloatingPointError(non_finite_message(it + 1, float(loss.detach()), logs, self.saved_iteration))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if not _all_finite(self.learner.student.parameters()):  # one device sync per step
            raise FloatingPointError(non_finite_message(it + 1, float(loss.detach()), {}, self.saved_iteration,
                                                        what="the weights went non-finite in the update"))
        distributed.average_buffers(self.learner.student)  # same BatchNorm statistics on every rank
        distributed.average_buffers(self.learner, only=("class_conf",))
        self.learner.update_teacher()
        out = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}, "lr": lr}
        return out

    # ------------------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "learner": self.learner.state_dict(), **self.learner.extra_state(),
                "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(), "config": self.cfg.to_dict(), "rng": checkpoint.rng_state(),
                "versions": checkpoint.versions()}

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/last.pt`` atomically (rank 0 only under torchrun: every rank holds the same state);
        weights that are no longer finite never replace a good one."""
        path = self.out / "checkpoints" / "last.pt"
        if not _all_finite(self.learner.student.parameters()):
            raise FloatingPointError(f"iteration {self.iteration}: the weights are non-finite; {path} not replaced; "
                                     "lower --lr or check the data")
        if self.dist.main:
            checkpoint.atomic_save(self.state(), path)
        self.saved_iteration = self.iteration
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = checkpoint.load(path, map_location=self.device)
        self.learner.load_state_dict(state["learner"])
        self.learner.load_extra_state(state)
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.iteration = self.saved_iteration = int(state["iteration"])

    def validate(self, cases: list[Case]) -> dict[str, float]:
        """Mean Dice per foreground class over ``cases`` (student, sliding window on the whole volume)."""
        predictor = Predictor(self.learner.inference_model(), self.cfg, self.ds.labels, self.device)
        self.learner.eval()
        scores = []
        for c in cases:  # one volume at a time (released cases are read from their files here)
            image, label = c.arrays()
            scores.append(case_metrics(predictor.predict_array(image), label, self.ds.labels, c.geometry.spacing))
        return {name: float(np.mean([s[name]["dice"] for s in scores])) for name in scores[0]}

    # ------------------------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Path:
        """Train to ``cfg.iterations``; returns the path of ``model.pt`` (not written by a ``probe_steps`` run)."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        last = self.out / "checkpoints" / "last.pt"
        if resume:
            if not last.is_file():
                raise ConfigError(f"--resume: no checkpoint at {last}")
            self.load_checkpoint(last)
        elif cfg.init_from:
            self._initialise_from_parent()
        if self.dist.main:
            cfg.save(self.out / "config.json")
        events = EventLog(self.out / "events.jsonl", show_bar=self.show_bar) if self.dist.main else NullEvents()
        try:
            return self._loop(events)
        except Exception as e:
            message = f"{type(e).__name__}: {e}".splitlines()[0]
            try:
                if self.dist.main:
                    events.emit("error", message=message)
                else:  # another rank's error reaches the same log, naming the rank
                    log = EventLog(self.out / "events.jsonl", show_bar=False)
                    log.emit("error", message=message, rank=self.dist.rank)
                    log.close()
            except OSError:
                pass  # the events file is what failed (e.g. disk full): the original error is what matters
            raise
        finally:
            events.close()

    def _initialise_from_parent(self) -> None:
        """``--init-from``: student (and a teacher copied from it) start from the parent model's weights."""
        from actionpp.warmstart import initialise_from

        self.added_classes = initialise_from(self.learner.student, self.cfg, self.ds.labels, 1, self.cfg.init_from)
        self.learner.reset_teacher()

    def _pretrain(self, events: EventLog) -> None:
        """Contrastive pre-training of the student, then a teacher that starts from it (fine-tuning's start)."""
        from actionpp.pretrain import pretrain

        # supervised learning sees no unlabeled image, in pre-training either (its unlabeled store is empty)
        with_unlabeled = IterationBatches(self.cfg, self.labeled_store, self.unlabeled_store,
                                          length=self.cfg.pretrain_iterations,
                                          rank=self.dist.rank if self.dist.active else None)
        pretrain(self.cfg, self.learner.student, self.ds.num_classes, with_unlabeled, self.device, events, self.out)
        self.learner.reset_teacher()

    def _loop(self, events: EventLog) -> Path:
        cfg, start = self.cfg, self.iteration
        if cfg.pretrain_iterations and start == 0 and not cfg.init_from:
            self._pretrain(events)
        events.emit("start", total=cfg.iterations, start_iteration=start, method=cfg.method, device=str(self.device),
                    labels=self.ds.labels, labeled=len(self.train_cases), unlabeled=len(self.ds.unlabeled),
                    val=len(self.val_cases), cache=cfg.cache, cache_reason=self.cache_reason,
                    pretrain_total=0 if cfg.init_from else cfg.pretrain_iterations)  # the stage before (done or not)
        log_every = max(1, cfg.iterations // 1000)
        stop = min(cfg.iterations, start + cfg.probe_steps) if cfg.probe_steps else cfg.iterations
        t0, done = time.perf_counter(), 0
        for it, batch in zip(range(start, stop), batch_loader(self.batches, start, stop, cfg.workers)):
            logs = self.train_step(batch, it)
            self.iteration, done = it + 1, done + 1
            spi = (time.perf_counter() - t0) / done
            if self.iteration % log_every == 0 or self.iteration in (cfg.iterations, stop):
                loss = logs.pop("loss")
                events.emit("iter", iteration=self.iteration, total=cfg.iterations, loss=loss,
                            losses={k: v for k, v in logs.items() if k != "lr"}, lr=logs["lr"],
                            tau=self.learner.temperatures(it), sec_per_iter=spi,
                            eta_s=spi * (cfg.iterations - self.iteration))
            if cfg.probe_steps:
                continue
            if self.iteration % cfg.checkpoint_every == 0 and self.iteration < cfg.iterations:
                events.emit("checkpoint", iteration=self.iteration, path=str(self.save_checkpoint()))
            if cfg.val_every and self.val_cases and self.iteration % cfg.val_every == 0 and self.dist.main:
                self._emit_val(events)
        model_path = self.out / "model.pt"
        if cfg.probe_steps:  # a timing probe: nothing saved, nothing scored, nothing cached left behind
            events.emit("done", iteration=self.iteration, model="", val_dice=None, probe=True,
                        cache_freed_bytes=self._drop_cache())
            return model_path
        events.emit("checkpoint", iteration=self.iteration, path=str(self.save_checkpoint()))
        if not self.dist.main:  # rank 0 scores and writes the model
            return model_path
        meta = self._final_scores(events)
        save_model(model_path, self.learner.inference_model(), cfg, self.ds.labels, 1, self.ds.median_spacing,
                   {"iterations": self.iteration, **meta, "class_volumes_ml": class_volumes_ml(
                       self.ds.labels, [(c.label, c.geometry.spacing) for c in self.ds.labeled]),
                    **({"parent": str(Path(cfg.init_from).resolve())} if cfg.init_from else {})})
        events.emit("done", iteration=self.iteration, model=str(model_path), val_dice=meta.get("val_dice"),
                    cache_freed_bytes=self._drop_cache())
        return model_path

    def _drop_cache(self) -> int:
        """At the end of a run: delete the disk cache (a float32 copy of the training volumes); bytes freed."""
        return prune_cache(self.out / "cache") if self.cfg.cache == "disk" and self.dist.main else 0

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
        test = [c for c in self.ds.test if c.labeled]
        if test:
            dice = self.validate(test)
            meta["test_dice"] = float(np.mean(list(dice.values())))
            meta["test_dice_per_class"] = dice
        return meta


def _user_files(out: Path) -> list[Path]:
    """Entries of a run folder other than a launcher's ``train.log`` and the lock file."""
    return [p for p in out.iterdir() if p.name not in ("train.log", LOCK_NAME)] if out.is_dir() else []


class NullEvents:
    """The event log of ranks other than 0 under torchrun: they write nothing."""

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, **fields}

    def close(self) -> None:
        pass


def train(cfg: Config, resume: bool = False, show_bar: bool | None = None) -> Path:
    """Join the process group when launched by ``torchrun``, train, and leave the group (see :func:`_train`)."""
    distributed.setup(cfg.device)
    try:
        model = _train(cfg, resume, show_bar)
        # Rank 0 scores and writes the model after the loop; the other ranks wait for it here, so that every rank
        # leaves the process group at the same time (a rank tearing gloo down while its peer still runs can abort).
        distributed.barrier()
        return model
    finally:
        distributed.teardown()


def _train(cfg: Config, resume: bool = False, show_bar: bool | None = None) -> Path:
    """Build a :class:`Trainer` and run it while holding the run folder's lock.

    A new run needs a new or empty folder; ``resume`` continues the run in ``cfg.out``, wherever that folder now is
    (a moved or copied run writes into ``cfg.out``, never into the folder recorded in its ``config.json``). A
    second writer on the same folder is refused with :class:`~actionpp.runlock.RunLockedError`. Under ``torchrun``
    rank 0 holds the lock; every rank makes the read-only checks, and rank 0 tells the others whether it got the
    lock before any of them trains (:func:`distributed.broadcast_text`).
    """
    out = Path(cfg.out)
    if not cfg.out:
        raise ConfigError("--out: expected a run folder, got nothing")
    saved = out / "config.json"
    if resume and not saved.is_file():
        raise ConfigError(f"--resume: {saved} not found; expected a run folder made by 'actionpp train'")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: expected a folder, found a file")
    not_empty = ConfigError(f"--out {out}: folder exists and is not empty; expected a new run folder "
                            "(pass --resume to continue it)")
    if not resume and _user_files(out) and holder(out) is None:
        raise not_empty  # refused before the lock file is added to a folder that is not ours
    created = not out.exists()
    lock, refused = None, ""
    if distributed.is_main():
        try:
            lock = RunLock(out).acquire()
            if not resume and _user_files(out):  # checked again under the lock: a racing writer may have started
                refused = str(not_empty)
        except RunLockedError as exc:
            refused = str(exc)
    refused = distributed.broadcast_text(refused)  # before any rank writes
    try:
        if refused:
            raise (ConfigError if refused == str(not_empty) else RunLockedError)(refused)
        if resume:
            keep = Config.load(saved).to_dict()
            # where to run may change; what to learn may not; the run is where --out points now
            keep.update(device=cfg.device, workers=cfg.workers, memory_check=cfg.memory_check, cache=cfg.cache,
                        out=str(out))
            cfg = Config.from_dict(keep)
        return Trainer(cfg, show_bar=show_bar).run(resume=resume)
    except BaseException:
        if lock is not None:
            lock.release()
        if distributed.is_main() and created and out.is_dir() and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink()  # the folder is ours and holds nothing: leave no trace
            out.rmdir()
        raise
    finally:
        if lock is not None:
            lock.release()
