"""Fairness in robustness (FARMUR paper, Definitions 1-5): I_P(tau), Rob(P), I_f, Rob(f), V_f(P).

Inputs are per-sample distances to the decision boundary ``d`` (``d_theta`` from
``fralkit.attacks.deepfool``), a mask of correctly classified samples, and the sub-partition id of every
sample. Misclassified samples count in ``|P|`` but never in ``Corr_f(P)``, so their distance is ignored
(it may be NaN: they need not be attacked at all).

- Def. 1: ``I_P(tau) = |{x in Corr_f(P) : d(x) > tau}| / |P|``, a non-increasing step function of tau.
- Def. 2: ``Rob(P) = AUC(I_P) = int_0^inf I_P(tau) dtau``. For a step function this integral is exact and
  needs no grid: each correct point contributes the width ``d(x)`` of the interval on which it is counted,
  so ``Rob(P) = sum_{x in Corr_f(P)} d(x) / |P|``.
- Def. 3: ``I_f(tau) = mean_P I_P(tau)`` and ``Rob(f) = AUC(I_f) = mean_P Rob(P)`` (the integral is linear).
- Def. 4: ``V_f(P) = Var{Rob(P) : P in partition}``. The partition is the whole population of
  sub-partitions, not a sample of them, so the default is the population variance (``ddof=0``);
  ``ddof=1`` gives the sample variance. The paper does not say which it used.
- Def. 5: ``P`` is vulnerable if ``Rob(P) < Rob(f)``; the others are robust (Algorithm 1 of the paper).

Functions take NumPy arrays or torch tensors and return NumPy arrays / floats (float64).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["tau_grid", "i_p", "auc_i_p", "auc_step", "rob_p", "i_f", "rob_f", "v_f", "vulnerable_split",
           "robustness_report", "curves_from_record"]


def _np(a, name: str, dtype=None) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional [N], got shape {arr.shape}")
    return arr


def _inputs(d, correct):
    d = _np(d, "d", np.float64)
    correct = _np(correct, "correct")
    if correct.dtype != bool:
        if not np.isin(correct, (0, 1)).all():
            raise ValueError("correct must be a boolean mask (or 0/1) of correctly classified samples")
        correct = correct.astype(bool)
    if d.shape != correct.shape:
        raise ValueError(f"d has {d.shape[0]} samples but correct has {correct.shape[0]}")
    dc = d[correct]
    if not np.isfinite(dc).all():
        raise ValueError("d must be finite for every correctly classified sample (NaN/inf found); "
                         "NaN is allowed only where correct is False")
    if (dc < 0).any():
        raise ValueError(f"distances must be >= 0, got min {dc.min():.4g}")
    return d, correct


def _groups(groups, n: int, num_groups: int | None) -> tuple[np.ndarray, int]:
    g = _np(groups, "groups")
    if g.shape[0] != n:
        raise ValueError(f"groups has {g.shape[0]} samples but d has {n}")
    if n and (not np.issubdtype(g.dtype, np.integer) or g.min() < 0):
        raise ValueError("groups must be non-negative integer sub-partition ids")
    g = g.astype(np.int64)
    k = int(num_groups) if num_groups is not None else (int(g.max()) + 1 if n else 0)
    if n and g.max() >= k:
        raise ValueError(f"group id {int(g.max())} out of range for num_groups={k}")
    sizes = np.bincount(g, minlength=k)
    empty = np.nonzero(sizes == 0)[0].tolist()
    if empty:
        raise ValueError(f"sub-partitions {empty} are empty: a partition's sub-partitions must be non-empty "
                         f"(evaluate on more data, or number the sub-partitions present 0..G-1)")
    return g, k


def tau_grid(tau_max: float = 2.0, num: int = 2000) -> np.ndarray:
    """The thresholds of Nanda et al.'s plots, ``linspace(0, tau_max, num)`` (their default: 0..2, 2000 points)."""
    if tau_max <= 0 or num < 2:
        raise ValueError(f"tau_grid needs tau_max > 0 and num >= 2, got {tau_max}, {num}")
    return np.linspace(0.0, float(tau_max), int(num))


def i_p(d, correct, tau, *, groups=None, num_groups: int | None = None) -> np.ndarray:
    """I_P(tau), FARMUR Def. 1 (Eq. 1), on any grid of thresholds.

    Args:
        d: ``[N]`` distances to the decision boundary (ignored where ``correct`` is False).
        correct: ``[N]`` bool, the sample is correctly classified (in ``Corr_f(P)``).
        tau: thresholds, a scalar or ``[T]``.
        groups: ``[N]`` sub-partition ids; None treats all samples as one sub-partition P.
        num_groups: number of sub-partitions (default: ``max(groups) + 1``); each must be non-empty.

    Returns:
        ``[T]`` for one sub-partition, ``[G, T]`` with ``groups``: the share of P that is correctly
        classified *and* farther than tau from the boundary.
    """
    d, correct = _inputs(d, correct)
    taus = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if groups is None:
        if d.shape[0] == 0:
            raise ValueError("I_P of an empty sub-partition is undefined (|P| = 0)")
        dc = np.sort(d[correct])
        # number of correct points with d > tau = len - (number with d <= tau)
        count = dc.shape[0] - np.searchsorted(dc, taus, side="right")
        return count / d.shape[0]
    g, k = _groups(groups, d.shape[0], num_groups)
    return np.stack([i_p(d[g == p], correct[g == p], taus) for p in range(k)])


