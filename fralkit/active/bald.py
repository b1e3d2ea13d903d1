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
(``bald`` of both studies) live in ``fralkit.active.strategies.STRATEGIES``. ``mc_probs`` (the sampling loop) lives
in ``fralkit.inference``, the one inference loop, and is re-exported here.
"""
from __future__ import annotations


import torch

from ..inference import mc_probs

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


def select_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores, highest first; ties keep the lower index first; ``k`` is capped at N."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores = torch.as_tensor(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be [N], got shape {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[: min(int(k), len(order))]
