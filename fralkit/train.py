"""One ``fit`` with pluggable objectives: standard, PGD-AT, TRADES, FairAT and GRAD (gradient reversal).

| objective | loss on a mini-batch ``(x, y)`` | paper |
|---|---|---|
| ``standard`` | ``CE(f(x), y)`` | |
| ``pgd_at`` | ``CE(f(x'), y)``, ``x'`` = PGD-CE from a uniform start in the eps-ball | Madry et al. 2018, Eq. 2.1 |
| ``trades`` | ``CE(f(x), y) + beta KL(p(x) || p(x'))``, ``x'`` = PGD-KL from ``x + 0.001 N(0, 1)`` | Zhang et al. 2019, Eq. 5 |
| ``fairat`` | the base adversarial loss on the batch plus augmented copies of its highest-CE examples | Mou et al. 2025 (FairAT), abstract |
| ``grad`` | ``CE(class) + w CE(group)`` through a gradient-reversal head (``model.forward_with_group``) | paper 004, GRAD |

The threat model defaults to the JIN paper's (PGD-5, L-inf eps 4/255, step 2/255, §4.1), with TRADES' beta 6.
The attack runs with the model in eval mode (batch-norm running statistics), the training forward in train
mode, as in TRADES' reference code.

**FairAT choices.** Only the abstract of the FairAT paper survives: hard examples are those with the
highest cross-entropy, and making them more diverse by augmentation narrows the class-wise robustness gap.
The rest is open, so it is a parameter here: per batch the top ``hard_frac`` (default 0.2) examples by
cross-entropy (``hard_by="adv"``: on their adversarial examples, the robustness notion of hard; or
``"clean"``) get one augmented copy each, made of a pad-and-random-crop (``crop_pad`` pixels, default
image size / 8), a horizontal flip only when ``flip=True`` (never for glyphs: a flip turns b into d), and
``hard_aug="cutout"`` (a square of side ``hard_aug_strength`` x image side filled with grey; DeVries &
Taylor 2017 use 16 px of 32, i.e. 0.5) or ``"cutmix"`` (the square is pasted from another example of the
batch and the label mixed by area) or ``"none"`` (plain duplicates: hard-example re-weighting only). The
copies are attacked and trained on with the base objective (``base="trades"`` by default, as the JIN
setting trains with TRADES; ``"pgd_at"`` for Madry's loss).

**Speed.** On CUDA: the data set lives on the GPU and batches are gathered by index; augmentation runs
on the GPU; bf16 autocast; channels_last; a fused optimizer; losses and accuracies accumulate on the device
and are read once per epoch (no host-device sync in the inner loop). The attack runs on a ``FoldedTwin``: an
eval-mode copy with batch norm folded into the convolutions (bf16 weights under autocast), refreshed from the
model after every step with multi-tensor kernels (``fold_bn=True``). Options: ``cuda_graph=True`` captures the
fixed-shape PGD loop as one CUDA graph (replayed per batch; other shapes run eagerly); ``compile=True`` wraps
the model and the twin in ``torch.compile``. Both default off and are ignored on CPU, which trains in fp32.
``benchmarks/trades_throughput.py`` times a TRADES epoch against a plain fp32 reference loop.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks.pgd import pgd
from .data.core import GroupDataset, to_float
from .utils import atomic_torch_save, load_checkpoint, progress, resolve_device

__all__ = [
    "fit", "FitResult", "FoldedTwin", "Objective", "OBJECTIVES", "OPTIMIZERS", "SCHEDULES", "AUGMENTATIONS", "HARD_AUGMENTATIONS",
    "standard_loss", "pgd_at_loss", "trades_loss", "fairat_loss", "grad_loss",
    "select_hard", "augment_hard", "random_crop", "random_flip", "cutout", "cutmix",
    "class_balanced_indices", "lr_at",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
AUGMENTATIONS = ("none", "crop", "crop+flip")
HARD_AUGMENTATIONS = ("cutout", "cutmix", "none")
CUTOUT_FILL = 0.5  # grey: the zero of a normalised image, as in DeVries & Taylor's cutout


# ------------------------------------------------------------------------------------------ GPU augmentation
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


# ------------------------------------------------------------------------------------------ losses
def standard_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy ``CE(f(x), y)``; returns ``(loss, logits)``. ``y``: labels ``[B]`` or probabilities ``[B, C]``."""
    logits = model(x)
    return F.cross_entropy(logits.float(), y), logits


