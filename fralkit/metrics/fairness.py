"""Group fairness of a classifier's predictions (BALD + GRAD paper, §2) and the uncertainty gap of its Fig. 1.

All functions take plain predictions, labels and group ids (torch tensors, NumPy arrays or lists) and
return Python floats (or a ``[G]`` tensor for per-group values), so they serve any model and any study:

- predictive parity ``delta_A = max_a A_a - min_a A_a`` (Verma & Rubin 2018), ``A_a`` the accuracy of group a;
- equalized odds (Hardt et al. 2016): ``P(y_hat = 1 | y = gamma, a)`` equal across groups for gamma in {0, 1};
  reported as the largest gap over gamma (and, for more than two classes, over classes one-vs-rest);
- equal opportunity: the same gap for ``gamma = 1`` only (the true-positive rate of the positive class);
- demographic parity: the gap of ``P(y_hat = c | a)``;
- negative log-likelihood of the true label;
- the absolute difference in mean epistemic uncertainty (BALD score) between groups (paper Fig. 1).

A gap is ``max - min`` over the groups that have examples (for two groups, the absolute difference);
with fewer than two such groups it is 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "group_means",
    "group_accuracy",
    "predictive_parity",
    "equalized_odds",
    "equal_opportunity",
    "demographic_parity",
    "nll",
    "uncertainty_gap",
    "fairness_report",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence


def _vec(x: ArrayLike, name: str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector [N], got shape {tuple(t.shape)}")
    return t.to(dtype)


def _check_same_length(**vecs: torch.Tensor) -> int:
    lengths = {k: len(v) for k, v in vecs.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have the same length N, got {lengths}")
    return next(iter(lengths.values()))


def _num_groups(g: torch.Tensor, num_groups: int | None) -> int:
    found = int(g.max()) + 1 if len(g) else 0
    if num_groups is None:
        return found
    if found > num_groups:
        raise ValueError(f"group ids go up to {found - 1} but num_groups={num_groups}")
    return int(num_groups)


def _gap(values: torch.Tensor) -> float:
    """``max - min`` over the finite entries (0 with fewer than two)."""
    finite = values[torch.isfinite(values)]
    if len(finite) < 2:
        return 0.0
    return float(finite.max() - finite.min())


def group_means(values: ArrayLike, g: ArrayLike, *, num_groups: int | None = None) -> torch.Tensor:
    """Mean of ``values`` [N] within each group: float64 ``[G]``, NaN for a group with no examples."""
    v, gg = _vec(values, "values", torch.float64), _vec(g, "g", torch.int64)
    _check_same_length(values=v, g=gg)
    G = _num_groups(gg, num_groups)
    sums = torch.zeros(G, dtype=torch.float64).index_add_(0, gg, v)
    counts = torch.bincount(gg, minlength=G).to(torch.float64)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, math.nan))


def group_accuracy(pred: ArrayLike, y: ArrayLike, g: ArrayLike, *, num_groups: int | None = None) -> torch.Tensor:
    """Accuracy ``A_a`` of each group a: float64 ``[G]`` (NaN for an empty group).

    Args:
        pred: predicted labels ``[N]``.
        y: true labels ``[N]``.
        g: group ids ``[N]`` in ``0..G-1``.
        num_groups: G (default: the largest id + 1).
    """
    p, yy = _vec(pred, "pred", torch.int64), _vec(y, "y", torch.int64)
    _check_same_length(pred=p, y=yy)
    return group_means((p == yy).to(torch.float64), g, num_groups=num_groups)


def predictive_parity(pred: ArrayLike, y: ArrayLike, g: ArrayLike, *, num_groups: int | None = None) -> float:
    """Predictive parity ``delta_A = max_a A_a - min_a A_a`` (BALD + GRAD paper §2; Verma & Rubin 2018)."""
    return _gap(group_accuracy(pred, y, g, num_groups=num_groups))


def _conditional_rate_gap(event: torch.Tensor, cond: torch.Tensor, g: torch.Tensor, G: int) -> float:
    """Gap over groups of ``P(event | cond, a)``; groups with no example satisfying ``cond`` are skipped."""
    if not cond.any():
        return 0.0
    return _gap(group_means(event[cond].to(torch.float64), g[cond], num_groups=G))


def _classes(p: torch.Tensor, yy: torch.Tensor, positive: int | None) -> list[int]:
    if positive is not None:
        return [int(positive)]
    top = max(int(p.max()) if len(p) else 0, int(yy.max()) if len(yy) else 0)
    return list(range(top + 1))


def equalized_odds(pred: ArrayLike, y: ArrayLike, g: ArrayLike, *, positive: int | None = None,
                   num_groups: int | None = None) -> float:
    """Equalized-odds difference (Hardt et al. 2016; BALD + GRAD paper §2).

    For a positive class c, ``max over gamma in {y = c, y != c}`` of the gap over groups of
    ``P(y_hat = c | gamma, a)``: the larger of the true-positive-rate and false-positive-rate gaps.
    With ``positive=None`` the largest value over all classes (one-vs-rest); for two classes this equals
    the value for either class, so the choice of positive class does not matter there.

    Args:
        pred: predicted labels ``[N]``.
        y: true labels ``[N]``.
        g: group ids ``[N]``.
        positive: the class playing ``y_hat = 1``; None for the maximum over classes.
        num_groups: G (default: the largest id + 1).
    """
    p, yy, gg = _vec(pred, "pred", torch.int64), _vec(y, "y", torch.int64), _vec(g, "g", torch.int64)
    _check_same_length(pred=p, y=yy, g=gg)
    G = _num_groups(gg, num_groups)
    worst = 0.0
    for c in _classes(p, yy, positive):
        hit = p == c
        worst = max(worst, _conditional_rate_gap(hit, yy == c, gg, G), _conditional_rate_gap(hit, yy != c, gg, G))
    return worst


def equal_opportunity(pred: ArrayLike, y: ArrayLike, g: ArrayLike, *, positive: int | None = 1,
                      num_groups: int | None = None) -> float:
    """Equal-opportunity difference: the gap over groups of ``P(y_hat = c | y = c, a)`` (Hardt et al. 2016).

    ``positive`` is the class c of the "good outcome" (default 1, the second class); None gives the
    largest gap over all classes.
    """
    p, yy, gg = _vec(pred, "pred", torch.int64), _vec(y, "y", torch.int64), _vec(g, "g", torch.int64)
    _check_same_length(pred=p, y=yy, g=gg)
    G = _num_groups(gg, num_groups)
    return max(_conditional_rate_gap(p == c, yy == c, gg, G) for c in _classes(p, yy, positive))


def demographic_parity(pred: ArrayLike, g: ArrayLike, *, positive: int | None = None,
                       num_groups: int | None = None) -> float:
    """Demographic-parity difference: the gap over groups of ``P(y_hat = c | a)`` (max over classes if None)."""
    p, gg = _vec(pred, "pred", torch.int64), _vec(g, "g", torch.int64)
    _check_same_length(pred=p, g=gg)
    G = _num_groups(gg, num_groups)
    classes = [int(positive)] if positive is not None else list(range(int(p.max()) + 1 if len(p) else 1))
    return max(_gap(group_means((p == c).to(torch.float64), gg, num_groups=G)) for c in classes)


def nll(probs: ArrayLike, y: ArrayLike, *, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-mean_i log p(y_i | x_i)`` of probabilities ``probs`` [N, C]."""
    pr = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs).detach().cpu().to(torch.float64)
    yy = _vec(y, "y", torch.int64)
    if pr.ndim != 2 or pr.shape[0] != len(yy):
        raise ValueError(f"probs must be [N, C] with N = len(y) = {len(yy)}, got shape {tuple(pr.shape)}")
    if len(yy) == 0:
        return math.nan
    return float(-pr.gather(1, yy[:, None]).clamp_min(eps).log().mean())


