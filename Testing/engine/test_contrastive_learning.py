"""On a separable toy problem a representation head trained on each contrastive loss alone must move the loss from
its chance value most of the way to its floor (docs/method.md, "Why the contrastive losses sit near chance"). A sign
slip, a lost normalisation, a detached row or a wrong positive set leaves the loss at chance and fails here."""

import math

import torch
import torch.nn.functional as F

from actionpp.centers import uniform_centers
from actionpp.losses.anco import anco_loss
from actionpp.losses.ascl import ASCLoss
from actionpp.nets import RepresentationHead

C, D_IN, D = 3, 12, 16


MEANS = 2.0 * torch.randn(C, D_IN, generator=torch.Generator().manual_seed(0))


def _features(n_per_class, seed):
    """``(C, n, D_IN)`` rows of three separable classes (fixed means, fresh noise per call), not yet embedded."""
    g = torch.Generator().manual_seed(seed)
    return MEANS[:, None] + torch.randn(C, n_per_class, D_IN, generator=g)


def test_anco_alone_trains_a_head_far_below_chance():
    torch.manual_seed(0)
    head = RepresentationHead(D_IN, D)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    ok = torch.ones(C, dtype=torch.bool)
    tau, K = 0.1, 64
    chance = math.log(1 + K)
    losses = []
    for step in range(30):
        x = _features(32, seed=step)
        emb = head(x.flatten(0, 1)).view(C, 32, D)
        loss = anco_loss(emb[:, :16], ok, emb[:, 16:].detach(), ok, tau, K, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 0.4 * chance            # starts near chance (a random head)
    assert sum(losses[-5:]) / 5 < 0.15 * chance  # floor is 0 at tau = 0.1 with separated classes


def test_ascl_alone_trains_a_head_from_chance_towards_its_floor():
    torch.manual_seed(0)
    head = RepresentationHead(D_IN, D)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    fn = ASCLoss(C, D, uniform_centers(C, D, seed=0), queue_size=192)
    tau, n = 0.1, 16
    y = torch.arange(C).repeat_interleave(n)
    # range of the loss with a full queue of 64 same-class entries per class: floor = every row on its centre
    ref = ASCLoss(C, D, fn.centers.clone(), queue_size=192)
    qy = torch.arange(C).repeat(64)
    ref.queue.copy_(ref.centers[qy])
    ref.queue_labels.copy_(qy)
    floor = float(ref(ref.centers[y], ref.centers[y], y, tau))
    losses = []
    for step in range(40):
        x = _features(n, seed=100 + step)
        s = head(x.flatten(0, 1))
        loss = fn(s, s.detach(), y, tau)  # teacher = the same head, as an EMA teacher close to its student
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert max(losses[4:8]) > floor + 0.3        # queue full after 4 steps: the head starts well above the floor
    late = sum(losses[-5:]) / 5
    assert floor - 0.05 < late < floor + 0.1     # and ends on it (about: rows need not sit on the centres)
    assert abs(floor - math.log(65)) < 0.3       # the floor is about log(number of positives), not 0
