"""Training methods: which losses a step computes, with which weights and temperatures.

=============  ===========  ====================  ==========================  ===========
method         teacher      unlabeled branch      AnCo                        ASCL
=============  ===========  ====================  ==========================  ===========
supervised     no           no                    no                          no
mean-teacher   EMA          pseudo-label CE       no                          no
action         EMA          pseudo-label CE       constant tau (0.5)          no
actionpp       EMA          pseudo-label CE       cosine tau (0.1..1.0)       cosine tau
=============  ===========  ====================  ==========================  ===========

One step of ``actionpp`` (shapes ``B = Bl + Bu``, ``S`` the patch):

1. the teacher (no grad; train mode with ``--teacher official``, the default) runs on ``x_u``: pseudo-labels
   ``y_u`` and confidences ``c_u``; with ASCL also on ``x_l`` for ASCL's teacher features, in bfloat16 where
   ``--ascl-precision`` resolves to it;
2. ``x_u, y_u, c_u`` are mixed inside the unlabeled batch (CutMix / ClassMix), strongly augmented (intensity on the
   image only, flips on all three);
3. the student runs on ``x_l`` and ``x_u`` (two passes with ``--split-bn``, the default; one joint pass
   otherwise): ``L = L_sup + w_u L_pseudo + w_a L_AnCo(tau_a(t)) + w_s L_ASCL(tau_s(t))``;
4. the contrastive terms sample pixel indices first and embed only those pixels (``Model.embed``), the student rows
   of AnCo and ASCL in one call.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from actionpp.augment import apply_flips, apply_strong, sample_flips, sample_strong_params
from actionpp.centers import load_centers, uniform_centers
from actionpp.config import Config
from actionpp.hardware import matmul_dtype
from actionpp.losses.anco import anco_loss
from actionpp.losses.ascl import ASCLoss
from actionpp.losses.pseudo import pseudo_label_loss
from actionpp.losses.supervised import DiceCE
from actionpp.mixing import apply_mix, classmix_mask, cutmix_mask
from actionpp.nets import Model
from actionpp.sampling import sample_per_class
from actionpp.schedules import cosine_tau, epoch_step, sigmoid_rampup
from actionpp.teacher import EMATeacher


@dataclass(frozen=True)
class MethodSpec:
    teacher: bool
    anco: bool
    anco_cosine: bool
    ascl: bool


SPECS = {
    "supervised": MethodSpec(teacher=False, anco=False, anco_cosine=False, ascl=False),
    "mean-teacher": MethodSpec(teacher=True, anco=False, anco_cosine=False, ascl=False),
    "action": MethodSpec(teacher=True, anco=True, anco_cosine=False, ascl=False),
    "actionpp": MethodSpec(teacher=True, anco=True, anco_cosine=True, ascl=True),
}


class Learner(nn.Module):
    """Student, teacher and stateful losses of one method; ``forward(batch, it, g)`` returns ``(loss, logs)``.

    Args:
        cfg: the run configuration.
        num_classes: C, background included.
        in_channels: image channels.
        iters_per_epoch: length of an epoch, used when ``cfg.tau_step == "epoch"``.
    """

    def __init__(self, cfg: Config, num_classes: int, in_channels: int = 1, iters_per_epoch: int = 1):
        super().__init__()
        self.cfg, self.spec, self.num_classes = cfg, SPECS[cfg.method], num_classes
        self.iters_per_epoch = max(1, iters_per_epoch)
        self.student = Model(cfg, in_channels, num_classes)
        self.teacher = self._new_teacher() if self.spec.teacher else None
        self.dice_ce = DiceCE()
        self.register_buffer("class_conf", torch.ones(num_classes))  # EMA of the teacher's per-class confidence
        self.ascl = None
        if self.spec.ascl:
            centers = (uniform_centers(num_classes, cfg.embed_dim, seed=cfg.seed) if cfg.centers == "auto"
                       else load_centers(cfg.centers, num_classes, cfg.embed_dim))
            self.ascl = ASCLoss(num_classes, cfg.embed_dim, centers, queue_size=cfg.ascl_queue,
                                centroid_momentum=cfg.ascl_centroid_momentum, target_weight=cfg.ascl_target_weight,
                                matmul_dtype=matmul_dtype(cfg.ascl_precision, resolve_device(cfg.device)),
                                targets=cfg.ascl_targets)

    def _apply(self, fn, recurse=True):
        """``.to()``/``.float()`` reach the teacher too (it is not a submodule, so ``train()`` leaves it in eval)."""
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher.module._apply(fn)
        return self

    def reset_teacher(self) -> None:
        """Restart the teacher as a copy of the current student (after pre-training)."""
        if self.teacher is not None:
            self.teacher = self._new_teacher()

    def _new_teacher(self) -> EMATeacher:
        """``--teacher eval``: eval mode, BN buffers averaged; ``official``: parameters only, train mode."""
        official = self.cfg.teacher == "official"
        return EMATeacher(self.student, self.cfg.ema_momentum, average_buffers=not official, train_mode=official)

    def extra_state(self) -> dict:
        """Checkpoint state outside ``state_dict()``: the teacher."""
        return {"teacher": self.teacher.state_dict()} if self.teacher is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])

    # ----------------------------------------------------------------------------------------------------------
    def temperatures(self, iteration: int) -> dict[str, float]:
        """AnCo and ASCL temperatures at ``iteration`` (cosine schedule per iteration, or per epoch)."""
        cfg = self.cfg
        step = iteration if cfg.tau_step == "iteration" else epoch_step(iteration, self.iters_per_epoch)
        taus: dict[str, float] = {}
        if self.spec.anco:
            taus["anco"] = (cosine_tau(step, cfg.iterations, cfg.anco_tau_min, cfg.anco_tau_max, cfg.tau_period)
                            if self.spec.anco_cosine else cfg.anco_tau)
        if self.spec.ascl:
            taus["ascl"] = cosine_tau(step, cfg.iterations, cfg.ascl_tau_min, cfg.ascl_tau_max, cfg.tau_period)
        return taus

    @torch.no_grad()
    def update_teacher(self) -> None:
        if self.teacher is not None:
            self.teacher.update(self.student)

    def inference_model(self) -> Model:
        """The weights written to ``model.pt``: the student at the last iteration, as the official evaluation."""
        return self.student

    # ----------------------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], iteration: int,
                g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_l, y_l = batch["l_image"], batch["l_label"]
        if self.teacher is None or "u_image" not in batch:
            logits, _ = self.student(x_l)
            sup = self.dice_ce(logits, y_l)
            return sup, {"sup": sup.detach()}
        cfg, b_l = self.cfg, x_l.shape[0]
        x_u = batch["u_image"]
        with torch.no_grad():  # the teacher sees the labeled images only when ASCL needs its features there
            t_logits, _ = self.teacher(x_u)
            conf, pseudo = torch.softmax(t_logits.float(), dim=1).max(dim=1)
            if self.spec.ascl:
                with self._ascl_teacher_precision(x_l.device.type):
                    _, t_feats = self.teacher(x_l)
        gate = conf / self._class_scale(pseudo, conf)[pseudo] if cfg.unsup_threshold == "class-adaptive" else conf
        x_u, pseudo, conf, gate = self._unlabeled_views(x_u, pseudo, conf, gate, g)

        if cfg.split_bn:  # BatchNorm statistics of clean labeled and strongly augmented unlabeled images kept apart
            (lo_l, fe_l), (lo_u, fe_u) = self.student(x_l), self.student(x_u)
            logits = torch.cat([lo_l, lo_u])
            feats = [torch.cat(p) for p in zip(fe_l, fe_u)] if self.spec.anco or self.spec.ascl else None
        else:
            logits, feats = self.student(torch.cat([x_l, x_u]))
        sup = self.dice_ce(logits[:b_l], y_l)
        unsup = pseudo_label_loss(logits[b_l:], pseudo, gate, cfg.strong_threshold, cfg.unsup_mask)
        loss = sup + cfg.unsup_weight * sigmoid_rampup(iteration, cfg.unsup_rampup * cfg.iterations) * unsup
        logs = {"sup": sup.detach(), "unsup": unsup.detach()}
        taus = self.temperatures(iteration)
        shape, picks = tuple(logits.shape[2:]), []  # student rows of both contrastive terms, embedded in one call
        if self.spec.anco:
            a_idx, a_ok, p_idx, p_ok = self._anco_pixels(logits, torch.cat([y_l, pseudo]), conf, b_l, g)
            picks.append(a_idx.flatten())
        if self.spec.ascl:
            s_idx, s_y = self._ascl_pixels(y_l, g)
            picks.append(s_idx)
        if picks:
            rows = self.student.embed(feats, torch.cat(picks), shape).split([len(p) for p in picks])
        if self.spec.anco:
            with torch.no_grad():
                pool = self.student.embed(feats, p_idx.flatten(), shape).view(*p_idx.shape, -1)
            anco = anco_loss(rows[0].view(*a_idx.shape, -1), a_ok, pool, p_ok, taus["anco"], cfg.anco_negatives, g,
                             cfg.anco_share_negatives)
            loss = loss + cfg.anco_weight * anco
            logs["anco"] = anco.detach()
        if self.spec.ascl:
            with torch.no_grad(), self._ascl_teacher_precision(s_idx.device.type):
                t = self.teacher.module.embed(t_feats, s_idx, shape)
            ascl = self.ascl(rows[-1], t, s_y, taus["ascl"])
            loss = loss + cfg.ascl_weight * ascl
            logs["ascl"] = ascl.detach()
        return loss, logs

    def _ascl_teacher_precision(self, device_type: str):
        """Autocast to bfloat16 for ASCL's teacher side (the teacher's pass over the labeled half and its embeddings,
        used only as ASCL's no-grad targets and queue entries) when ``--ascl-precision`` resolves to bfloat16;
        otherwise no change (an outer ``--amp`` autocast still applies)."""
        dtype = self.ascl.matmul_dtype
        return torch.autocast(device_type, dtype=dtype) if dtype != torch.float32 else nullcontext()

    @torch.no_grad()
    def _class_scale(self, pseudo: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
        """Class-adaptive threshold factors ``(C,)``: ``s_c = q_c / max_c' q_c'``, ``q_c`` an EMA of the teacher's mean
        confidence on the pixels it assigns to class ``c``. Gating ``conf / s_c >= delta_s`` is a threshold of
        ``delta_s * s_c`` for class ``c``: 0.97 for the class the teacher is surest of, lower for classes it is
        learning more slowly (the small, rare ones), so they too receive pseudo-labels (FreeMatch-style)."""
        c = self.num_classes
        sums = torch.zeros(c, device=conf.device).index_add_(0, pseudo.flatten(), conf.flatten().float())
        counts = torch.zeros(c, device=conf.device).index_add_(0, pseudo.flatten(), torch.ones_like(conf.flatten()))
        m = self.cfg.class_conf_momentum
        seen = counts > 0
        self.class_conf.copy_(torch.where(seen, m * self.class_conf + (1 - m) * sums / counts.clamp(min=1),
                                          self.class_conf))
        return self.class_conf / self.class_conf.max()

    def _unlabeled_views(self, x_u, pseudo, conf, gate, g):
        """Mix inside the unlabeled batch, then the strong view: intensity on the image, flips on all the maps."""
        cfg = self.cfg
        if cfg.mix == "cutmix":
            x_u, pseudo, conf, gate = apply_mix(cutmix_mask(x_u.shape[0], tuple(x_u.shape[2:]), g, x_u.device),
                                                x_u, pseudo, conf, gate)
        elif cfg.mix == "classmix":
            x_u, pseudo, conf, gate = apply_mix(classmix_mask(pseudo, g, self.num_classes), x_u, pseudo, conf, gate)
        if cfg.strong_aug:
            x_u = apply_strong(x_u, sample_strong_params(x_u.shape[0], g))
            x_u, pseudo, conf, gate = apply_flips(sample_flips(x_u.shape[0], x_u.ndim - 2, g), x_u, pseudo, conf, gate)
        return x_u, pseudo, conf, gate

    def _anco_pixels(self, logits, labels, conf_u, b_l, g):
        """AnCo's pixels, ``(C, A)`` hard anchors and ``(C, P)`` pool rows with their ``(C,)`` presence flags: labeled
        pixels (ground truth) and confident unlabeled pixels (pseudo-labels) are valid; hard ones are valid pixels
        whose student probability of their own class is below ``delta_s``."""
        cfg, c = self.cfg, self.num_classes
        valid = torch.cat([torch.ones_like(labels[:b_l], dtype=torch.bool), conf_u >= cfg.weak_threshold])
        p_own = torch.softmax(logits.detach().float(), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        hard = valid & (p_own < cfg.strong_threshold)
        flat_labels = labels.flatten()
        a_idx, a_ok = sample_per_class(flat_labels, hard.flatten(), c, cfg.anco_anchors, g)
        p_idx, p_ok = sample_per_class(flat_labels, valid.flatten(), c, cfg.anco_pool, g)
        return a_idx, a_ok, p_idx, p_ok

    def _ascl_pixels(self, y_l, g):
        """ASCL's anchors: ``(N,)`` flat indices of labeled pixels (labeled rows come first in the joint batch), 256
        per present class, and their ``(N,)`` classes."""
        c = self.num_classes
        idx, ok = sample_per_class(y_l.flatten(), None, c, self.cfg.ascl_anchors_per_class, g)
        classes = torch.arange(c, device=idx.device)[:, None].expand_as(idx)
        return idx[ok].flatten(), classes[ok].flatten()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else mps, else cpu; an unavailable explicit device is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available in this PyTorch build ({torch.__version__}); "
                         "use --device cpu or install a CUDA build of torch")
    return torch.device(name)