def pgd_at_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 4 / 255, alpha: float = 2 / 255,
                steps: int = 5, x_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD adversarial training (Madry et al. 2018, Eq. 2.1): ``CE(f(x'), y)`` with ``x'`` the PGD-CE attack from a
    uniform random start (eval mode during the attack). Returns ``(loss, adversarial logits)``.

    Args:
        x_adv: a given perturbed input (skips the attack; for tests and for callers that attack themselves).
    """
    if x_adv is None:
        x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, loss="ce", random_start="uniform")
    logits_adv = model(x_adv)
    return F.cross_entropy(logits_adv.float(), y), logits_adv


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 4 / 255, alpha: float = 2 / 255,
                steps: int = 5, beta: float = 6.0, x_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The TRADES loss (Zhang et al. 2019, Eq. 5, as in their reference code)::

        L = CE(f(x), y) + beta * (1/B) sum_i KL( softmax f(x_i) || softmax f(x'_i) )

    with ``x'`` the inner maximisation: PGD on ``KL(p(x) || p(x'))`` from ``x + 0.001 N(0, 1)``, ``steps`` sign
    steps of ``alpha``, projected to the eps-ball and [0, 1], the model in eval mode (restored afterwards).
    The natural branch is not detached inside the KL.

    Args:
        model: classifier (its mode is used for the two training forwards; train mode in ``fit``).
        x: clean inputs ``[B, C, H, W]`` in [0, 1].
        y: labels ``[B]`` or class probabilities ``[B, C]``.
        eps, alpha, steps: the attack (JIN §4.1: 4/255, 2/255, 5; TRADES CIFAR-10: 0.031, 0.007, 10).
        beta: weight of the robust KL term (6 in TRADES).
        x_adv: a given ``x'`` (skips the attack): makes the loss a plain function of ``(x, x', y)``.

    Returns:
        ``(loss, logits)``: the scalar loss (fp32) and the natural logits ``f(x)``.
    """
    if x_adv is None:
        x_adv = pgd(model, x, eps=eps, alpha=alpha, steps=steps, loss="kl", random_start="normal")
    logits = model(x)
    logits_adv = model(x_adv)
    nat = logits.float()
    natural = F.cross_entropy(nat, y)
    # KL(p || q) with the target given as log p: the same value as kl_div(log q, p), but its gradient through the
    # (not detached) natural branch stays finite when some p underflows to exactly 0 (large logit gaps, easily
    # reached in bf16 by a net without batch norm such as LeNet-5): d(p log p)/dp = log p + 1 is -inf at p = 0,
    # and -inf * 0 from the softmax Jacobian is NaN, which poisons every weight in one step.
    robust = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.log_softmax(nat, dim=1), reduction="sum",
                      log_target=True) / x.shape[0]
    return natural + beta * robust, logits


def grad_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, *,
              group_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """GRAD (paper 004): ``CE(class) + group_weight * CE(group)`` through ``model.forward_with_group(x)``.

    The gradient-reversal layer inside ``fralkit.models.GRADModel(lambd=...)`` multiplies the group loss'
    gradient by ``-lambd`` before it reaches the features, so the trunk unlearns the group while the group head
    learns it; ``group_weight`` (default 1) scales the group loss as a whole. Returns ``(loss, class logits)``.
    """
    if not hasattr(model, "forward_with_group"):
        raise ValueError("objective 'grad' needs a model with forward_with_group(x) -> (class_logits, group_logits); "
                         "wrap the classifier in fralkit.models.GRADModel")
    logits, group_logits = model.forward_with_group(x)
    loss = F.cross_entropy(logits.float(), y) + group_weight * F.cross_entropy(group_logits.float(), g)
    return loss, logits


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


@torch.no_grad()
def _eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    try:
        return model(x).float()
    finally:
        model.train(was)


def fairat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 4 / 255, alpha: float = 2 / 255,
                steps: int = 5, beta: float = 6.0, hard_frac: float = 0.2, hard_by: str = "adv",
                hard_aug: str = "cutout", hard_aug_strength: float = 0.5, crop_pad: int | None = None,
                flip: bool = False, base: str = "trades", num_classes: int | None = None,
                attack: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """FairAT (paper 003, abstract): adversarial training on the batch plus augmented copies of its hard examples.

    Per batch: rank the examples by cross-entropy (``hard_by="adv"``: of their adversarial examples under the base
    attack; ``"clean"``: of the clean inputs; both in eval mode), take the top ``hard_frac`` as hard examples
    (``select_hard``), add one augmented copy of each (``augment_hard``), attack the copies, and apply the base
    adversarial loss to the enlarged batch. See the module docstring for the choices and their defaults.

    Args:
        x, y: the mini-batch ``[B, C, H, W]``, labels ``[B]``.
        eps, alpha, steps, beta: the base objective's threat model and TRADES weight.
        base: ``"trades"`` or ``"pgd_at"``.
        num_classes: number of classes (default: from one eval forward of ``x[:1]``).
        attack: replaces the base attack ``(model, x, target) -> x_adv`` (``fit`` passes its CUDA-graphed one).

    Returns:
        ``(loss, logits [B + k, C], labels [B + k], hard [k])``: the logits the loss trains on, the hard labels for
        accuracy (argmax of the mixed targets), and the indices of the hard examples in the batch.
    """
    if base not in ("trades", "pgd_at"):
        raise ValueError(f"FairAT base objective must be 'trades' or 'pgd_at', got {base!r}")
    if hard_by not in ("adv", "clean"):
        raise ValueError(f"hard_by must be 'adv' or 'clean', got {hard_by!r}")
    if attack is None:
        def attack(m, xx, t):
            if base == "trades":
                return pgd(m, xx, eps=eps, alpha=alpha, steps=steps, loss="kl", random_start="normal")
            return pgd(m, xx, t, eps=eps, alpha=alpha, steps=steps, loss="ce", random_start="uniform")
    target = y
    if y.ndim == 1:
        if num_classes is None:
            num_classes = _eval_logits(model, x[:1]).shape[1]
        target = F.one_hot(y, num_classes).float()
    pad = max(1, x.shape[-1] // 8) if crop_pad is None else int(crop_pad)

    x_adv = attack(model, x, target) if hard_by == "adv" else None
    ce = F.cross_entropy(_eval_logits(model, x_adv if x_adv is not None else x), target, reduction="none")
    hard = select_hard(ce, hard_frac)
    xh, th = augment_hard(x[hard], target[hard], kind=hard_aug, strength=hard_aug_strength, crop_pad=pad, flip=flip,
                          x_pool=x, target_pool=target)
    x_all, t_all = torch.cat([x, xh]), torch.cat([target, th])
    if x_adv is not None:
        x_adv_all = torch.cat([x_adv, attack(model, xh, th)])
    else:
        x_adv_all = attack(model, x_all, t_all)
    if base == "trades":
        loss, logits = trades_loss(model, x_all, t_all, beta=beta, x_adv=x_adv_all)
    else:
        loss, logits = pgd_at_loss(model, x_all, t_all, x_adv=x_adv_all)
    return loss, logits, t_all.argmax(1), hard


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Objective:
    """A training objective: its per-batch step, its own options with defaults, and the paper it follows."""

    name: str
    step: Callable
    options: dict = field(default_factory=dict)
    about: str = ""


def _step_standard(model, x, y, g, hp, opts):
    loss, logits = standard_loss(model, x, y)
    return loss, logits, y


def _step_pgd_at(model, x, y, g, hp, opts):
    x_adv = hp["attack"](model, x, y) if hp.get("attack") else None
    loss, logits = pgd_at_loss(model, x, y, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"], x_adv=x_adv)
    return loss, logits, y


def _step_trades(model, x, y, g, hp, opts):
    x_adv = hp["attack"](model, x, y) if hp.get("attack") else None
    loss, logits = trades_loss(model, x, y, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"], beta=hp["beta"],
                               x_adv=x_adv)
    return loss, logits, y


def _step_fairat(model, x, y, g, hp, opts):
    loss, logits, labels, _ = fairat_loss(model, x, y, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"],
                                          beta=hp["beta"], attack=hp.get("attack"),
                                          num_classes=hp.get("num_classes"), **opts)
    return loss, logits, labels


def _step_grad(model, x, y, g, hp, opts):
    loss, logits = grad_loss(model, x, y, g, **opts)
    return loss, logits, y


OBJECTIVES: dict[str, Objective] = {
    "standard": Objective("standard", _step_standard, {}, "cross-entropy on clean inputs"),
    "pgd_at": Objective("pgd_at", _step_pgd_at, {}, "Madry et al. 2018: CE on PGD-CE examples"),
    "trades": Objective("trades", _step_trades, {}, "Zhang et al. 2019: CE + beta KL(p(x) || p(x'))"),
    "fairat": Objective("fairat", _step_fairat,
                        {"hard_frac": 0.2, "hard_by": "adv", "hard_aug": "cutout", "hard_aug_strength": 0.5,
                         "crop_pad": None, "flip": False, "base": "trades"},
                        "FairAT (paper 003): base AT loss + augmented copies of the highest-CE examples"),
    "grad": Objective("grad", _step_grad, {"group_weight": 1.0},
                      "paper 004 GRAD: CE(class) + w CE(group) through a gradient-reversal head"),
}

# Objectives whose attack ``fit`` may replace with a CUDA-graphed one, and that attack's PGD settings.
_ATTACK_OF = {"pgd_at": ("ce", "uniform"), "trades": ("kl", "normal")}


# ------------------------------------------------------------------------------------------ schedule, sampling
def lr_at(step: int, total: int, *, lr: float, schedule: str = "cosine", warmup: int = 0) -> float:
    """Learning rate at optimisation step ``step`` of ``total``.

    ``constant``; ``cosine`` (to 0 at the end); ``step`` (x0.1 at 75 % and again at 90 % of training, TRADES'
    CIFAR-10 schedule of epochs 75 / 90 of 100); ``onecycle`` (linear up for the first 25 %, then linearly to 0).
    ``warmup`` steps of linear warm-up come first for every schedule except ``onecycle``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
    total = max(1, int(total))
    if schedule == "onecycle":
        peak = max(1, int(0.25 * total))
        return lr * (step + 1) / peak if step < peak else lr * max(0.0, (total - step) / max(1, total - peak))
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return lr * (0.01 if t >= 0.9 else 0.1 if t >= 0.75 else 1.0)


def class_balanced_indices(y: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random oversampling (the HAM10000 protocol of the JIN paper, §4.1): every class of ``idx`` is topped up,
    by drawing its examples again with replacement, to the size of the largest class; all originals are kept.

    Args:
        y: labels of the whole data set ``[N]`` (CPU).
        idx: the training indices ``[n]`` (CPU).
    Returns:
        Indices ``[C_present * max_count]``, unshuffled.
    """
    yi = y[idx]
    classes, counts = torch.unique(yi, return_counts=True)
    top = int(counts.max()) if len(counts) else 0
    parts = []
    for c, n in zip(classes.tolist(), counts.tolist()):
        members = idx[yi == c]
        extra = members[torch.randint(0, n, (top - n,), generator=generator)] if top > n else members[:0]
        parts.append(torch.cat([members, extra]))
    return torch.cat(parts) if parts else idx


# ------------------------------------------------------------------------------------------ fit
@dataclass
class FitResult:
    """What ``fit`` returns: per-epoch history and wall time.

    Attributes:
        history: per-epoch lists: ``loss`` (mean training loss), ``acc`` (training accuracy of the logits the
            objective trains on: clean for standard / TRADES / GRAD, adversarial for PGD-AT, clean + copies
            for FairAT), ``lr`` (at the epoch's end), ``seconds``; with ``val``: ``val_acc`` (and ``val_rob_acc``).
        seconds: wall time of the epochs run by this call.
        epochs: epochs completed in total (including those restored from a checkpoint).
        objective: the objective's name.
        images: training images processed by this call (copies included), for throughput.
    """

    history: dict[str, list[float]]
    seconds: float
    epochs: int = 0
    objective: str = ""
    images: int = 0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _make_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float, weight_decay: float,
                    nesterov: bool, device: torch.device) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {list(OPTIMIZERS)} or a torch.optim.Optimizer")
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    if name == "sgd":
        try:
            return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                   nesterov=nesterov and momentum > 0, **fused)
        except (TypeError, RuntimeError):  # torch without fused SGD
            return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                   nesterov=nesterov and momentum > 0)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, **fused)
    except (TypeError, RuntimeError):
        return cls(params, lr=lr, weight_decay=weight_decay)


