"""Augmentation on the device: ``fit``'s per-batch crop / flip and FairAT's hard-example copies.

Everything works on float ``[B, C, H, W]`` batches where they already are (the GPU on CUDA) and draws from the
global RNG of that device, which ``fit`` seeds per epoch (``fralkit.runtime.epoch_seed``).

**FairAT's choices.** Only the abstract of the FairAT paper survives: hard examples are those with the highest
cross-entropy, and making them more diverse by augmentation narrows the class-wise robustness gap. Here the top
``hard_frac`` of a batch by cross-entropy (``select_hard``) get one augmented copy each (``augment_hard``): a
pad-and-random-crop, a horizontal flip only when asked (never for glyphs: a flip turns b into d), and ``cutout``
(DeVries & Taylor 2017, a grey square of side ``strength`` x image side) or ``cutmix`` (Yun et al. 2019, the
square pasted from another example and the label mixed by area) or ``none`` (plain duplicates).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["AUGMENTATIONS", "HARD_AUGMENTATIONS", "CUTOUT_FILL", "augment_batch", "random_crop", "random_flip",
           "cutout", "cutmix", "select_hard", "augment_hard"]

AUGMENTATIONS = ("none", "crop", "crop+flip")
HARD_AUGMENTATIONS = ("cutout", "cutmix", "none")
CUTOUT_FILL = 0.5  # grey: the zero of a normalised image, as in DeVries & Taylor's cutout


def augment_batch(x: torch.Tensor, augment: str, crop_pad: int) -> torch.Tensor:
    """``fit``'s training augmentation of a batch: ``"none"``, ``"crop"`` (reflection pad by ``crop_pad`` pixels,
    random crop) or ``"crop+flip"`` (and a random horizontal flip)."""
    if augment == "none":
        return x
    x = random_crop(x, crop_pad)
    return random_flip(x) if augment == "crop+flip" else x


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad by ``pad`` pixels (reflection) and crop back to the input size at a random offset per image.

    Args:
        x: ``[B, C, H, W]`` float images (any device; randomness from the global RNG of ``x.device``).
        pad: padding in pixels; 0 returns ``x``.
    """
    if pad <= 0 or x.shape[0] == 0:
        return x
    b, _, h, w = x.shape
    pad = min(int(pad), h - 1, w - 1)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = ox[:, None] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices around a slice put the indexed dims first: [B, H, W, C] -> a channels_last view.
    return xp[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Horizontal flip of each image with probability ``p``. Never on glyphs (b <-> d)."""
    if x.shape[0] == 0 or p <= 0:
        return x
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _square_mask(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Bool ``[B, 1, H, W]``: one square of side ``round(strength * H)`` per image at a uniform random centre,
    clipped at the border (DeVries & Taylor 2017)."""
    b, _, h, w = x.shape
    side = int(round(float(strength) * h))
    if side <= 0:
        return torch.zeros(b, 1, h, w, dtype=torch.bool, device=x.device)
    cy = torch.randint(0, h, (b,), device=x.device)
    cx = torch.randint(0, w, (b,), device=x.device)
    r = torch.arange(h, device=x.device)[None, :] - (cy[:, None] - side // 2)
    c = torch.arange(w, device=x.device)[None, :] - (cx[:, None] - side // 2)
    in_r = (r >= 0) & (r < side)
    in_c = (c >= 0) & (c < side)
    return (in_r[:, :, None] & in_c[:, None, :])[:, None]


def cutout(x: torch.Tensor, strength: float = 0.5, fill: float = CUTOUT_FILL) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): a square of side ``strength`` x image side set to ``fill``."""
    if x.shape[0] == 0:
        return x
    return torch.where(_square_mask(x, strength), torch.full_like(x, fill), x)


def cutmix(x: torch.Tensor, target: torch.Tensor, x_other: torch.Tensor, target_other: torch.Tensor,
           strength: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019) with a fixed patch side: paste a square of side ``strength`` x image side from
    ``x_other`` and mix the label distributions by the pasted area.

    Args:
        x, x_other: ``[B, C, H, W]``.
        target, target_other: class probabilities ``[B, C]``.
    """
    if x.shape[0] == 0:
        return x, target
    mask = _square_mask(x, strength)
    lam = mask.flatten(1).float().mean(1, keepdim=True)  # the share actually pasted (clipped at borders)
    return torch.where(mask, x_other, x), (1 - lam) * target + lam * target_other



def select_hard(ce: torch.Tensor, frac: float) -> torch.Tensor:
    """Indices of the ``ceil(frac * B)`` examples with the highest cross-entropy (FairAT's hard examples),
    highest first. ``ce``: per-example losses ``[B]``."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"hard_frac must lie in [0, 1], got {frac}")
    k = min(ce.shape[0], math.ceil(frac * ce.shape[0] - 1e-9))
    return ce.topk(k).indices if k > 0 else torch.empty(0, dtype=torch.long, device=ce.device)


def augment_hard(x: torch.Tensor, target: torch.Tensor, *, kind: str = "cutout", strength: float = 0.5,
                 crop_pad: int = 4, flip: bool = False, x_pool: torch.Tensor | None = None,
                 target_pool: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented copy of each hard example (FairAT's diversity augmentation; choices in the module docstring).

    Args:
        x: hard examples ``[k, C, H, W]``.
        target: their class probabilities ``[k, C]``.
        kind: ``"cutout"``, ``"cutmix"`` or ``"none"`` (crop / flip only).
        strength: side of the cut square as a fraction of the image side.
        crop_pad: padding of the random crop in pixels (0: no crop).
        flip: random horizontal flips (off by default: never for glyphs).
        x_pool, target_pool: where CutMix takes its patches from (default: the hard examples themselves).

    Returns:
        ``(x_aug [k, C, H, W], target_aug [k, C])``.
    """
    if kind not in HARD_AUGMENTATIONS:
        raise ValueError(f"unknown hard-example augmentation {kind!r}; valid: {list(HARD_AUGMENTATIONS)}")
    xa = random_crop(x, crop_pad)
    if flip:
        xa = random_flip(xa)
    if kind == "cutout":
        xa = cutout(xa, strength)
    elif kind == "cutmix":
        pool_x = x if x_pool is None else x_pool
        pool_t = target if target_pool is None else target_pool
        pick = torch.randint(0, pool_x.shape[0], (xa.shape[0],), device=x.device)
        xa, target = cutmix(xa, target, pool_x[pick], pool_t[pick], strength)
    return xa, target
