import pytest
import torch
import torch.nn.functional as F

from actionpp.losses.pseudo import pseudo_label_loss
from actionpp.losses.supervised import DiceCE, dice_ce


def test_pseudo_loss_zero_weight_below_threshold():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    pseudo = torch.randint(0, 3, (2, 4, 4))
    conf = torch.full((2, 4, 4), 0.5)
    loss = pseudo_label_loss(logits, pseudo, conf, threshold=0.97)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_pseudo_loss_hand_computation():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]], [[[1.0, 1.0]], [[0.0, 3.0]]]])  # (B=2, C=2, 1, 2)
    pseudo = torch.tensor([[[0, 1]], [[1, 0]]])
    conf = torch.tensor([[[0.99, 0.5]], [[0.98, 0.97]]])
    ce = F.cross_entropy(logits, pseudo, reduction="none")  # (2, 1, 2)
    w = torch.tensor([0.5, 1.0])
    expected = (w * ce.view(2, -1).mean(1)).mean()
    torch.testing.assert_close(pseudo_label_loss(logits, pseudo, conf, 0.97, mode="image"), expected)
    # pixel gate: the unconfident pixel (0.5) contributes nothing, the mean still runs over all 4 pixels
    mask = (conf >= 0.97).float()
    torch.testing.assert_close(pseudo_label_loss(logits, pseudo, conf, 0.97), (mask * ce).mean())
    assert pseudo_label_loss(logits, pseudo, conf * 0, 0.97) == 0
    # 3D shapes work too
    out = pseudo_label_loss(torch.randn(1, 2, 2, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.long), torch.ones(1, 2, 3, 3))
    assert out.ndim == 0 and out > 0


def test_pseudo_loss_bad_arguments():
    with pytest.raises(ValueError, match="pseudo"):
        pseudo_label_loss(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 4, dtype=torch.long), torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="conf"):
        pseudo_label_loss(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), torch.ones(1, 3, 4))
    with pytest.raises(ValueError, match="mode"):
        pseudo_label_loss(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), torch.ones(1, 3, 3),
                          mode="soft")
    with pytest.raises(ValueError, match="threshold"):
        pseudo_label_loss(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), torch.ones(1, 3, 3), 1.5)


def _reference(logits, target, eps=1e-5):
    c = logits.shape[1]
    ce = F.cross_entropy(logits, target)
    s = logits.softmax(1)
    g = F.one_hot(target, c).movedim(-1, 1).float()
    dice = 0.0
    for k in range(c):
        inter = (s[:, k] * g[:, k]).sum()
        dice = dice + 1 - (2 * inter + eps) / ((s[:, k] ** 2).sum() + (g[:, k] ** 2).sum() + eps)
    return 0.5 * (ce + dice / c)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 2, 3, 4, 5)])
def test_dice_ce_matches_hand_written(shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    torch.testing.assert_close(dice_ce(logits, target), _reference(logits, target))
    torch.testing.assert_close(DiceCE()(logits, target), _reference(logits, target))


def test_dice_ce_bad_target():
    with pytest.raises(ValueError, match="target"):
        dice_ce(torch.randn(1, 2, 3, 3), torch.zeros(1, 1, 3, 3, dtype=torch.long))
