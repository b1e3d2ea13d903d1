"""fralkit.train.augment: FairAT's hard examples and augmentations, the random crop."""
import pytest
import torch
import torch.nn.functional as F

from fralkit.train import augment_hard, cutmix, cutout, random_crop, select_hard


def test_select_hard_takes_exactly_the_highest_cross_entropy():
    ce = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.2, 1.0, 0.0, 0.7, 0.3, 0.4])
    assert select_hard(ce, 0.2).tolist() == [3, 1]
    assert select_hard(ce, 0.25).tolist() == [3, 1, 5]  # ceil(2.5)
    assert select_hard(ce, 0.0).numel() == 0
    assert sorted(select_hard(ce, 1.0).tolist()) == list(range(10))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        select_hard(ce, 1.5)


def test_fairat_augmentations_keep_shape_labels_and_never_flip_by_default():
    x = torch.zeros(5, 3, 8, 8)
    x[..., :4] = 1.0  # left half white: a flip would move it right
    t = F.one_hot(torch.arange(5) % 3, 3).float()
    xa, ta = augment_hard(x, t, kind="none", crop_pad=0)
    torch.testing.assert_close(xa, x)
    xc, tc = augment_hard(x, t, kind="cutout", strength=0.5, crop_pad=0)
    torch.testing.assert_close(tc, t)
    changed = (xc != x).any(1)
    assert changed.flatten(1).sum(1).max() <= 16  # at most a 4 x 4 square (0.5 x 8 px)
    assert set(torch.unique(xc[x != xc]).tolist()) <= {0.5}
    xm, tm = cutmix(x, t, 1 - x, t.roll(1, 0), strength=0.5)
    assert torch.allclose(tm.sum(1), torch.ones(5))
    area = (xm != x).any(1).flatten(1).float().mean(1)
    torch.testing.assert_close(tm, (1 - area[:, None]) * t + area[:, None] * t.roll(1, 0))
    with pytest.raises(ValueError, match="valid"):
        augment_hard(x, t, kind="mixup")


def test_random_crop_is_a_shift_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    out = random_crop(x, 2)
    assert out.shape == x.shape
    pad = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(6):
        assert any(torch.equal(out[i], pad[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    torch.testing.assert_close(random_crop(x, 0), x)
    assert (cutout(x, 0.0) == x).all()
