"""BALD by MC dropout (Houlsby et al. 2011; Gal et al. 2017), the acquisition of the BALD + GRAD paper, Eq. 1.

``I[y, w | x, D] = H[p(y | x, D)] - E_{p(w | D)} H[p(y | x, w)]``: the entropy of the mean prediction minus
the mean entropy of the MC samples. ``p(w | D)`` is approximated by MC dropout (Gal & Ghahramani 2016):
``T`` stochastic forward passes with every Dropout layer on and everything else (BatchNorm) in eval mode.

Fast path: when all dropout sits in the classification head (``vgg_mc`` and ``small_cnn`` are built that
way), the trunk ``features(x)`` is deterministic, so it is computed once per batch and only ``head(z)`` is
sampled ``T`` times. Both paths draw the dropout masks in the same order (head pass t of batch b), so with
the same ``seed`` they give the same probabilities up to float rounding. ``benchmarks/bald_speed.py``
measures the speed-up in one run: at T = 20, 14x for ``vgg_mc`` (32 px) and 20x for ``small_cnn`` on a shared
2-core CPU, with identical scores.

Scores see only probabilities (baal's ``compute_score(probs)``): ``bald_scores``, ``predictive_entropy`` and
``expected_entropy`` are plain functions of ``[N, C, T]`` MC samples. The acquisition strategies that use them
(``bald`` of both studies) live in ``fralkit.active.strategies.STRATEGIES``.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from torch.nn.modules.dropout import _DropoutNd

from ..data.core import GroupDataset, to_float

# ``entropy`` stays module-level only: ``fralkit.active.strategies`` exports its own [N, C] version.
__all__ = [
    "predictive_entropy",
    "expected_entropy",
    "bald_scores",
    "mc_probs",
    "select_top",
]


def _check_mc(probs: torch.Tensor) -> torch.Tensor:
    if not isinstance(probs, torch.Tensor):
        probs = torch.as_tensor(probs)
    if probs.ndim != 3 or probs.shape[1] < 1 or probs.shape[2] < 1:
        raise ValueError(f"probs must be MC samples [N, C, T] (examples, classes, MC samples), got shape {tuple(probs.shape)}")
    return probs.float() if not probs.is_floating_point() else probs


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats along ``dim``; ``0 log 0 = 0``."""
    return torch.special.entr(p).sum(dim)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """``H[p(y | x, D)]`` with ``p(y | x, D) = mean_t p_t``: total uncertainty. ``probs: [N, C, T]`` -> ``[N]``."""
    probs = _check_mc(probs)
    return entropy(probs.mean(2), dim=1)


def expected_entropy(probs: torch.Tensor) -> torch.Tensor:
    """``E_{p(w | D)} H[p(y | x, w)] = mean_t H[p_t]``: aleatoric part. ``probs: [N, C, T]`` -> ``[N]``."""
    probs = _check_mc(probs)
    return entropy(probs, dim=1).mean(1)


def bald_scores(probs: torch.Tensor) -> torch.Tensor:
    """BALD mutual information, Eq. 1 of the BALD + GRAD paper (Houlsby et al. 2011).

    Args:
        probs: ``[N, C, T]`` class probabilities of T MC-dropout samples.

    Returns:
        ``[N]`` scores ``H[mean_t p_t] - mean_t H[p_t] >= 0`` (0 when all samples agree; rounding below 0 is clipped).
    """
    probs = _check_mc(probs)
    return (predictive_entropy(probs) - expected_entropy(probs)).clamp_min_(0.0)


def _batches(data, idx: torch.Tensor | None, batch_size: int, device: torch.device):
    """Yield float [0, 1] image batches on ``device`` from a GroupDataset or an image tensor."""
    if isinstance(data, GroupDataset):
        x_all = data.x
    elif isinstance(data, torch.Tensor):
        if data.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(data.shape)}")
        x_all = data
    else:
        raise ValueError(f"data must be a GroupDataset or an image tensor [N, C, H, W], got {type(data).__name__}")
    order = torch.arange(len(x_all)) if idx is None else torch.as_tensor(idx, dtype=torch.int64).cpu()
    for start in range(0, len(order), batch_size):
        b = order[start:start + batch_size].to(x_all.device)
        yield to_float(x_all[b].to(device, non_blocking=True))


def mc_probs(model: nn.Module, data: GroupDataset | torch.Tensor, *, T: int = 20, idx: torch.Tensor | None = None,
             batch_size: int = 512, fast: bool | None = None, seed: int | None = None, amp: bool | None = None) -> torch.Tensor:
    """MC-dropout class probabilities ``[N, C, T]`` (the samples of ``p(y | x, w_t)``, ``w_t ~ q(w)``).

    Args:
        model: a classifier with Dropout layers (inputs in [0, 1]); with ``features``/``head`` for the fast path.
        data: a ``GroupDataset`` or an image tensor ``[N, C, H, W]`` (uint8, or float in [0, 1]).
        T: number of MC samples (20 in the paper).
        idx: rows of ``data`` to score (default all), in this order.
        batch_size: examples per trunk pass.
        fast: compute ``features`` once and sample ``head`` T times. None (default) = whenever every Dropout
            layer sits in the head (``fralkit.models.has_dropout_only_in_head``); True insists (ValueError
            otherwise); False = T full forward passes ``model(x)`` (the reference path).
        seed: seeds the dropout masks in a forked RNG (the caller's RNG stream is untouched): the two paths
            with the same seed draw the same masks. None uses the current RNG.
        amp: bf16 autocast (default: on for CUDA, off on CPU).

    Returns:
        float32 ``[N, C, T]`` on the model's device.
    """
    from ..models import has_dropout_only_in_head, mc_dropout

    if T < 1:
        raise ValueError(f"T (MC samples) must be >= 1, got {T}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    amp = (device.type == "cuda") if amp is None else amp
    if not any(isinstance(m, _DropoutNd) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no Dropout layer: MC dropout needs one (e.g. make_model('vgg_mc', ...) "
                         "or make_model('small_cnn', ..., dropout=0.5))")
    splits = callable(getattr(model, "features", None)) and callable(getattr(model, "head", None))
    trunk_clean = splits and has_dropout_only_in_head(model)
    if fast and not trunk_clean:
        raise ValueError("fast=True needs a features/head split with every Dropout layer in the head "
                         f"({type(model).__name__} has dropout outside model.head)")
    use_fast = trunk_clean if fast is None else bool(fast)
    channels_last = device.type == "cuda"

    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    fork_devices = [device] if device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=fork_devices) if seed is not None else contextlib.nullcontext()
    out = []
    with rng, mc_dropout(model), torch.no_grad(), autocast:
        if seed is not None:
            torch.manual_seed(int(seed))
        for x in _batches(data, idx, batch_size, device):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if use_fast:
                z = model.features(x)
                samples = [model.head(z).float().softmax(-1) for _ in range(T)]
            else:
                samples = [model(x).float().softmax(-1) for _ in range(T)]
            out.append(torch.stack(samples, dim=-1))
    if not out:
        return torch.empty((0, 0, T), device=device)
    return torch.cat(out)


def select_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores, highest first; ties keep the lower index first; ``k`` is capped at N."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores = torch.as_tensor(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be [N], got shape {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[: min(int(k), len(order))]
