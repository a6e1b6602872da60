import pytest
import torch
from torch.nn import functional as F

from actionpp.config import Config
from actionpp.nets import Model, gather_points


@pytest.mark.parametrize("dims, patch, network", [(2, (32, 32), "unet"), (3, (8, 32, 32), "unet"),
                                                   (3, (16, 32, 32), "vnet")])
def test_logits_and_decoder_features(dims, patch, network):
    cfg = Config(dims=dims, patch=patch, network=network, channels=(8, 16, 32, 64), embed_dim=12)
    model = Model(cfg, 1, 3)
    logits, feats = model(torch.randn(2, 1, *patch))
    assert logits.shape == (2, 3, *patch)
    assert [f.shape[1] for f in feats] == model.net.feature_channels
    sizes = [f.shape[2:].numel() for f in feats]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # coarse (bottleneck) first, finest last
    idx = torch.tensor([0, 5, 2 * torch.Size(patch).numel() - 1])
    assert model.embed(feats, idx, patch).shape == (3, 12)


def test_gather_points_equals_nearest_upsampling():
    torch.manual_seed(0)
    shape = (8, 12)
    feats = [torch.randn(2, 3, 2, 3), torch.randn(2, 4, 4, 6), torch.randn(2, 5, 8, 12)]
    dense = torch.cat([F.interpolate(f, size=shape, mode="nearest") for f in feats], dim=1)  # 2, 12, 8, 12
    idx = torch.randint(0, 2 * 8 * 12, (40,))
    b, y, x = torch.unravel_index(idx, (2, *shape))
    assert torch.equal(gather_points(feats, idx, shape), dense[b, :, y, x])
