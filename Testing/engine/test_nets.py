import pytest
import torch
from torch.nn import functional as F

from actionpp.config import Config
from actionpp.nets import Model, gather_points


@pytest.mark.parametrize("dims, patch, network", [(2, (32, 32), "unet"), (3, (8, 32, 32), "unet"),
                                                   (3, (16, 32, 32), "vnet"), (2, (32, 32), "basicunet")])
def test_logits_and_decoder_features(dims, patch, network):
    channels = (4, 8, 16, 32, 64) if network == "basicunet" else (8, 16, 32, 64)
    cfg = Config(dims=dims, patch=patch, network=network, channels=channels, embed_dim=12)
    model = Model(cfg, 1, 3)
    logits, feats = model(torch.randn(2, 1, *patch))
    assert logits.shape == (2, 3, *patch)
    assert [f.shape[1] for f in feats] == model.net.feature_channels
    sizes = [f.shape[2:].numel() for f in feats]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # coarse (bottleneck) first, finest last
    idx = torch.tensor([0, 5, 2 * torch.Size(patch).numel() - 1])
    assert model.embed(feats, idx, patch).shape == (3, 12)


def test_basicunet_is_the_papers_2d_unet_shape():
    # five decoder maps, widths 256 + 128 + 64 + 32 + 16 = 496 channels, as the official 2D head concatenates
    model = Model(Config(dims=2, patch=(32, 32), network="basicunet"), 1, 4)
    assert model.net.feature_channels == [256, 128, 64, 32, 16]
    assert model.head.mlp[0].in_features == 496
    with pytest.raises(ValueError, match="--channels"):
        Config(dims=2, patch=(32, 32), network="basicunet", channels=(8, 16, 32, 64))


def test_gather_points_equals_nearest_upsampling():
    torch.manual_seed(0)
    shape = (8, 12)
    feats = [torch.randn(2, 3, 2, 3), torch.randn(2, 4, 4, 6), torch.randn(2, 5, 8, 12)]
    dense = torch.cat([F.interpolate(f, size=shape, mode="nearest") for f in feats], dim=1)  # 2, 12, 8, 12
    idx = torch.randint(0, 2 * 8 * 12, (40,))
    b, y, x = torch.unravel_index(idx, (2, *shape))
    assert torch.equal(gather_points(feats, idx, shape), dense[b, :, y, x])


@pytest.mark.parametrize("dims, patch", [(2, (32, 32)), (3, (8, 32, 32))])
def test_head_full_res_separates_the_pixels_of_a_half_resolution_cell(dims, patch):
    """Without the flag the default UNet's finest map is at half resolution: the 2 x 2 cell's pixels share one
    embedding. With it the head also sees a full-resolution C-channel map, and the pixels differ."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, *patch)
    cell = torch.tensor([0, 1, patch[-1], patch[-1] + 1])  # the 2 x 2 (x 1) cell at the origin, flat indices
    for full in (False, True):
        model = Model(Config(dims=dims, patch=patch, channels=(8, 16, 32, 64), embed_dim=6, head_full_res=full), 1, 3)
        logits, feats = model(x)
        assert tuple(feats[-1].shape[2:]) == (patch if full else tuple(p // 2 for p in patch))
        assert model.net.feature_channels[-1] == (3 if full else 8)
        emb = model.embed(feats, cell, patch)
        same = torch.allclose(emb, emb[:1].expand_as(emb))
        assert same != full
    with pytest.raises(ValueError, match="--head-full-res"):
        Config(dims=2, patch=(32, 32), network="basicunet", head_full_res=True)
