"""The training objectives of ``fit``: one loss per paper, each behind a per-batch step in ``OBJECTIVES``.

| objective | loss on a mini-batch ``(x, y)`` | paper |
|---|---|---|
| ``standard`` | ``CE(f(x), y)`` | |
| ``pgd_at`` | ``CE(f(x'), y)``, ``x'`` = PGD-CE from a uniform start in the eps-ball | Madry et al. 2018, Eq. 2.1 |
| ``trades`` | ``CE(f(x), y) + beta KL(p(x) || p(x'))``, ``x'`` = PGD-KL from ``x + 0.001 N(0, 1)`` | Zhang et al. 2019, Eq. 5 |
| ``fairat`` | the base adversarial loss on the batch plus augmented copies of its highest-CE examples | Mou et al. 2025 (FairAT), abstract |
| ``grad`` | ``CE(class) + w CE(group)`` through a gradient-reversal head (``model.forward_with_group``) | BALD+GRAD (Branchaud-Charron et al.) |
| ``farmur`` | ``L_TRADES(b^vul) + L_CE(b^rob)`` on batches paired by ``PairedSampler`` | Mousavi et al. 2023, Eqs. 9-11 |

The threat model defaults to the JIN paper's (PGD-5, L-inf eps 4/255, step 2/255, §4.1), with TRADES' beta 6.
The attack runs with the model in eval mode (batch-norm running statistics), the training forward in train
mode, as in TRADES' reference code.

**FairAT choices** (see ``fralkit.train.augment``): per batch the top ``hard_frac`` (default 0.2) examples by
cross-entropy (``hard_by="adv"``: on their adversarial examples, the robustness notion of hard; or ``"clean"``)
get one augmented copy each: a pad-and-random-crop (``crop_pad`` pixels, default image size / 8), a horizontal
flip only when ``flip=True``, and ``hard_aug="cutout"`` (``hard_aug_strength`` x image side; DeVries & Taylor
use 16 px of 32, i.e. 0.5), ``"cutmix"`` or ``"none"`` (hard-example re-weighting only). The copies are attacked
and trained on with the base objective (``base="trades"`` by default, as the JIN setting trains with TRADES;
``"pgd_at"`` for Madry's loss).

**Adding an objective.** A step ``fn(model, x, y, g, hp, opts) -> Step(loss, logits, labels, logs)`` (``hp``:
the recipe's threat model ``eps``, ``alpha``, ``steps``, ``beta``, the engine's ``attack`` or None, and
``num_classes``; ``opts``: the objective's options with defaults) and one ``OBJECTIVES`` entry. ``logs`` are
0-d tensors that ``fit`` averages over the epoch's batches into ``FitResult.history``; ``sampler`` picks the
batches (``fralkit.train.samplers``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks.pgd import pgd
from ..runtime import eval_mode
from .augment import augment_hard, select_hard
from .samplers import epoch_sampler, paired_sampler

__all__ = ["Step", "Objective", "OBJECTIVES", "ATTACK_OF", "standard_loss", "pgd_at_loss", "trades_loss",
           "fairat_loss", "grad_loss", "farmur_loss"]


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
    """GRAD (BALD+GRAD, Branchaud-Charron et al.): ``CE(class) + group_weight * CE(group)`` through ``model.forward_with_group(x)``.

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


@torch.no_grad()
def _eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model(x).float()


def fairat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 4 / 255, alpha: float = 2 / 255,
                steps: int = 5, beta: float = 6.0, hard_frac: float = 0.2, hard_by: str = "adv",
                hard_aug: str = "cutout", hard_aug_strength: float = 0.5, crop_pad: int | None = None,
                flip: bool = False, base: str = "trades", num_classes: int | None = None,
                attack: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """FairAT (Mou et al., abstract): adversarial training on the batch plus augmented copies of its hard examples.

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


def farmur_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vulnerable: torch.Tensor, *, eps: float,
                alpha: float, steps: int, beta: float) -> tuple[torch.Tensor, dict]:
    """L_FARMUR = L_TRADES(vulnerable part) + L_CE(robust part), FARMUR Eqs. 9-11.

    Args:
        model: the classifier (in train mode; ``trades_loss`` attacks in eval mode and restores it).
        x, y: a mini-batch ``[B, ...]``, ``[B]``.
        vulnerable: bool ``[B]``, the example belongs to a vulnerable sub-partition (Def. 5).
        eps, alpha, steps, beta: TRADES' L-inf radius, step, PGD steps and KL weight (Eq. 9).

    Returns:
        ``(loss, parts)`` with ``parts = {"trades", "natural"}`` (detached 0-d tensors), ``"n_vul"``, ``"n_rob"``,
        and ``"logits"`` / ``"labels"`` (the natural logits of the vulnerable part, then those of the robust part,
        with their labels); an empty part contributes 0 (each part is the mean over its own examples, as the
        expectations in Eqs. 9-10).
    """
    vulnerable = torch.as_tensor(vulnerable, device=x.device, dtype=torch.bool)
    if vulnerable.shape != y.shape:
        raise ValueError(f"vulnerable must be a bool mask [B] matching y, got {tuple(vulnerable.shape)} vs {tuple(y.shape)}")
    zero = x.new_zeros((), dtype=torch.float32)
    n_vul = int(vulnerable.sum())
    n_rob = int(y.shape[0] - n_vul)
    logits = []
    l_trades = l_nat = zero
    if n_vul:
        l_trades, logits_vul = trades_loss(model, x[vulnerable], y[vulnerable], eps=eps, alpha=alpha, steps=steps,
                                           beta=beta)
        logits.append(logits_vul)
    if n_rob:
        logits_rob = model(x[~vulnerable])
        l_nat = F.cross_entropy(logits_rob.float(), y[~vulnerable])
        logits.append(logits_rob)
    loss = l_trades + l_nat
    return loss, {"trades": l_trades.detach(), "natural": l_nat.detach(), "n_vul": n_vul, "n_rob": n_rob,
                  "logits": torch.cat(logits), "labels": torch.cat([y[vulnerable], y[~vulnerable]])}


# ------------------------------------------------------------------------------------------ registry
class Step(NamedTuple):
    """What an objective's step returns for one mini-batch."""

    loss: torch.Tensor  # 0-d, fp32: what the optimiser minimises
    logits: torch.Tensor  # [M, C]: the logits the loss trains on (training accuracy)
    labels: torch.Tensor  # [M]: their hard labels
    logs: dict | None = None  # name -> 0-d tensor, averaged over the epoch's batches (``Objective.logs``)


