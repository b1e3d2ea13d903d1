"""Optimisers and learning-rate schedules of ``fit``: SGD (momentum, optional Nesterov), Adam, AdamW, fused on
CUDA; a schedule stepped per batch (``lr_at``)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["OPTIMIZERS", "SCHEDULES", "lr_at", "make_optimizer"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "onecycle")


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


def make_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float, weight_decay: float,
                   nesterov: bool, device: torch.device) -> torch.optim.Optimizer:
    """The optimiser ``name`` over the model's trainable parameters (fused kernels on CUDA where torch has them)."""
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