def uncertainty_gap(scores: ArrayLike, g: ArrayLike, *, num_groups: int | None = None) -> float:
    """Absolute difference in mean epistemic uncertainty between groups (BALD + GRAD paper, Fig. 1).

    Args:
        scores: per-example epistemic uncertainty ``[N]``, e.g. BALD mutual information.
        g: group ids ``[N]``.
        num_groups: G; with more than two groups, ``max - min`` of the group means.
    """
    return _gap(group_means(scores, g, num_groups=num_groups))


def fairness_report(probs: ArrayLike, y: ArrayLike, g: ArrayLike, *, num_groups: int | None = None,
                    scores: ArrayLike | None = None, positive: int | None = 1) -> dict[str, float]:
    """Every metric of the BALD + GRAD paper for one set of predictions, as a flat dict of floats.

    Args:
        probs: predictive probabilities ``[N, C]`` (the prediction is their argmax).
        y: true labels ``[N]``.
        g: group ids ``[N]``.
        num_groups: G (default: the largest id + 1).
        scores: optional epistemic uncertainty ``[N]`` (BALD scores) of the same examples.
        positive: the positive class for equal opportunity.

    Returns:
        ``accuracy``, ``acc_g<a>`` per group, ``parity`` (delta_A), ``nll``, ``eq_odds``, ``eq_opp``,
        ``dem_parity``; with ``scores`` also ``bald_mean``, ``bald_g<a>`` and ``bald_gap``.
    """
    pr = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs).detach().cpu().float()
    if pr.ndim != 2:
        raise ValueError(f"probs must be [N, C] probabilities, got shape {tuple(pr.shape)}")
    yy, gg = _vec(y, "y", torch.int64), _vec(g, "g", torch.int64)
    _check_same_length(probs=pr, y=yy, g=gg)
    G = _num_groups(gg, num_groups)
    pred = pr.argmax(1)
    accs = group_accuracy(pred, yy, gg, num_groups=G)
    out: dict[str, float] = {"accuracy": float((pred == yy).double().mean()) if len(yy) else math.nan}
    out.update({f"acc_g{a}": float(accs[a]) for a in range(G)})
    out["parity"] = _gap(accs)
    out["nll"] = nll(pr, yy)
    out["eq_odds"] = equalized_odds(pred, yy, gg, num_groups=G)
    out["eq_opp"] = equal_opportunity(pred, yy, gg, positive=positive if pr.shape[1] > 1 else None, num_groups=G)
    out["dem_parity"] = demographic_parity(pred, gg, num_groups=G)
    if scores is not None:
        s = _vec(scores, "scores", torch.float64)
        _check_same_length(scores=s, y=yy)
        means = group_means(s, gg, num_groups=G)
        out["bald_mean"] = float(s.mean()) if len(s) else math.nan
        out.update({f"bald_g{a}": float(means[a]) for a in range(G)})
        out["bald_gap"] = _gap(means)
    return out