@dataclass(frozen=True)
class Objective:
    """A training objective: its per-batch step, its own options with defaults, the paper it follows, the
    sampler that makes its batches (``fralkit.train.samplers``), the names of the values its step logs, and
    whether its step may be captured as one CUDA graph (``graphable``: every shape fixed by the batch size and
    no host read of a device value; ``fit``'s default on CUDA, ``fralkit.train.fast.CapturedStep``)."""

    name: str
    step: Callable
    options: dict = field(default_factory=dict)
    about: str = ""
    sampler: Callable = epoch_sampler
    logs: tuple[str, ...] = ()
    graphable: bool = False


def _step_standard(model, x, y, g, hp, opts):
    loss, logits = standard_loss(model, x, y)
    return Step(loss, logits, y)


def _step_pgd_at(model, x, y, g, hp, opts):
    x_adv = hp["attack"](model, x, y) if hp.get("attack") else None
    loss, logits = pgd_at_loss(model, x, y, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"], x_adv=x_adv)
    return Step(loss, logits, y)


def _step_trades(model, x, y, g, hp, opts):
    x_adv = hp["attack"](model, x, y) if hp.get("attack") else None
    loss, logits = trades_loss(model, x, y, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"], beta=hp["beta"],
                               x_adv=x_adv)
    return Step(loss, logits, y)


def _step_fairat(model, x, y, g, hp, opts):
    loss, logits, labels, _ = fairat_loss(model, x, y, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"],
                                          beta=hp["beta"], attack=hp.get("attack"),
                                          num_classes=hp.get("num_classes"), **opts)
    return Step(loss, logits, labels)


def _step_grad(model, x, y, g, hp, opts):
    loss, logits = grad_loss(model, x, y, g, **opts)
    return Step(loss, logits, y)


def _step_farmur(model, x, y, g, hp, opts):
    vulnerable = torch.isin(g, torch.as_tensor(opts["vulnerable"], dtype=g.dtype, device=g.device))
    loss, parts = farmur_loss(model, x, y, vulnerable, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"],
                              beta=hp["beta"])
    return Step(loss, parts["logits"], parts["labels"],
                {"farmur_loss": loss.detach(), "trades": parts["trades"], "natural": parts["natural"]})


# Not graphable: FairAT's hard-example copies and their own attack calls stay eager (its PGD loops are graphed,
# ``fralkit.train.fast._GraphedAttack``); FARMUR's parts change size with every batch and are counted on the host.
OBJECTIVES: dict[str, Objective] = {
    "standard": Objective("standard", _step_standard, {}, "cross-entropy on clean inputs", graphable=True),
    "pgd_at": Objective("pgd_at", _step_pgd_at, {}, "Madry et al. 2018: CE on PGD-CE examples", graphable=True),
    "trades": Objective("trades", _step_trades, {}, "Zhang et al. 2019: CE + beta KL(p(x) || p(x'))",
                        graphable=True),
    "fairat": Objective("fairat", _step_fairat,
                        {"hard_frac": 0.2, "hard_by": "adv", "hard_aug": "cutout", "hard_aug_strength": 0.5,
                         "crop_pad": None, "flip": False, "base": "trades"},
                        "FairAT (Mou et al.): base AT loss + augmented copies of the highest-CE examples"),
    "grad": Objective("grad", _step_grad, {"group_weight": 1.0},
                      "GRAD (Branchaud-Charron et al.): CE(class) + w CE(group) through a gradient-reversal head", graphable=True),
    "farmur": Objective("farmur", _step_farmur, {"vulnerable": (), "pairing": "split"},
                        "FARMUR (Mousavi et al. 2023): TRADES on the vulnerable sub-partitions, CE on the robust ones",
                        sampler=paired_sampler, logs=("farmur_loss", "trades", "natural")),
}

# Objectives whose attack ``fit`` may replace (FoldedTwin, CUDA graph), and that attack's PGD loss and start;
# FairAT attacks with its base objective's.
ATTACK_OF = {"pgd_at": ("ce", "uniform"), "trades": ("kl", "normal")}
