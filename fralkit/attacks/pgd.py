"""L-inf projected gradient descent (PGD) in [0, 1] pixel space, with a cross-entropy or KL objective.

The attack is built from a threat-model step with three parts (``project``, ``step``, ``random_perturb``),
one class per norm in the ``THREAT_MODELS`` registry. For L-inf (Madry et al. 2018, Eq. 2.1 and §2.1)::

    x_0     = x + delta_0                          delta_0 ~ U(-eps, eps)   (PGD-AT, CE objective)
                                                   delta_0 = 0.001 N(0, 1)  (TRADES, KL objective)
    x_{t+1} = Proj_{B(x, eps) ∩ [0,1]^d}( x_t + alpha sign(grad_x L(x_t)) )

with ``L`` the cross-entropy to the labels (PGD-AT, and the evaluation attack) or the KL divergence
``KL(p(x) || p(x_t))`` to the clean prediction (the inner maximisation of TRADES, Zhang et al. 2019, Eq. 5).

The default threat model is the JIN paper's evaluation attack (§4.1): white-box PGD-5, L-inf eps 4/255,
step 2/255, random start. The model is put in eval mode for the attack (batch-norm running statistics,
no dropout) and its mode is restored afterwards; only the input gradient is computed (the weights get no
``.grad``). Works under an enclosing ``torch.autocast``: the loss is computed in fp32 from the logits.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["pgd", "LinfStep", "THREAT_MODELS", "PGD_LOSSES", "RANDOM_STARTS", "JIN_THREAT_MODEL", "attack_loss"]

# The JIN paper's white-box evaluation attack (§4.1), the default everywhere in fralkit.
JIN_THREAT_MODEL = {"eps": 4 / 255, "alpha": 2 / 255, "steps": 5}
PGD_LOSSES = ("ce", "kl")
RANDOM_STARTS = ("uniform", "normal", "none")


class LinfStep:
    """The L-inf threat model around clean inputs ``x0`` in [0, 1]: the three parts of a PGD step.

    Args:
        x0: clean inputs ``[N, ...]`` in [0, 1] (the centre of the eps-ball).
        eps: radius of the L-inf ball.
        alpha: step size of the signed-gradient step.
    """

    def __init__(self, x0: torch.Tensor, eps: float, alpha: float):
        self.x0 = x0
        self.eps = float(eps)
        self.alpha = float(alpha)
        # Box of allowed values: the eps-ball intersected with [0, 1], computed once.
        self.lo = (x0 - self.eps).clamp_(min=0.0)
        self.hi = (x0 + self.eps).clamp_(max=1.0)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Closest point of B_inf(x0, eps) ∩ [0, 1]^d (a per-pixel clamp)."""
        return torch.maximum(torch.minimum(x, self.hi), self.lo)

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Steepest ascent for the L-inf norm: ``x + alpha * sign(grad)``."""
        return x + self.alpha * grad.sign()

    def random_perturb(self, x: torch.Tensor, kind: str = "uniform") -> torch.Tensor:
        """Random start: ``"uniform"`` in the eps-ball (Madry et al.), ``"normal"`` = ``x + 0.001 N(0, 1)``
        (TRADES' reference code), ``"none"`` = ``x``; projected back into the allowed box."""
        if kind == "uniform":
            x = x + torch.empty_like(x).uniform_(-self.eps, self.eps)
        elif kind == "normal":
            x = x + 0.001 * torch.randn_like(x)
        elif kind != "none":
            raise ValueError(f"unknown random start {kind!r}; valid: {list(RANDOM_STARTS)}")
        return self.project(x)


THREAT_MODELS: dict[str, Callable[..., LinfStep]] = {"linf": LinfStep}


def attack_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """The quantity PGD ascends, summed over the batch (the sign step makes the scale irrelevant).

    Args:
        logits: ``[N, C]`` at the current iterate.
        target: ``"ce"``: int labels ``[N]`` or class probabilities ``[N, C]``; ``"kl"``: the clean
            prediction's probabilities ``[N, C]`` (``KL(target || softmax(logits))``, TRADES Eq. 5).
        loss: ``"ce"`` or ``"kl"``.
    """
    logits = logits.float()
    if loss == "ce":
        return F.cross_entropy(logits, target, reduction="sum")
    if loss == "kl":
        return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="sum")
    raise ValueError(f"unknown PGD loss {loss!r}; valid: {list(PGD_LOSSES)}")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float = 4 / 255,
    alpha: float = 2 / 255,
    steps: int = 5,
    loss: str = "ce",
    random_start: bool | str = True,
    norm: str = "linf",
) -> torch.Tensor:
    """White-box PGD (Madry et al. 2018); defaults: the JIN paper's PGD-5, eps 4/255, step 2/255 (§4.1).

    Args:
        model: classifier taking inputs in [0, 1] and returning logits ``[N, C]``. Put in eval mode for the
            attack; its previous mode is restored on return.
        x: clean inputs ``[N, C, H, W]`` in [0, 1] (any float dtype; the result has ``x.dtype``).
        y: ``"ce"``: true labels ``[N]`` (int) or class probabilities ``[N, C]``; ``None`` attacks the
            model's own clean prediction (no label leaking). Ignored for ``"kl"``.
        eps: L-inf radius (pixel scale, e.g. 4/255).
        alpha: step size.
        steps: number of PGD iterations (0 returns the random start).
        loss: ``"ce"`` (PGD-AT, evaluation) or ``"kl"`` (``KL(p(x) || p(x_adv))``, the TRADES inner maximisation).
        random_start: ``True`` picks each objective's customary start (``"uniform"`` in the eps-ball for CE,
            ``"normal"`` = 0.001 N(0, 1) for KL as in TRADES); or one of ``"uniform"``, ``"normal"``, ``"none"``;
            ``False`` is ``"none"``.
        norm: threat model, a key of ``THREAT_MODELS``.

    Returns:
        ``x_adv`` with ``|x_adv - x|_inf <= eps`` and ``0 <= x_adv <= 1``, detached, same shape and dtype as ``x``.
    """
    if loss not in PGD_LOSSES:
        raise ValueError(f"unknown PGD loss {loss!r}; valid: {list(PGD_LOSSES)}")
    if norm not in THREAT_MODELS:
        raise ValueError(f"unknown threat model {norm!r}; valid: {sorted(THREAT_MODELS)}")
    if eps < 0 or alpha < 0 or steps < 0:
        raise ValueError(f"eps, alpha and steps must be non-negative, got eps={eps}, alpha={alpha}, steps={steps}")
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"pgd expects float inputs [N, ...] in [0, 1], got {x.dtype} {tuple(x.shape)}")
    if random_start is True:
        start = "uniform" if loss == "ce" else "normal"
    elif random_start is False:
        start = "none"
    else:
        start = str(random_start)
        if start not in RANDOM_STARTS:
            raise ValueError(f"unknown random start {start!r}; valid: True, False, {list(RANDOM_STARTS)}")

    was_training = model.training
    model.eval()
    try:
        x0 = x.detach()
        threat = THREAT_MODELS[norm](x0, eps, alpha)
        if loss == "kl" or y is None:
            with torch.no_grad():
                clean = model(x0).float()
            target = clean.softmax(1) if loss == "kl" else clean.argmax(1)
        else:
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"pgd: y has {y.shape[0]} entries for {x.shape[0]} inputs")
            target = y
        x_adv = threat.random_perturb(x0, start)
        for _ in range(int(steps)):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                obj = attack_loss(model(x_adv), target, loss)
                grad, = torch.autograd.grad(obj, x_adv)
            x_adv = threat.project(threat.step(x_adv.detach(), grad))
    finally:
        model.train(was_training)
    return x_adv.detach()
