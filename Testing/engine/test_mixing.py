import pytest
import torch

from actionpp.mixing import apply_mix, classmix_classes, classmix_mask, cutmix_mask


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_cutmix_2d_area_about_half_and_rectangle():
    h, w = 32, 40
    mask = cutmix_mask(16, (h, w), _gen(), "cpu")
    assert mask.shape == (16, h, w) and mask.dtype == torch.bool
    for m in mask:
        area = m.sum().item()
        assert abs(area - h * w / 2) <= w  # round(h) changes the area by at most one row of width <= W
        rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
        assert area == len(rows) * len(cols)  # a filled rectangle
        assert w // 2 + 1 <= len(cols) <= w - 1


def test_cutmix_3d_z_extent_and_determinism():
    shape = (8, 16, 16)
    mask = cutmix_mask(4, shape, _gen(1), "cpu")
    assert mask.shape == (4, *shape)
    for m in mask:
        assert m.any(dim=(1, 2)).sum().item() == 4  # half the depth by default
    mask3 = cutmix_mask(4, shape, _gen(1), "cpu", z_extent=3)
    assert all(m.any(dim=(1, 2)).sum().item() == 3 for m in mask3)
    assert torch.equal(mask, cutmix_mask(4, shape, _gen(1), "cpu"))
    with pytest.raises(ValueError, match="z_extent"):
        cutmix_mask(4, shape, _gen(), "cpu", z_extent=9)
    with pytest.raises(ValueError, match="spatial_shape"):
        cutmix_mask(4, (8,), _gen(), "cpu")


@pytest.mark.parametrize("spatial", [(12, 14), (6, 12, 14)])
def test_apply_mix_image_label_conf_consistent(spatial):
    b = 3
    img = torch.randn(b, 2, *spatial)
    pseudo = torch.randint(0, 4, (b, *spatial))
    conf = torch.rand(b, *spatial)
    mask = cutmix_mask(b, spatial, _gen(2), "cpu")
    mi, mp, mc = apply_mix(mask, img, pseudo, conf)
    for i in range(b):
        j = (i + 1) % b
        m = mask[i]
        assert torch.equal(mi[i][:, m], img[j][:, m]) and torch.equal(mi[i][:, ~m], img[i][:, ~m])
        assert torch.equal(mp[i][m], pseudo[j][m]) and torch.equal(mp[i][~m], pseudo[i][~m])
        assert torch.equal(mc[i][m], conf[j][m]) and torch.equal(mc[i][~m], conf[i][~m])
    assert mp.dtype == pseudo.dtype


def test_batch_of_one_is_noop():
    img = torch.randn(1, 1, 8, 8)
    mask = cutmix_mask(1, (8, 8), _gen(), "cpu")
    (out,) = apply_mix(mask, img)
    assert torch.equal(out, img)


def test_classmix_mask_is_partner_pixels_of_chosen_classes():
    b, c = 4, 5
    pseudo = torch.randint(0, c, (b, 6, 7), generator=_gen(3))
    pseudo[1] = 2  # a single class present: still one class is taken
    chosen = classmix_classes(pseudo, _gen(4), num_classes=c)
    mask = classmix_mask(pseudo, _gen(4), num_classes=c)
    for i in range(b):
        partner = pseudo[(i + 1) % b]
        present = set(partner.unique().tolist())
        picked = set(chosen[i].nonzero().squeeze(1).tolist())
        assert picked <= present and len(picked) == (len(present) + 1) // 2
        assert torch.equal(mask[i], torch.isin(partner, torch.tensor(sorted(picked))))
    assert mask[0].all()  # partner of 0 is the single-class image 1
    # num_classes inferred (one sync) gives the same draw
    assert torch.equal(mask, classmix_mask(pseudo, _gen(4)))


def test_apply_mix_rejects_bad_shapes():
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="tensors"):
        apply_mix(mask, torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="mask"):
        apply_mix(mask.float(), torch.zeros(2, 4, 4))
