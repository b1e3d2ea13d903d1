"""Built-in Synbols-style generator: glyphs rendered with the TrueType fonts that ship with matplotlib.

Synbols (Lacoste et al. 2020; the data of the BALD/GRAD paper, its appendix A) draws characters with
latent attributes (char, font, foreground, background, rotation, scale, translation, occlusion). This
module recreates that idea offline and fast:

1. every (font, char) glyph is rasterised once with FreeType (``matplotlib.ft2font``) into an atlas;
   fonts that lack a glyph, or draw the same bitmap for different characters, are dropped;
2. a batch of images is drawn by sampling latents with a seeded NumPy generator, warping atlas masks
   with one batched ``affine_grid`` / ``grid_sample`` at ``supersample`` x the output size, then
   box-filtering down (anti-aliasing), and compositing foreground colour over a background
   (plain, gradient, noise or texture) plus optional occluding disks.

Everything is deterministic by seed: the same config gives the same bytes. Groups carry their own
rendering style (``GroupStyle``), which is how the presets build their bias conditions.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import atomic_write_bytes, cache_dir, config_hash
from .core import GroupDataset

__all__ = [
    "GroupStyle",
    "SynbolsConfig",
    "available_fonts",
    "render_synbols",
    "make_synbols",
    "BACKGROUNDS",
]

BACKGROUNDS = ("plain", "gradient", "noise", "texture")
_GLYPH_NAMES = dict(zip("0123456789", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")))
ATLAS_RES = 96  # glyph atlas side in pixels; masks are resampled from it


@dataclass(frozen=True)
class GroupStyle:
    """How the images of one group look.

    Attributes:
        contrast: (low, high) glyph/background difference in 0..255 levels per channel, used when
            ``fg_color`` is None. Low contrast is what makes a group hard under an L-inf threat model.
        fg_color: fixed RGB foreground (e.g. (255, 0, 0)); None for a colour at ``contrast`` from the background.
        bg_color: fixed RGB background for ``background='plain'``; None for a random colour.
        background: one of ``BACKGROUNDS``.
        noise_sd: pixel noise (levels) for ``noise``/``texture`` backgrounds.
        scale: (low, high) glyph height as a fraction of the image side.
        rotation: maximum absolute rotation in degrees.
        translation: maximum shift of the glyph centre as a fraction of the image side.
        occlusions: number of occluding disks drawn over the glyph.
        occlusion_scale: occluder diameter as a fraction of the image side.
        label_noise: share of the group's ambiguous images: they show the glyph of a class drawn from the group's
            class distribution under their own label, which caps every model's accuracy on the group near
            ``1 - label_noise (1 - p_class)`` in clean and robust evaluation alike (the label ambiguity of real
            data, such as race or age read from faces). 0 leaves the group (and its cache key) as before.
        decoy: opacity in [0, 1) of a second glyph drawn under each image's own, in the same place, pose and font:
            the glyph of another class drawn from the group's class distribution (so mostly a frequent class's).
            The image's own glyph stays the stronger one, so a clean model can still read it, while an L-inf attack
            needs only about ``(1 - decoy) x contrast / 2`` levels to let the decoy win, towards the frequent
            classes on imbalanced data (the glyph confusability of real data, such as lesion types that look
            alike). How much it lowers robust against clean accuracy is for a calibration to measure. 0 leaves the
            group (and its cache key) as before.
        watermark: amplitude in levels of a faint pattern of the glyph's class added to every pixel of the group's
            images: a fixed +-1 pattern per class and channel (``_watermarks``, the same in every split and seed),
            a cue a model can learn from few images and an L-inf attack of eps levels cancels wherever the amplitude
            is at most eps (the predictive but non-robust features of real data, such as a lesion type's colour).
            It adds clean accuracy an attack takes away. 0 leaves the group (and its cache key) as before.
    """

    contrast: tuple[float, float] = (90.0, 180.0)
    fg_color: tuple[int, int, int] | None = None
    bg_color: tuple[int, int, int] | None = None
    background: str = "plain"
    noise_sd: float = 0.0
    scale: tuple[float, float] = (0.55, 0.75)
    rotation: float = 20.0
    translation: float = 0.1
    occlusions: int = 0
    occlusion_scale: float = 0.4
    label_noise: float = 0.0
    decoy: float = 0.0
    watermark: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise must lie in [0, 1), got {self.label_noise}")
        if not 0.0 <= self.decoy < 1.0:
            raise ValueError(f"decoy must lie in [0, 1), got {self.decoy}")
        if not 0.0 <= self.watermark <= 64.0:
            raise ValueError(f"watermark must lie in [0, 64] levels, got {self.watermark}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        lo, hi = self.contrast
        if not 0 <= lo <= hi <= 255:
            raise ValueError(f"contrast must satisfy 0 <= low <= high <= 255, got {self.contrast}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1.5:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1.5, got {self.scale}")


@dataclass(frozen=True)
class SynbolsConfig:
    """Full description of a generated split; its hash keys the on-disk cache.

    ``joint[c][g]`` is the probability of (class c, group g); counts are allocated exactly from it
    (largest remainder), so proportions hold to within one example per cell.
    """

    n: int
    chars: tuple[str, ...]
    joint: tuple[tuple[float, ...], ...]
    styles: tuple[GroupStyle, ...]
    group_names: tuple[str, ...]
    size: int = 32
    supersample: int = 2
    fonts: tuple[str, ...] | None = None  # font file names; None = every usable matplotlib font
    seed: int = 0
    name: str = "synbols"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        joint = np.asarray(self.joint, dtype=float)
        if joint.shape != (len(self.chars), len(self.styles)):
            raise ValueError(f"joint must be [classes={len(self.chars)}, groups={len(self.styles)}], got {joint.shape}")
        if (joint < 0).any() or abs(joint.sum() - 1) > 1e-6:
            raise ValueError(f"joint probabilities must be >= 0 and sum to 1 (sum={joint.sum():.6f})")
        if len(self.group_names) != len(self.styles):
            raise ValueError("one group name per style is required")

    def key(self) -> str:
        d = asdict(self)
        for st in d["styles"]:  # a field added later keys the cache only when set: earlier caches stay valid
            for later in ("label_noise", "decoy", "watermark"):
                if not st[later]:
                    del st[later]
        return config_hash({"version": 2, **d})


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _raster(path: str, char: str) -> np.ndarray | None:
    """The glyph bitmap (float in [0, 1]) of ``char`` in font ``path``, or None if the font lacks it."""
    from matplotlib import ft2font

    font = ft2font.FT2Font(path)
    index = font.get_char_index(ord(char))
    # Symbol fonts (cmsy10, cmex10, LastResort) map letters to other glyphs: keep a glyph only when its
    # name is the character's own.
    if index == 0 or font.get_glyph_name(index) not in (char, _GLYPH_NAMES.get(char, char), f"uni{ord(char):04X}"):
        return None
    font.set_size(64, 72)
    font.set_text(char)
    font.draw_glyphs_to_bitmap(antialiased=True)
    img = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    if img.size == 0 or img.max() < 0.5:
        return None
    rows, cols = np.nonzero(img > 0.05)
    return img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


@functools.lru_cache(maxsize=None)
def available_fonts(chars: tuple[str, ...]) -> tuple[str, ...]:
    """Matplotlib font files that really draw every char in ``chars``, each char differently."""
    usable = []
    for path in sorted(_font_dir().glob("*.ttf")):
        glyphs = [_raster(str(path), c) for c in chars]
        if any(gl is None for gl in glyphs):
            continue
        seen = set()
        distinct = True
        for gl in glyphs:
            sig = (gl.shape, np.round(gl, 2).tobytes())
            if sig in seen:
                distinct = False
                break
            seen.add(sig)
        if distinct:
            usable.append(path.name)
    if not usable:
        raise RuntimeError(f"no matplotlib font draws all of {chars}; check the matplotlib installation")
    return tuple(usable)


@functools.lru_cache(maxsize=16)
def _atlas(fonts: tuple[str, ...], chars: tuple[str, ...]) -> torch.Tensor:
    """float32 ``[F, C, R, R]`` masks: each glyph scaled so its height fills the square, centred."""
    res = ATLAS_RES
    atlas = torch.zeros(len(fonts), len(chars), res, res)
    for fi, fname in enumerate(fonts):
        for ci, ch in enumerate(chars):
            gl = _raster(str(_font_dir() / fname), ch)
            if gl is None:
                raise ValueError(f"font {fname} does not draw {ch!r}")
            t = torch.from_numpy(gl)[None, None]
            h, w = gl.shape
            s = res / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            t = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0, 0]
            top, left = (res - nh) // 2, (res - nw) // 2
            atlas[fi, ci, top:top + nh, left:left + nw] = t.clamp(0, 1)
    return atlas


@functools.lru_cache(maxsize=8)
def _base_grid(res: int) -> torch.Tensor:
    """``[res, res, 3]`` homogeneous pixel-centre coordinates in [-1, 1] (``affine_grid``'s, computed once)."""
    lin = (torch.arange(res, dtype=torch.float32) * 2 + 1) / res - 1
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([xx, yy, torch.ones_like(xx)], -1)


def _allocate(n: int, probs: np.ndarray) -> np.ndarray:
    """Exact counts summing to n, proportional to probs (largest remainder)."""
    raw = probs.ravel() * n
    counts = np.floor(raw).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts.reshape(probs.shape)


def _bg_colors(rng: np.random.Generator, style: GroupStyle, n: int, contrast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background and foreground RGB for n images of one group (float, 0..255)."""
    if style.bg_color is not None:
        bg = np.tile(np.asarray(style.bg_color, float), (n, 1))
    else:
        bg = rng.uniform(0, 255, size=(n, 3))
    if style.fg_color is not None:
        fg = np.tile(np.asarray(style.fg_color, float), (n, 1))
        return bg, fg
    # Foreground at `contrast` levels from the background in every channel: brighter on dark backgrounds,
    # darker on light ones; the background is moved so the foreground never clips.
    lum = bg.mean(1, keepdims=True)
    sign = np.where(lum < 127.5, 1.0, -1.0)
    c = contrast[:, None]
    bg = np.where(sign > 0, np.minimum(bg, 255 - c), np.maximum(bg, c))
    fg = bg + sign * c
    return bg, fg


def _backgrounds(rng: np.random.Generator, style: GroupStyle, bg: np.ndarray, res: int) -> torch.Tensor:
    """float ``[n, 3, res, res]`` backgrounds in 0..255."""
    n = bg.shape[0]
    base = torch.from_numpy(bg).float()[:, :, None, None].expand(n, 3, res, res).clone()
    if style.background == "gradient":
        other = torch.from_numpy(rng.uniform(0, 255, size=(n, 3))).float()
        ang = torch.from_numpy(rng.uniform(0, 2 * np.pi, size=n)).float()
        lin = torch.linspace(-1, 1, res)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        t = ((xx[None] * torch.cos(ang)[:, None, None] + yy[None] * torch.sin(ang)[:, None, None]) * 0.5 + 0.5).clamp(0, 1)
        base = base * (1 - t[:, None]) + other[:, :, None, None] * t[:, None] * 0.5 + base * t[:, None] * 0.5
    elif style.background == "texture":
        # Smooth random field (bilinear upsampling of a coarse grid) plus stripes: structured clutter.
        coarse = torch.from_numpy(rng.normal(0, 1, size=(n, 3, 5, 5))).float()
        field_ = F.interpolate(coarse, size=(res, res), mode="bicubic", align_corners=False)
        freq = torch.from_numpy(rng.uniform(2, 6, size=n)).float()
        ang = torch.from_numpy(rng.uniform(0, np.pi, size=n)).float()
        lin = torch.linspace(0, 2 * np.pi, res)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        stripes = torch.sin(freq[:, None, None] * (xx[None] * torch.cos(ang)[:, None, None] + yy[None] * torch.sin(ang)[:, None, None]))
        base = base + (style.noise_sd or 30.0) * (0.7 * field_ + 0.5 * stripes[:, None])
    if style.background in ("noise", "texture") and style.noise_sd > 0:
        base = base + style.noise_sd * torch.from_numpy(rng.standard_normal(size=(n, 3, res, res)).astype(np.float32))
    return base


def render_synbols(cfg: SynbolsConfig, *, batch: int = 2048) -> GroupDataset:
    """Render the data set described by ``cfg`` (no cache). Deterministic by ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    fonts = cfg.fonts or available_fonts(tuple(cfg.chars))
    atlas = _atlas(tuple(fonts), tuple(cfg.chars))
    joint = np.asarray(cfg.joint, float)
    counts = _allocate(cfg.n, joint)
    y = np.repeat(np.arange(joint.size) // joint.shape[1], counts.ravel())
    g = np.repeat(np.arange(joint.size) % joint.shape[1], counts.ravel())
    perm = rng.permutation(cfg.n)
    y, g = y[perm], g[perm]
    shown = _ambiguous_glyphs(cfg, y, g)
    decoys = _decoy_glyphs(cfg, shown, g)
    opacity = torch.tensor([st.decoy for st in cfg.styles], dtype=torch.float32)
    amplitude = torch.tensor([st.watermark for st in cfg.styles], dtype=torch.float32)
    marks = _watermarks(len(cfg.chars), cfg.size) if bool((amplitude > 0).any()) else None

    size, ss = cfg.size, max(1, cfg.supersample)
    res = size * ss
    out = torch.empty((cfg.n, 3, size, size), dtype=torch.uint8)
    for start in range(0, cfg.n, batch):
        yb, gb = shown[start:start + batch], g[start:start + batch]
        m = len(yb)
        font_idx = rng.integers(0, len(fonts), size=m)
        imgs = torch.empty(m, 3, res, res)
        # Latents per image, drawn group by group so each group's style applies.
        scale = np.empty(m)
        rot = np.empty(m)
        shift = np.empty((m, 2))
        fgs = torch.empty(m, 3)
        for gi, style in enumerate(cfg.styles):
            sel = np.nonzero(gb == gi)[0]
            if len(sel) == 0:
                continue
            scale[sel] = rng.uniform(*style.scale, size=len(sel))
            rot[sel] = np.deg2rad(rng.uniform(-style.rotation, style.rotation, size=len(sel)))
            shift[sel] = rng.uniform(-style.translation, style.translation, size=(len(sel), 2))
            contrast = rng.uniform(*style.contrast, size=len(sel))
            bg, fg = _bg_colors(rng, style, len(sel), contrast)
            imgs[torch.from_numpy(sel)] = _backgrounds(rng, style, bg, res)
            fgs[torch.from_numpy(sel)] = torch.from_numpy(fg).float()
        # Warp glyph masks: output coords -> atlas coords (inverse of scale, rotation, shift).
        masks = atlas[torch.from_numpy(font_idx), torch.from_numpy(yb)][:, None]
        cos, sin = np.cos(rot), np.sin(rot)
        theta = np.zeros((m, 2, 3), dtype=np.float32)
        theta[:, 0, 0], theta[:, 0, 1] = cos / scale, sin / scale
        theta[:, 1, 0], theta[:, 1, 1] = -sin / scale, cos / scale
        theta[:, :, 2] = -(theta[:, :, :2] @ (2 * shift[:, :, None])).squeeze(-1)
        grid = torch.matmul(_base_grid(res), torch.from_numpy(theta).transpose(1, 2)[:, None]).view(m, res, res, 2)
        if decoys is not None:  # the decoy glyph first, in the same pose and font, at its group's opacity
            db = decoys[start:start + m]
            dmasks = atlas[torch.from_numpy(font_idx), torch.from_numpy(np.maximum(db, 0))][:, None]
            dalpha = F.grid_sample(dmasks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            dalpha = dalpha * (opacity[torch.from_numpy(gb)] * torch.from_numpy(db >= 0).float())[:, None, None, None]
            imgs.lerp_(fgs[:, :, None, None].expand_as(imgs), dalpha.expand_as(imgs))
        alpha = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        imgs.lerp_(fgs[:, :, None, None].expand_as(imgs), alpha.expand_as(imgs))
        imgs = _occlude(rng, cfg.styles, gb, imgs, res)
        if ss > 1:
            imgs = F.avg_pool2d(imgs, ss)
        if marks is not None:  # each image's class pattern at its group's amplitude, on the final pixels
            imgs += amplitude[torch.from_numpy(gb)][:, None, None, None] * marks[torch.from_numpy(yb)]
        out[start:start + m] = imgs.round_().clamp_(0, 255).to(torch.uint8)
    class_names = list(cfg.class_names or cfg.chars)
    return GroupDataset(out, torch.from_numpy(y), torch.from_numpy(g), class_names, list(cfg.group_names), cfg.name,
                        {"config_key": cfg.key(), "fonts": list(fonts)})


def _ambiguous_glyphs(cfg: SynbolsConfig, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The class whose glyph each image shows: its label, except for a ``label_noise`` share of each group, whose
    glyph is drawn from the group's own class distribution (``joint[:, g]``; it may be the label's). Drawn from the
    class distribution rather than uniformly, a rare class's glyph still carries its own label most often, so the
    best classifier still reads the glyph and every class is capped alike near ``1 - label_noise (1 - p_class)``.
    A generator of its own: styles without label noise render the same bytes as before the field existed."""
    rates = np.array([st.label_noise for st in cfg.styles], dtype=float)
    if not rates.any():
        return y
    rng = np.random.default_rng([int(cfg.seed), 0x61])
    joint = np.asarray(cfg.joint, float)
    shown = y.copy()
    flip = rng.random(len(y)) < rates[g]
    for gi in range(joint.shape[1]):
        sel = np.nonzero(flip & (g == gi))[0]
        if len(sel):
            p = joint[:, gi] / joint[:, gi].sum()
            shown[sel] = rng.choice(len(p), size=len(sel), p=p)
    return shown


def _decoy_glyphs(cfg: SynbolsConfig, shown: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """The class of each image's decoy glyph (``GroupStyle.decoy``), -1 where its group has none; None when no group
    has one. A decoy is drawn from the group's class distribution (``joint[:, g]``) without the class shown, from a
    generator of its own, so styles without decoys render the same bytes as before the field existed."""
    rates = np.array([st.decoy for st in cfg.styles], dtype=float)
    if not rates.any():
        return None
    rng = np.random.default_rng([int(cfg.seed), 0x64])
    joint = np.asarray(cfg.joint, float)
    out = np.full(len(shown), -1, dtype=np.int64)
    for gi in np.nonzero(rates > 0)[0]:
        for c in range(joint.shape[0]):
            sel = np.nonzero((g == gi) & (shown == c))[0]
            p = joint[:, gi].copy()
            p[c] = 0.0
            if len(sel) and p.sum() > 0:
                out[sel] = rng.choice(len(p), size=len(sel), p=p / p.sum())
    return out


def _watermarks(n_classes: int, size: int) -> torch.Tensor:
    """One fixed +-1 pattern ``[3, size, size]`` per class (``GroupStyle.watermark``), from a generator of its own
    seeded by the shape alone, so every split and seed of a preset carries the same cue for a class."""
    rng = np.random.default_rng([0x77, int(n_classes), int(size)])
    return torch.from_numpy(rng.choice([-1.0, 1.0], size=(n_classes, 3, size, size))).float()


def _occlude(rng: np.random.Generator, styles: Sequence[GroupStyle], gb: np.ndarray, imgs: torch.Tensor, res: int) -> torch.Tensor:
    """Draw each style's occluding disks (random colour and place) over its images."""
    lin = torch.arange(res).float() + 0.5
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    for gi, style in enumerate(styles):
        sel = torch.from_numpy(np.nonzero(gb == gi)[0])
        if style.occlusions <= 0 or len(sel) == 0:
            continue
        for _ in range(style.occlusions):
            r = style.occlusion_scale * res / 2
            cx = torch.from_numpy(rng.uniform(0.15, 0.85, size=len(sel)) * res).float()
            cy = torch.from_numpy(rng.uniform(0.15, 0.85, size=len(sel)) * res).float()
            col = torch.from_numpy(rng.uniform(0, 255, size=(len(sel), 3))).float()
            d = ((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2).sqrt()
            a = (r - d + 0.5).clamp(0, 1)[:, None]
            imgs[sel] = imgs[sel] * (1 - a) + col[:, :, None, None] * a
    return imgs


def make_synbols(cfg: SynbolsConfig, *, cache: bool = True, root: str | Path | None = None) -> GroupDataset:
    """Render ``cfg``, or load it from the .npz cache keyed by the full config hash."""
    if not cache:
        return render_synbols(cfg)
    folder = Path(root) if root is not None else cache_dir() / "synbols"
    path = folder / f"{cfg.name}-{cfg.key()}.npz"
    fonts = cfg.fonts or available_fonts(tuple(cfg.chars))
    if path.exists():
        try:
            with np.load(path) as z:
                return GroupDataset(torch.from_numpy(z["x"]), torch.from_numpy(z["y"]), torch.from_numpy(z["g"]),
                                    list(cfg.class_names or cfg.chars), list(cfg.group_names), cfg.name,
                                    {"config_key": cfg.key(), "fonts": list(fonts), "cached": str(path)})
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache file is regenerated
    ds = render_synbols(cfg)
    import io

    buf = io.BytesIO()
    np.savez(buf, x=ds.x.numpy(), y=ds.y.numpy(), g=ds.g.numpy())
    atomic_write_bytes(path, buf.getvalue())
    return ds
