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

``mc_probs`` (the sampling loop) lives in ``fralkit.inference``, the one inference loop, and is re-exported here.

Heuristics are named by their paper acronym and override one method, ``compute_score(probs)``; ``HEURISTICS``
is the registry. ``bald_scores(probs)`` and ``select_bald(probs, k)`` are plain functions for other strategy
registries (``fralkit.active.strategies`` scores its ``bald`` strategy with ``bald_scores``).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..inference import mc_probs

# ``entropy`` stays module-level only: ``fralkit.active.strategies`` exports its own [N, C] version.
__all__ = [
    "predictive_entropy",
    "expected_entropy",
    "bald_scores",
    "mc_probs",
    "select_top",
    "select_bald",
    "AbstractHeuristic",
    "BALD",
    "Entropy",
    "HEURISTICS",
    "get_heuristic",
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


def select_bald(probs: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` rows of ``probs [N, C, T]`` (MC samples) with the highest BALD score, highest first."""
    return select_top(bald_scores(probs), k)


class AbstractHeuristic:
    """An acquisition heuristic: ``compute_score(probs) -> [N]`` (higher = query first); ``select`` takes the top k."""

    name = "abstract"

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        return self.compute_score(probs)

    def select(self, probs: torch.Tensor, k: int) -> torch.Tensor:
        """Row indices of the ``k`` highest-scoring examples, highest first."""
        return select_top(self.compute_score(probs), k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BALD(AbstractHeuristic):
    """BALD mutual information on MC samples ``[N, C, T]`` (Houlsby et al. 2011; Eq. 1 of the BALD + GRAD paper)."""

    name = "bald"

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        return bald_scores(probs)


class Entropy(AbstractHeuristic):
    """Predictive entropy ``H[mean_t p_t]`` (total uncertainty); takes ``[N, C, T]`` or deterministic ``[N, C]``."""

    name = "entropy"

    def compute_score(self, probs: torch.Tensor) -> torch.Tensor:
        probs = torch.as_tensor(probs)
        if probs.ndim == 2:
            probs = probs[..., None]
        return predictive_entropy(probs)


HEURISTICS: dict[str, Callable[[], AbstractHeuristic]] = {"bald": BALD, "entropy": Entropy}


def get_heuristic(name: str) -> AbstractHeuristic:
    """An instance of the heuristic registered as ``name`` (case-insensitive)."""
    key = str(getattr(name, "value", name)).lower()
    if key not in HEURISTICS:
        raise ValueError(f"unknown heuristic {name!r}; valid: {sorted(HEURISTICS)}")
    return HEURISTICS[key]()
