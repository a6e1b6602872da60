"""Contrastive pre-training (the ACTION/ACTION++ stage before fine-tuning): relational distillation.

For ``cfg.pretrain_iterations`` steps, on batches of labeled + unlabeled images (labeled only for ``--method
supervised``):

* two independent strong views of the batch (the official code augments one shared tensor in place, so its views
  coincide in 3D and share the colour jitter in 2D, method.md §8.4);
* the student sees view 1, an EMA teacher (student network + heads, momentum ``cfg.ema_momentum``) sees view 2;
* global term: ``KL(p_t || p_s)`` of the similarity distributions of the bottleneck vectors over a memory of teacher
  vectors, student side through a two-layer predictor (:class:`~actionpp.losses.distill.RelationalDistill`);
* local term: the same per window of the logit map, against the memory's vectors of the same window
  (:class:`~actionpp.losses.distill.LocalRelationalDistill`; method.md §8.7 fixed);
* ``L = L_sup + k1 L_global + k2 L_local`` with DiceCE on the labeled half; the student and teacher temperatures
  follow the cosine schedule from ``pretrain_tau_student`` / ``pretrain_tau_teacher`` up to ``pretrain_tau_max`` for
  ACTION++ and stay at those values for the other methods (:func:`pretrain_temperatures`).

The pre-trained student initialises both student and teacher of fine-tuning. Its weights are saved to
``RUN/checkpoints/pretrain.pt``; a resumed run with that file skips the stage (an interrupted stage restarts).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from actionpp import checkpoint, distributed
from actionpp.augment import apply_strong, sample_strong_params
from actionpp.config import Config
from actionpp.data.loaders import IterationBatches, batch_loader
from actionpp.events import EventLog
from actionpp.losses.distill import GlobalHead, LocalHead, LocalRelationalDistill, Predictor, RelationalDistill
from actionpp.losses.supervised import DiceCE
from actionpp.nets import Model
from actionpp.schedules import cosine_tau, poly_lr
from actionpp.teacher import EMATeacher


class DistillNet(nn.Module):
    """Segmentation model plus the global (bottleneck) and local (logit windows) heads; the unit the EMA averages."""

    def __init__(self, cfg: Config, model: Model, num_classes: int):
        super().__init__()
        self.model = model
        window = min(cfg.pretrain_window, *cfg.patch)
        self.global_head = GlobalHead(model.net.feature_channels[0], cfg.pretrain_latent_dim)
        self.local_head = LocalHead(num_classes, window, max(1, window // 2), cfg.pretrain_pool, cfg.dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits B,C,*S, global vectors B,L, window vectors B,W,V)``."""
        logits, feats = self.model(x)
        return logits, self.global_head(feats[0]), self.local_head(logits)


def pretrain_temperatures(cfg: Config, it: int, total: int) -> tuple[float, float]:
    """``(tau_student, tau_teacher)`` at step ``it``: ACTION++ follows the cosine schedule from the lower bounds up to
    ``pretrain_tau_max`` (period ``pretrain_tau_period``); every other method keeps them constant (ACTION's ISD)."""
    if cfg.method != "actionpp":
        return cfg.pretrain_tau_student, cfg.pretrain_tau_teacher
    return (cosine_tau(it, total, cfg.pretrain_tau_student, cfg.pretrain_tau_max, cfg.pretrain_tau_period),
            cosine_tau(it, total, cfg.pretrain_tau_teacher, cfg.pretrain_tau_max, cfg.pretrain_tau_period))


def pretrain(cfg: Config, model: Model, num_classes: int, batches: IterationBatches, device: torch.device,
             events: EventLog, out: Path) -> None:
    """Run the stage in place on ``model`` (the student used afterwards); see the module docstring."""
    saved = out / "checkpoints" / "pretrain.pt"
    if saved.is_file():
        model.load_state_dict(checkpoint.load(saved, map_location=device)["model"])
        return
    net = DistillNet(cfg, model, num_classes).to(device)
    windows = net.local_head.num_windows(tuple(cfg.patch))
    g_pred = Predictor(cfg.pretrain_latent_dim).to(device)
    l_pred = Predictor(net.local_head.out_dim).to(device)
    g_loss = RelationalDistill(cfg.pretrain_latent_dim, cfg.pretrain_memory).to(device)
    l_loss = LocalRelationalDistill(windows, net.local_head.out_dim, cfg.pretrain_memory).to(device)
    teacher = EMATeacher(net, cfg.ema_momentum)
    params = [*net.parameters(), *g_pred.parameters(), *l_pred.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    dice_ce, total = DiceCE(), cfg.pretrain_iterations
    stop = min(total, cfg.probe_steps) if cfg.probe_steps else total  # a timing probe ends the stage early
    events.emit("start", phase="pretrain", total=total, start_iteration=0, method=cfg.method, device=str(device),
                finetune_total=cfg.iterations)
    t0 = time.perf_counter()
    for it, batch in zip(range(stop), batch_loader(batches, 0, stop, cfg.workers)):
        for group in opt.param_groups:
            group["lr"] = poly_lr(cfg.lr, it, total, cfg.poly_power)
        g = torch.Generator().manual_seed(cfg.seed * 7_777 + it)
        torch.manual_seed(cfg.seed * 7_777 + it)
        x_l, y_l = batch["l_image"].to(device), batch["l_label"].to(device)
        x = torch.cat([x_l, batch["u_image"].to(device)]) if "u_image" in batch else x_l
        view_s = apply_strong(x, sample_strong_params(x.shape[0], g))
        view_t = apply_strong(x, sample_strong_params(x.shape[0], g))
        tau_s, tau_t = pretrain_temperatures(cfg, it, total)
        net.train()
        logits, z_s, w_s = net(view_s)
        _, z_t, w_t = teacher(view_t)
        sup = dice_ce(logits[:x_l.shape[0]], y_l)
        glob = g_loss(g_pred(z_s), z_t, tau_s, tau_t)
        loc = l_loss(l_pred(w_s), w_t, tau_s, tau_t)
        loss = sup + cfg.pretrain_global_weight * glob + cfg.pretrain_local_weight * loc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(params)  # torchrun: the same step on every rank
        opt.step()
        distributed.average_buffers(net)
        teacher.update(net)
        spi = (time.perf_counter() - t0) / (it + 1)
        events.emit("iter", phase="pretrain", iteration=it + 1, total=total, loss=float(loss.detach()),
                    losses={"sup": float(sup.detach()), "global": float(glob.detach()), "local": float(loc.detach())},
                    lr=opt.param_groups[0]["lr"], tau={"student": tau_s, "teacher": tau_t}, sec_per_iter=spi,
                    eta_s=spi * (total - it - 1))
    if distributed.is_main() and not cfg.probe_steps:
        checkpoint.atomic_save({"model": model.state_dict(), "config": cfg.to_dict()}, saved)