def auc_i_p(d, correct) -> float:
    """AUC(I_P) = Rob(P), FARMUR Def. 2 (Eqs. 2-3), by exact integration of the step function.

    ``int_0^inf I_P(tau) dtau = sum_{x in Corr_f(P)} d(x) / |P|``: no grid, no truncation error.
    """
    d, correct = _inputs(d, correct)
    if d.shape[0] == 0:
        raise ValueError("Rob(P) of an empty sub-partition is undefined (|P| = 0)")
    return float(d[correct].sum() / d.shape[0])


def auc_step(tau, values) -> float:
    """Area under a right-continuous step curve sampled on an increasing grid (left Riemann sum).

    For checking a grid evaluation of ``i_p`` against the exact ``auc_i_p``: the error is at most
    ``I_P(0) * max step + I_P(tau_max) * (the mass beyond tau_max)``.
    """
    tau = np.asarray(tau, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if tau.ndim != 1 or values.shape[-1] != tau.shape[0] or tau.shape[0] < 2 or (np.diff(tau) <= 0).any():
        raise ValueError("auc_step needs an increasing grid tau [T >= 2] and values [..., T]")
    return (values[..., :-1] * np.diff(tau)).sum(-1)


def rob_p(d, correct, groups, *, num_groups: int | None = None) -> np.ndarray:
    """Rob(P) for every sub-partition P (Def. 2): ``[G]`` of ``sum_{Corr_f(P)} d / |P|``."""
    d, correct = _inputs(d, correct)
    g, k = _groups(groups, d.shape[0], num_groups)
    sums = np.bincount(g[correct], weights=d[correct], minlength=k)
    return sums / np.bincount(g, minlength=k)


def i_f(d, correct, tau, groups, *, num_groups: int | None = None) -> np.ndarray:
    """I_f(tau) = mean over the partition of I_P(tau), FARMUR Def. 3 (Eq. 4): ``[T]``."""
    return i_p(d, correct, tau, groups=groups, num_groups=num_groups).mean(0)


def rob_f(rob: Sequence[float] | np.ndarray) -> float:
    """Rob(f) = AUC(I_f) = mean of Rob(P) over the partition, FARMUR Def. 3 (Eq. 5).

    Args:
        rob: ``[G]`` Rob(P) values (from ``rob_p``).
    """
    rob = _np(rob, "rob", np.float64)
    if rob.shape[0] == 0:
        raise ValueError("Rob(f) needs at least one sub-partition")
    return float(rob.mean())


def v_f(rob: Sequence[float] | np.ndarray, *, ddof: int = 0) -> float:
    """Fairness in robustness V_f(P) = Var{Rob(P)}, FARMUR Def. 4 (Eq. 6); lower is fairer.

    Args:
        rob: ``[G]`` Rob(P) values.
        ddof: 0 = population variance over the partition (default: the partition is all its
            sub-partitions), 1 = sample variance.
    """
    rob = _np(rob, "rob", np.float64)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample variance), got {ddof}")
    if rob.shape[0] <= ddof:
        raise ValueError(f"V_f with ddof={ddof} needs more than {ddof} sub-partitions, got {rob.shape[0]}")
    return float(rob.var(ddof=ddof))


def vulnerable_split(rob: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vulnerable and robust sub-partitions, FARMUR Def. 5: vulnerable iff ``Rob(P) < Rob(f)``.

    Returns:
        ``(vulnerable_ids, robust_ids)``, sorted int arrays that together list every sub-partition
        (a sub-partition exactly at the mean is robust, as Def. 5 says "the others").
    """
    rob = _np(rob, "rob", np.float64)
    mean = rob_f(rob)
    vul = rob < mean
    return np.nonzero(vul)[0], np.nonzero(~vul)[0]


def robustness_report(d, correct, groups, *, num_groups: int | None = None, group_names: Sequence[str] | None = None,
                      ddof: int = 0) -> dict:
    """Everything of Defs. 1-5 for one model on one evaluation set, as plain Python values.

    Returns a dict with ``rob_p`` (list ``[G]``), ``rob_f``, ``v_f``, ``vulnerable`` / ``robust`` (lists of
    ids), ``accuracy`` and ``acc_p`` (per sub-partition), ``sizes`` and ``group_names``.
    """
    d, correct = _inputs(d, correct)
    g, k = _groups(groups, d.shape[0], num_groups)
    rob = rob_p(d, correct, g, num_groups=k)
    vul, robust = vulnerable_split(rob)
    sizes = np.bincount(g, minlength=k)
    names = list(group_names) if group_names is not None else [str(p) for p in range(k)]
    if len(names) != k:
        raise ValueError(f"group_names has {len(names)} names for {k} sub-partitions")
    return {
        "rob_p": rob.tolist(), "rob_f": rob_f(rob), "v_f": v_f(rob, ddof=ddof) if k > ddof else float("nan"),
        "vulnerable": vul.tolist(), "robust": robust.tolist(),
        "accuracy": float(correct.mean()) if correct.size else float("nan"),
        "acc_p": (np.bincount(g[correct], minlength=k) / sizes).tolist(),
        "sizes": sizes.tolist(), "group_names": names, "ddof": ddof,
    }


def curves_from_record(record: dict, tau: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(I_P [G, T], I_f [T])`` on the grid ``tau`` from a record's saved distances (Defs. 1 and 3)."""
    dist = record.get("distances")
    if not dist:
        raise ValueError(f"record {record.get('key')} has no saved distances")
    d = np.array([np.nan if v is None else v for v in dist["d"]], dtype=np.float64)
    correct = np.asarray(dist["correct"], dtype=bool)
    g = np.asarray(dist["partition"], dtype=np.int64)
    k = len(record.get("groups") or []) or int(g.max()) + 1
    tau = np.asarray(list(tau), dtype=np.float64)
    return i_p(d, correct, tau, groups=g, num_groups=k), i_f(d, correct, tau, g, num_groups=k)