class _GraphedAttack:
    """The fixed-shape PGD loop of one objective captured as a CUDA graph (one per batch shape).

    Parameters and batch-norm buffers are read in place, so optimiser updates are seen by every replay; the
    random start draws from the CUDA generator, which advances on each replay. Other shapes run eagerly.
    """

    def __init__(self, loss: str, start: str, eps: float, alpha: float, steps: int, amp: bool):
        self.kw = dict(eps=eps, alpha=alpha, steps=steps, loss=loss, random_start=start)
        self.amp = amp
        self.graphs: dict = {}

    def _run(self, model, x, t):
        with _autocast(x.device, self.amp, cache=False):
            return pgd(model, x, t if self.kw["loss"] == "ce" else None, **self.kw)

    def __call__(self, model, x, t):
        key = (tuple(x.shape), tuple(t.shape), t.dtype)
        if key not in self.graphs:
            if len(self.graphs) >= 2:  # the full batch shape and one more; anything else runs eagerly
                return self._run(model, x, t)
            sx, st = x.detach().clone(), t.detach().clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._run(model, sx, st)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._run(model, sx, st)
            self.graphs[key] = (graph, sx, st, out)
        graph, sx, st, out = self.graphs[key]
        sx.copy_(x)
        st.copy_(t)
        graph.replay()
        return out.clone()


