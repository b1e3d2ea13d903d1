import numpy as np
import pytest
import torch

import fralkit as fk
from fralkit.data import GroupStyle, SynbolsConfig, available_fonts, make_synbols, preset_configs, render_synbols
from fralkit.data.synbols import _allocate


def small(name, **kw):
    return preset_configs(name, n=kw.pop("n", 200), seed=kw.pop("seed", 0), **kw)[0]


def test_same_seed_same_bytes():
    cfg = small("synbols-utk")
    a, b = render_synbols(cfg), render_synbols(cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.g, b.g)


def test_different_seed_different_images():
    a, b = render_synbols(small("synbols-utk", seed=0)), render_synbols(small("synbols-utk", seed=1))
    assert not torch.equal(a.x, b.x)


def test_cache_returns_identical_data(tmp_path):
    cfg = small("synbols-cinic", n=60)
    first = make_synbols(cfg, root=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = make_synbols(cfg, root=tmp_path)
    assert second.meta.get("cached")
    assert torch.equal(first.x, second.x) and torch.equal(first.g, second.g)


def test_damaged_cache_is_regenerated(tmp_path):
    cfg = small("synbols-utk", n=30)
    ds = make_synbols(cfg, root=tmp_path)
    path = next(tmp_path.glob("*.npz"))
    path.write_bytes(b"not an npz")
    again = make_synbols(cfg, root=tmp_path)
    assert torch.equal(ds.x, again.x)


@pytest.mark.parametrize("name", ["synbols-utk", "synbols-cinic", "synbols-ham", "synbols-farmur",
                                  "synbols-minority", "synbols-sensitive"])
def test_preset_shapes_and_names(name):
    splits = fk.load_dataset(name, n=100, cache=False)
    ds = splits.train
    assert ds.x.dtype == torch.uint8 and ds.x.shape[1] == 3
    assert ds.x.shape[-1] == (64 if name in ("synbols-minority", "synbols-sensitive") else 32)
    assert len(splits.val) == len(splits.test) == 20
    assert ds.num_classes == len(ds.classes) and ds.num_groups == len(ds.groups)


def test_minority_proportions():
    splits = fk.load_dataset("synbols-minority", n=1000, n_val=400, n_test=400, size=16, cache=False)
    red = splits.train.groups.index("red")
    assert abs((splits.train.g == red).float().mean().item() - 0.10) < 0.005
    assert abs((splits.test.g == red).float().mean().item() - 0.50) < 0.005
    # colour independent of the character in train
    c = splits.train.counts().float()
    assert torch.allclose(c[:, red] / c.sum(1), torch.full((2,), 0.1), atol=0.01)


def test_sensitive_attribute_correlation():
    splits = fk.load_dataset("synbols-sensitive", n=1000, n_val=400, n_test=400, size=16, cache=False)
    c = splits.train.counts().float()  # rows a, d; cols blue, red
    assert abs(c[0, 0] / c[0].sum() - 0.9) < 0.01  # P(blue | a)
    assert abs(c[1, 1] / c[1].sum() - 0.9) < 0.01  # P(red | d)
    t = splits.test.counts().float()
    assert torch.allclose(t / t.sum(), torch.full((2, 2), 0.25), atol=0.01)


def test_ham_long_tail_and_utk_priors():
    ham = fk.load_dataset("synbols-ham", n=2000, cache=False).train
    share = torch.bincount(ham.y, minlength=7).float() / len(ham)
    expected = torch.tensor([0.67, 0.11, 0.11, 0.05, 0.03, 0.014, 0.011])
    assert torch.allclose(share, expected / expected.sum(), atol=0.003)
    utk = fk.load_dataset("synbols-utk", n=1000, cache=False).train
    assert abs((utk.g == 1).float().mean().item() - 0.3) < 0.002


def test_pixel_colours_follow_the_group_style():
    """Blue glyphs have a strong blue channel and no red; red glyphs the reverse (64 px, no background)."""
    ds = fk.load_dataset("synbols-minority", n=200, size=32, cache=False).train
    blue, red = ds.x[ds.g == 0].float(), ds.x[ds.g == 1].float()
    assert blue[:, 2].mean() > blue[:, 0].mean() * 0.5
    assert red[:, 0].mean() > red[:, 2].mean() * 0.5


def test_disadvantaged_group_is_low_contrast_and_noisy():
    from fralkit.data import PRESETS

    easy, hard = PRESETS["synbols-utk"]["styles"]
    assert hard.contrast[1] < easy.contrast[0]  # every hard glyph fainter than every easy one
    ds = fk.load_dataset("synbols-utk", n=400, cache=False).train
    x = ds.x.float()
    # Median pixel-to-pixel jitter: 0 on a plain background (edges are few), several levels under noise of sd 20.
    jitter = (x[..., 1:] - x[..., :-1]).abs().flatten(1).median(1).values
    assert jitter[ds.g == 0].max() <= 1 and jitter[ds.g == 1].min() >= 3


def test_fonts_really_draw_distinct_glyphs():
    fonts = available_fonts(("a", "b", "c", "d"))
    assert len(fonts) >= 10
    for symbol_font in ("cmsy10.ttf", "cmex10.ttf", "LastResortHE-Regular.ttf"):
        assert symbol_font not in fonts


def test_allocate_is_exact():
    counts = _allocate(7, np.array([[0.5, 0.25], [0.125, 0.125]]))
    assert counts.sum() == 7 and counts.min() >= 0


def test_config_validation_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        SynbolsConfig(n=10, chars=("a", "b"), joint=((0.5, 0.5), (0.5, 0.5)), styles=(GroupStyle(), GroupStyle()), group_names=("x", "y"))
    with pytest.raises(ValueError, match="background"):
        GroupStyle(background="stripes")
    with pytest.raises(ValueError, match="contrast"):
        GroupStyle(contrast=(100, 50))
    with pytest.raises(ValueError, match="unknown Synbols preset"):
        preset_configs("synbols-nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        fk.load_dataset("imagenet")
    with pytest.raises(ValueError, match="root"):
        fk.load_dataset("utkface")


def test_any_size_and_backgrounds():
    for bg in ("plain", "gradient", "noise", "texture"):
        cfg = SynbolsConfig(n=12, chars=("a", "b"), joint=((0.25, 0.25), (0.25, 0.25)), size=20,
                            styles=(GroupStyle(background=bg, noise_sd=20), GroupStyle(background=bg, occlusions=2)),
                            group_names=("g0", "g1"))
        ds = render_synbols(cfg)
        assert ds.x.shape == (12, 3, 20, 20)
        assert ds.x.float().std() > 5  # something was drawn


def test_label_noise_changes_only_the_shown_glyphs_of_its_group():
    base = small("synbols-ham", n=2000, size=12)
    noisy = small("synbols-ham", n=2000, size=12, knobs={"hard_ambiguity": 0.5})
    a, b = render_synbols(base), render_synbols(noisy)
    assert torch.equal(a.y, b.y) and torch.equal(a.g, b.g)  # labels and groups as before
    changed = (a.x != b.x).flatten(1).any(1)
    assert not changed[a.g == 0].any()  # the other group renders the same bytes
    # a flipped image shows a glyph drawn from the group's class distribution: P(changed) = 0.5 (1 - sum p^2)
    p = np.array([0.67, 0.11, 0.11, 0.05, 0.03, 0.014, 0.011])
    assert changed[a.g == 1].float().mean().item() == pytest.approx(0.5 * (1 - (p / p.sum()) @ (p / p.sum())), abs=0.04)
    assert noisy.key() != base.key()
    assert base.key() == small("synbols-ham", n=2000, size=12, knobs={"hard_ambiguity": 0.0}).key()
    with pytest.raises(ValueError, match="label_noise"):
        GroupStyle(label_noise=1.0)


def _two_groups(decoy0: float, decoy1: float, n: int = 400) -> SynbolsConfig:
    plain = dict(background="plain", bg_color=(0, 0, 0), contrast=(100.0, 100.0), rotation=0.0)
    return SynbolsConfig(n=n, chars=("a", "b", "c"), joint=((0.4, 0.4), (0.1, 0.05), (0.03, 0.02)), size=16,
                         styles=(GroupStyle(decoy=decoy0, **plain), GroupStyle(decoy=decoy1, **plain)),
                         group_names=("g0", "g1"))


def test_decoy_glyphs_change_only_their_group_and_stay_under_the_own_glyph():
    """A decoy of opacity q moves a pixel by at most q x the contrast (it is drawn under the image's own glyph), only
    in its group; labels, groups and the other group's bytes stay; q = 0 keeps the cache key and the bytes."""
    from fralkit.data.synbols import _decoy_glyphs

    base, dec = _two_groups(0.0, 0.0), _two_groups(0.0, 0.6)
    from dataclasses import asdict

    from fralkit.utils import config_hash

    before = asdict(base)  # the key as it was before the fields existed: no zero decoy, label_noise, watermark
    for st in before["styles"]:
        del st["decoy"], st["label_noise"], st["watermark"]
    assert base.key() == config_hash({"version": 2, **before}) and dec.key() != base.key()
    a, b = render_synbols(base), render_synbols(dec)
    assert torch.equal(a.y, b.y) and torch.equal(a.g, b.g)
    diff = (b.x.float() - a.x.float()).abs()
    changed = diff.flatten(1).amax(1) > 0
    assert not changed[a.g == 0].any() and changed[a.g == 1].float().mean() > 0.9
    assert diff.max() <= 0.6 * 100 + 1  # a stroke of the decoy alone: q x contrast (rounding: 1 level)
    assert (diff[a.g == 1].flatten(1).amax(1) >= 0.6 * 100 * 0.5).float().mean() > 0.5  # visible, not a trace
    # every decoy is another class than the one shown, drawn from the group's class distribution without it
    shown = a.y.numpy()
    cls = _decoy_glyphs(dec, shown, a.g.numpy())
    in_group = a.g.numpy() == 1
    assert (cls[~in_group] == -1).all() and (cls[in_group] != shown[in_group]).all()
    frequent = in_group & (shown != 0)
    assert (cls[frequent] == 0).mean() > 0.6  # the frequent class's glyph is the usual decoy (0.95 or 0.89 of the rest)
    assert _decoy_glyphs(base, shown, a.g.numpy()) is None
    with pytest.raises(ValueError, match="decoy"):
        GroupStyle(decoy=1.0)


def test_decoy_is_a_knob_field():
    from fralkit.data import Knob

    knob = Knob("decoy", (1,), (0.0, 0.5, 0.8))
    assert knob.override(0.5) == {"decoy": 0.5}


def test_jin_presets_default_to_the_papers_sizes():
    from fralkit.data import PAPER_SIZES

    for name, (n, n_val, n_test) in PAPER_SIZES.items():
        train, val, test = preset_configs(name)
        assert (train.n, val.n, test.n) == (n, n_val, n_test)
    assert PAPER_SIZES["synbols-utk"] == (15_400, 3_080, 6_600)
    train, val, test = preset_configs("synbols-utk", n=500)  # an explicit n keeps n / 5 for val and test
    assert (train.n, val.n, test.n) == (500, 100, 100)


def test_a_watermark_adds_its_class_pattern_to_its_group_only_and_zero_keeps_the_bytes():
    """A watermark of amplitude w adds w x the pattern of the glyph's class to every pixel of its group (up to the
    rounding to levels and the clamp to 0..255), the same pattern in every split and seed; the other group's bytes
    and every label stay; a set watermark keys the cache (a zero one does not: the decoy test above)."""
    from fralkit.data.synbols import _watermarks

    plain = dict(contrast=(60.0, 120.0), occlusions=0)

    def config(w: float, seed: int = 0) -> SynbolsConfig:
        return SynbolsConfig(n=300, size=16, chars=("a", "b", "c"), seed=seed, supersample=1,
                             styles=(GroupStyle(**plain), GroupStyle(watermark=w, **plain)),
                             joint=((1 / 6, 1 / 6),) * 3, group_names=("g0", "g1"))

    base, marked = render_synbols(config(0.0)), render_synbols(config(6.0))
    assert config(6.0).key() != config(0.0).key()
    assert torch.equal(base.y, marked.y) and torch.equal(base.g, marked.g)
    assert torch.equal(base.x[base.g == 0], marked.x[base.g == 0])
    pat = _watermarks(3, 16)
    assert set(pat.unique().tolist()) == {-1.0, 1.0} and torch.equal(pat, _watermarks(3, 16))
    assert (pat[0] != pat[1]).float().mean() > 0.4  # the classes' patterns differ in about half the pixels
    sel = base.g == 1
    diff = marked.x[sel].float() - base.x[sel].float()
    want = 6.0 * pat[base.y[sel]]
    inside = (base.x[sel] >= 6) & (base.x[sel] <= 249)  # where the clamp cannot bite
    assert (diff - want)[inside].abs().max() <= 1.0  # rounding to levels
    # another seed (another split) draws other images and carries the same cue for each class
    plain1, other = render_synbols(config(0.0, seed=1)), render_synbols(config(6.0, seed=1))
    assert not torch.equal(other.x, marked.x)
    sel1 = plain1.g == 1
    diff1, inside1 = other.x[sel1].float() - plain1.x[sel1].float(), (plain1.x[sel1] >= 6) & (plain1.x[sel1] <= 249)
    assert (diff1 - 6.0 * pat[plain1.y[sel1]])[inside1].abs().max() <= 1.0
    with pytest.raises(ValueError, match="watermark"):
        GroupStyle(watermark=-1.0)