class FoldedTwin:
    """An attack-only, eval-mode copy of ``model`` with batch norm folded into the convolutions before it.

    PGD runs the model in eval mode, where ``BatchNorm2d`` is a fixed per-channel affine map. Every batch-norm
    layer that directly follows a ``Conv2d`` inside an ``nn.Sequential`` (MobileNetV2's and ResNet's
    conv-BN blocks, ``small_cnn``) is folded into that convolution (``w' = w * s``, ``b' = (b - mu) * s + beta``,
    ``s = gamma / sqrt(var + eps)``) and replaced by ``Identity``: the attack's forward and backward passes skip
    those layers. ``refresh()`` copies the model's current weights and running statistics into the twin with a
    few multi-tensor kernels (no host sync); call it after every optimiser step. The twin's parameters need no
    gradient (PGD needs the input gradient only). With ``dtype=torch.bfloat16`` the conv and linear weights are
    kept in bf16, so autocast does not cast them again on every forward.

    Args:
        model: the classifier being trained (not modified).
        dtype: storage type of the twin's conv / linear weights (``None``: as the model's).

    Attributes:
        module: the twin ``nn.Module`` (call it like the model).
        folded: number of folded conv-BN pairs.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None):
        import copy

        twin = copy.deepcopy(model).eval()
        for p in twin.parameters():
            p.requires_grad_(False)
        src_mod = dict(model.named_modules())
        self._convs, self._bns, self._dst_w, self._dst_b = [], [], [], []
        folded_names: set[str] = set()
        edits = []
        for name, seq in twin.named_modules():
            if not isinstance(seq, nn.Sequential):
                continue
            kids = list(seq.named_children())
            for (n1, a), (n2, b) in zip(kids, kids[1:]):
                if (type(a) is nn.Conv2d and type(b) is nn.BatchNorm2d and b.affine and b.track_running_stats
                        and b.running_var is not None and a.out_channels == b.num_features):
                    edits.append((name, seq, n1, a, n2))
        for name, seq, n1, conv, n2 in edits:
            prefix = f"{name}." if name else ""
            self._convs.append(src_mod[prefix + n1])
            self._bns.append(src_mod[prefix + n2])
            setattr(seq, n2, nn.Identity())
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device,
                                                     dtype=conv.weight.dtype), requires_grad=False)
            self._dst_w.append(conv.weight)
            self._dst_b.append(conv.bias)
            folded_names.update({prefix + n1 + ".weight", prefix + n1 + ".bias"})
        if dtype is not None:  # Module.to keeps the Parameter objects: the references above stay valid
            for m in twin.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.to(dtype)
        src = dict(model.named_parameters())
        src.update(dict(model.named_buffers()))
        pairs = [(src[n], t) for n, t in list(twin.named_parameters()) + list(twin.named_buffers())
                 if n not in folded_names and n in src]
        self._copy_src = [s for s, _ in pairs]
        self._copy_dst = [d for _, d in pairs]
        self.module = twin
        self.folded = len(self._convs)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the model's current weights into the twin, folding each batch norm into its convolution."""
        if self._copy_dst:
            torch._foreach_copy_(self._copy_dst, self._copy_src)
        if not self._convs:
            return
        bns = self._bns
        scale = torch._foreach_add([b.running_var for b in bns], [float(b.eps) for b in bns])
        torch._foreach_rsqrt_(scale)
        torch._foreach_mul_(scale, [b.weight for b in bns])
        shift = torch._foreach_sub([b.bias for b in bns], torch._foreach_mul([b.running_mean for b in bns], scale))
        biased = [i for i, c in enumerate(self._convs) if c.bias is not None]
        if biased:
            torch._foreach_addcmul_([shift[i] for i in biased], [self._convs[i].bias for i in biased],
                                    [scale[i] for i in biased])
        weights = torch._foreach_mul([c.weight for c in self._convs], [v.view(-1, 1, 1, 1) for v in scale])
        torch._foreach_copy_(self._dst_w, weights)
        torch._foreach_copy_(self._dst_b, shift)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _autocast(device: torch.device, amp: bool, cache: bool = True):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**31 - 1)


@torch.no_grad()
def _accuracy(model: nn.Module, data: GroupDataset, *, batch_size: int, amp: bool, channels_last: bool,
              attack_kw: dict | None = None) -> float:
    was = model.training
    model.eval()
    correct, n = torch.zeros((), device=data.device), 0
    try:
        for start in range(0, len(data), batch_size):
            b = torch.arange(start, min(start + batch_size, len(data)), device=data.device)
            x, y = to_float(data.x[b]), data.y[b]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(x.device, amp):
                if attack_kw is not None:
                    with torch.enable_grad():
                        x = pgd(model, x, y, **attack_kw)
                correct += (model(x).argmax(1) == y).sum()
            n += len(b)
    finally:
        model.train(was)
    return float(correct) / max(1, n)


def fit(
    model: nn.Module,
    data: GroupDataset,
    *,
    idx: torch.Tensor | Sequence[int] | np.ndarray | None = None,
    objective: str = "standard",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 0.1,
    optimizer: str | torch.optim.Optimizer = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    eps: float = 4 / 255,
    alpha: float = 2 / 255,
    steps: int = 5,
    beta: float = 6.0,
    augment: str = "none",
    oversample: bool = False,
    grad_clip: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint: str | Path | None = None,
    amp: bool = True,
    channels_last: bool = True,
    compile: bool = False,
    cuda_graph: bool = False,
    fold_bn: bool = True,
    cudnn_benchmark: bool = True,
    val: GroupDataset | None = None,
    val_robust: bool = False,
    show_progress: bool = True,
    **objective_options,
) -> FitResult:
    """Train ``model`` in place on ``data`` (or its subset ``idx``) with one of ``OBJECTIVES``.

    Args:
        model: classifier on [0, 1] inputs (``fralkit.models``); for ``"grad"`` a ``GRADModel``.
        data: the training set; moved to ``device`` once (keep it there between calls).
        idx: indices (or a bool mask) of the examples to train on; default all.
        objective: ``"standard"``, ``"pgd_at"``, ``"trades"``, ``"fairat"`` or ``"grad"`` (module docstring).
        epochs: passes over ``idx`` (over the oversampled set with ``oversample``).
        batch_size: examples per step (FairAT adds its copies on top).
        lr: peak learning rate.
        optimizer: ``"sgd"`` (momentum, optional Nesterov), ``"adam"``, ``"adamw"``, or an existing optimiser over
            the model's parameters (kept across calls, e.g. for fine-tuning; its lr is driven by ``schedule``).
        momentum, weight_decay, nesterov: optimiser settings (TRADES' CIFAR-10 recipe: 0.9, 2e-4).
        schedule: ``"cosine"`` (default), ``"constant"``, ``"step"`` (x0.1 at 75 % and 90 %) or ``"onecycle"``,
            stepped per batch (``lr_at``).
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        eps, alpha, steps: the L-inf PGD threat model of the adversarial objectives (JIN §4.1 by default).
        beta: TRADES' weight of the KL term (also FairAT with ``base="trades"``).
        augment: training augmentation of every batch, on the device: ``"none"``, ``"crop"`` (pad 1/8 of the
            image side, random crop) or ``"crop+flip"`` (not for glyph data: a flip turns b into d).
        oversample: class-balanced random oversampling each epoch (the JIN paper's HAM10000 protocol).
        grad_clip: clip the gradient's global L2 norm (GRAD's public code uses 5); ``None``: no clipping.
        seed: fixes batch order, augmentation and attack noise (each epoch is seeded from ``(seed, epoch)``, so a
            resumed run continues exactly).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; the model and data are moved there.
        checkpoint: a ``.pt`` file written atomically after every epoch (model, optimiser, history); if it
            exists and matches this run, training resumes from it (a finished one returns at once).
        amp: bf16 autocast on CUDA (ignored on CPU, which trains in fp32).
        channels_last: channels_last memory format on CUDA.
        compile: wrap the model in ``torch.compile`` on CUDA (off by default; ignored on CPU).
        cuda_graph: capture the PGD inner loop of ``pgd_at`` / ``trades`` / ``fairat`` as a CUDA graph (off by default).
        fold_bn: attack a ``FoldedTwin`` of the model (batch norm folded into the convolutions, refreshed after
            every step) instead of the model itself: the same attack with fewer layers.
        cudnn_benchmark: let cuDNN time its algorithms for every new input shape during this call (CUDA only;
            the previous setting is restored on return). It pays off when the shapes stay fixed; a caller whose
            batch shapes change from call to call (the FRAL loop, where |D_L| grows every round) pays seconds per
            new shape instead.
        val: a held-out set whose clean accuracy is recorded every epoch (``val_acc``); ``val_robust`` adds the
            PGD accuracy under the same threat model (``val_rob_acc``).
        show_progress: one tqdm bar over all batches (``fralkit.utils.progress``).
        **objective_options: the objective's own options, see ``OBJECTIVES[name].options`` (FairAT: ``hard_frac``,
            ``hard_by``, ``hard_aug``, ``hard_aug_strength``, ``crop_pad``, ``flip``, ``base``; GRAD: ``group_weight``).

    Returns:
        ``FitResult`` with per-epoch ``history`` and the wall time.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {sorted(OBJECTIVES)}")
    obj = OBJECTIVES[objective]
    unknown = sorted(set(objective_options) - set(obj.options))
    if unknown:
        raise ValueError(f"objective {objective!r} takes no option(s) {unknown}; its options: {sorted(obj.options) or 'none'}")
    opts = {**obj.options, **objective_options}
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; valid: {list(AUGMENTATIONS)}")
    if not isinstance(optimizer, torch.optim.Optimizer) and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: {list(OPTIMIZERS)} or a torch.optim.Optimizer")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
    if epochs < 0 or batch_size <= 0:
        raise ValueError(f"epochs must be >= 0 and batch_size > 0, got epochs={epochs}, batch_size={batch_size}")
    if not isinstance(data, GroupDataset):
        raise ValueError(f"fit expects a fralkit.data.GroupDataset, got {type(data).__name__}")

    dev = resolve_device(device)
    on_cuda = dev.type == "cuda"
    amp = bool(amp and on_cuda)
    channels_last = bool(channels_last and on_cuda)
    if data.device != dev:
        data = data.to(dev)
    if val is not None and val.device != dev:
        val = val.to(dev)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if (compile and on_cuda) else model

    if idx is None:
        base_idx = torch.arange(len(data))
    else:
        base_idx = torch.as_tensor(idx).cpu()
        if base_idx.dtype == torch.bool:
            base_idx = base_idx.nonzero().flatten()
        base_idx = base_idx.long()
    if len(base_idx) == 0:
        raise ValueError("fit: the training index set is empty")
    y_cpu = data.y.cpu()
    n_epoch = len(class_balanced_indices(y_cpu, base_idx)) if oversample else len(base_idx)
    batches_per_epoch = math.ceil(n_epoch / batch_size)
    if n_epoch % batch_size == 1 and batches_per_epoch > 1:
        batches_per_epoch -= 1  # a last batch of one image breaks batch norm in train mode: drop it
    total_steps = max(1, epochs * batches_per_epoch)
    warmup = int(round(warmup_epochs * batches_per_epoch))

    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else _make_optimizer(
        model, optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, device=dev)

    hp = {"eps": eps, "alpha": alpha, "steps": steps, "beta": beta, "attack": None, "num_classes": data.num_classes}
    twin = None
    if objective in ("pgd_at", "trades", "fairat"):
        attack_loss, start = _ATTACK_OF[opts["base"] if objective == "fairat" else objective]
        attack_net = net
        if fold_bn:
            candidate = FoldedTwin(model, dtype=torch.bfloat16 if amp else None)
            if candidate.folded:
                twin = candidate
                attack_net = torch.compile(twin.module) if (compile and on_cuda) else twin.module
        if cuda_graph and on_cuda:
            graphed = _GraphedAttack(attack_loss, start, eps, alpha, steps, amp)
            hp["attack"] = lambda m, x, t: graphed(attack_net, x, t)
        elif twin is not None:
            hp["attack"] = lambda m, x, t: pgd(attack_net, x, t if attack_loss == "ce" else None, eps=eps, alpha=alpha,
                                               steps=steps, loss=attack_loss, random_start=start)

    history: dict[str, list[float]] = {"loss": [], "acc": [], "lr": [], "seconds": []}
    if val is not None:
        history["val_acc"] = []
        if val_robust:
            history["val_rob_acc"] = []
    start_epoch = 0
    run_key = {"objective": objective, "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
               "seed": int(seed), "n": int(len(base_idx)), "eps": float(eps), "steps": int(steps), "beta": float(beta)}
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=dev)
        if state.get("run") != run_key:
            raise ValueError(f"checkpoint {checkpoint} belongs to another run ({state.get('run')}, this one {run_key}); "
                             "delete it or pass another path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = {k: list(v) for k, v in state["history"].items()}
        start_epoch = int(state["epoch"])

    crop_pad = max(1, data.image_size // 8)
    images = 0
    t0 = time.perf_counter()
    bar = progress(total=(epochs - start_epoch) * batches_per_epoch, desc=f"fit {objective}", leave=False,
                   disable=None if show_progress else True)
    model.train()
    benchmark_before = torch.backends.cudnn.benchmark
    if on_cuda:
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    try:
        for epoch in range(start_epoch, epochs):
            t_epoch = time.perf_counter()
            torch.manual_seed(_epoch_seed(seed, epoch))
            gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
            order = class_balanced_indices(y_cpu, base_idx, gen) if oversample else base_idx
            order = order[torch.randperm(len(order), generator=gen)].to(dev, non_blocking=True)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev)
            seen = 0
            for i in range(batches_per_epoch):
                b = order[i * batch_size:(i + 1) * batch_size]
                x = to_float(data.x[b])
                y, g = data.y[b], data.g[b]
                if augment != "none":
                    x = random_crop(x, crop_pad)
                    if augment == "crop+flip":
                        x = random_flip(x)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                step = epoch * batches_per_epoch + i
                cur_lr = lr_at(step, total_steps, lr=lr, schedule=schedule, warmup=warmup)
                for group in opt.param_groups:
                    group["lr"] = cur_lr
                if twin is not None:
                    twin.refresh()
                with _autocast(dev, amp):
                    loss, logits, labels = obj.step(net, x, y, g, hp, opts)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
                m = labels.shape[0]
                loss_sum += loss.detach().float() * m
                correct += (logits.detach().argmax(1) == labels).sum()
                seen += m
                bar.update(1)
            images += seen
            history["loss"].append(float(loss_sum) / max(1, seen))
            history["acc"].append(float(correct) / max(1, seen))
            history["lr"].append(float(opt.param_groups[0]["lr"]))
            if val is not None:
                history["val_acc"].append(_accuracy(model, val, batch_size=1024, amp=amp, channels_last=channels_last))
                if val_robust:
                    history["val_rob_acc"].append(_accuracy(
                        model, val, batch_size=1024, amp=amp, channels_last=channels_last,
                        attack_kw={"eps": eps, "alpha": alpha, "steps": steps, "loss": "ce"}))
            history["seconds"].append(time.perf_counter() - t_epoch)
            bar.set_postfix(epoch=epoch + 1, loss=f"{history['loss'][-1]:.3f}", acc=f"{history['acc'][-1]:.3f}",
                            refresh=False)
            if checkpoint is not None:
                atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                                   "history": history, "run": run_key}, checkpoint)
    finally:
        bar.close()
        torch.backends.cudnn.benchmark = benchmark_before
    if on_cuda:
        torch.cuda.synchronize(dev)
    return FitResult(history=history, seconds=time.perf_counter() - t0, epochs=epochs, objective=objective,
                     images=images)
