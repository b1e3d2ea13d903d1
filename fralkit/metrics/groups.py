"""Group and class reports: clean and PGD-robust accuracy or macro-F1 per group and per class.

The JIN paper (Eq. 1, Tables 1-2) summarises a metric ``m_z`` over sensitive groups ``z`` by

    Worst = min_z m_z  (fair-performance / fair-robustness),   Disp = max_z m_z - min_z m_z,   Avg = mean_z m_z

for standard (``std_``, clean inputs) and robust (``rob_``, white-box PGD-5, L-inf 4/255, step 2/255)
performance; accuracy for UTKFace / CINIC-10, macro-F1 for the imbalanced HAM10000 (Table 3 adds the per-class
F1 within the worst group). FairAT (Mou et al.) reports class-wise robust accuracy: worst class and average.

``group_report`` computes the clean and the adversarial logits in one pass (``fralkit.inference.infer``) and
derives everything from them, as a flat dict of plain Python scalars (result-store metrics).
``report_from_logits`` does the same from given logits or predictions.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attacks.deepfool import deepfool
from ..data.core import GroupDataset, stratified_split, to_float
from ..inference import clean_logits, infer
from ..runtime import sync
from .robustness import robustness_report

__all__ = ["predict", "group_report", "measure_robustness", "stratified_idx", "report_from_logits", "per_class_f1", "macro_f1", "per_class_accuracy",
           "worst_disp_avg", "report_table", "METRICS"]

METRICS = ("acc", "f1")


def per_class_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """F1 of each class, ``2 TP / (2 TP + FP + FN)``, float64 ``[C]``; NaN for a class that is neither in ``y`` nor
    predicted (left out of the macro average, as scikit-learn's default label set)."""
    pred, y = torch.as_tensor(pred).long().cpu(), torch.as_tensor(y).long().cpu()
    tp = torch.bincount(y[pred == y], minlength=num_classes).double()
    n_true = torch.bincount(y, minlength=num_classes).double()
    n_pred = torch.bincount(pred, minlength=num_classes).double()
    denom = n_true + n_pred  # = 2 TP + FP + FN
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.full_like(denom, float("nan")))


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Macro-F1: the mean of ``per_class_f1`` over classes present in ``y`` or in the predictions."""
    f1 = per_class_f1(pred, y, num_classes)
    return float(f1[~f1.isnan()].mean()) if (~f1.isnan()).any() else float("nan")


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Accuracy (recall) of each class, float64 ``[C]``; NaN for a class without examples."""
    pred, y = torch.as_tensor(pred).long().cpu(), torch.as_tensor(y).long().cpu()
    hit = torch.bincount(y[pred == y], minlength=num_classes).double()
    n = torch.bincount(y, minlength=num_classes).double()
    return torch.where(n > 0, hit / n.clamp_min(1), torch.full_like(n, float("nan")))


def worst_disp_avg(values: Sequence[float]) -> tuple[float, float, float]:
    """``(min, max - min, mean)`` over the non-NaN values: Worst / Disp / Avg of JIN Tables 1-2."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(v.min()), float(v.max() - v.min()), float(v.mean())


def _as_pred(z: torch.Tensor) -> torch.Tensor:
    z = torch.as_tensor(z)
    return (z.argmax(1) if z.ndim == 2 else z).long().cpu()


def _section(kind: str, pred: torch.Tensor, y: torch.Tensor, g: torch.Tensor, num_classes: int, num_groups: int,
             metric: str) -> dict:
    out: dict = {}
    correct = pred == y
    out[f"{kind}_acc"] = float(correct.double().mean()) if len(y) else float("nan")
    out[f"{kind}_f1"] = macro_f1(pred, y, num_classes)
    out[f"{kind}_overall"] = out[f"{kind}_{metric}"]
    per_group = []
    for z in range(num_groups):
        m = g == z
        acc_c = per_class_accuracy(pred[m], y[m], num_classes)
        f1_c = per_class_f1(pred[m], y[m], num_classes)
        acc = float(correct[m].double().mean()) if m.any() else float("nan")
        f1 = float(f1_c[~f1_c.isnan()].mean()) if (~f1_c.isnan()).any() else float("nan")
        out[f"{kind}_acc_g{z}"] = acc
        out[f"{kind}_f1_g{z}"] = f1
        out[f"{kind}_group_{z}"] = acc if metric == "acc" else f1
        per_group.append(out[f"{kind}_group_{z}"])
        for c in range(num_classes):
            out[f"{kind}_acc_g{z}_c{c}"] = float(acc_c[c])
            out[f"{kind}_f1_g{z}_c{c}"] = float(f1_c[c])
    out[f"{kind}_worst"], out[f"{kind}_disp"], out[f"{kind}_avg"] = worst_disp_avg(per_group)
    out[f"{kind}_worst_group"] = int(np.nanargmin(per_group)) if not np.all(np.isnan(per_group)) else -1
    cls = per_class_accuracy(pred, y, num_classes)
    for c in range(num_classes):
        out[f"{kind}_class_{c}"] = float(cls[c])
    w, d, a = worst_disp_avg(cls.tolist())
    out[f"worst_class_{kind}"], out[f"disp_class_{kind}"], out[f"avg_class_{kind}"] = w, d, a
    return out


def report_from_logits(y: torch.Tensor, g: torch.Tensor, clean: torch.Tensor, adv: torch.Tensor | None = None, *,
                       num_classes: int | None = None, num_groups: int | None = None, metric: str = "acc") -> dict:
    """The group / class report from clean (and adversarial) logits ``[N, C]`` or predicted labels ``[N]``.

    Args:
        y: true labels ``[N]``; g: group ids ``[N]``.
        clean: clean logits or predictions; adv: the same under attack (``None``: no ``rob_`` keys).
        num_classes, num_groups: default from the logits' width / the largest id.
        metric: ``"acc"`` or ``"f1"`` (macro-F1 within each group): what ``*_group_z``, Worst, Disp, Avg and
            ``*_overall`` use.

    Returns:
        Flat dict of floats / ints. For ``kind`` in ``std`` (clean) and ``rob`` (PGD):
        ``{kind}_group_{z}``, ``{kind}_worst``, ``{kind}_disp``, ``{kind}_avg``, ``{kind}_worst_group`` (JIN Eq. 1,
        Tables 1-2, in ``metric``); ``{kind}_acc``, ``{kind}_f1`` (overall accuracy, macro-F1), ``{kind}_overall``;
        ``{kind}_acc_g{z}``, ``{kind}_f1_g{z}``; ``{kind}_acc_g{z}_c{c}``, ``{kind}_f1_g{z}_c{c}`` (per class within
        each group: JIN Table 3); ``{kind}_class_{c}`` (class-wise accuracy over all groups),
        ``worst_class_{kind}``, ``avg_class_{kind}``, ``disp_class_{kind}`` (FairAT's worst-class and average
        class robustness); ``n``, ``n_group_{z}``; ``worst_group``: the group with the lowest mean of clean and
        robust ``metric`` (JIN §3.2's worst-group estimate; clean only without ``adv``).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {list(METRICS)}")
    y, g = torch.as_tensor(y).long().cpu(), torch.as_tensor(g).long().cpu()
    clean = torch.as_tensor(clean)
    if num_classes is None:
        num_classes = int(clean.shape[1]) if clean.ndim == 2 else int(max(y.max(), clean.max())) + 1
    if num_groups is None:
        num_groups = int(g.max()) + 1 if len(g) else 1
    pc = _as_pred(clean)
    if pc.shape != y.shape or g.shape != y.shape:
        raise ValueError(f"report_from_logits: y {tuple(y.shape)}, g {tuple(g.shape)} and predictions "
                         f"{tuple(pc.shape)} must have the same length")
    out = {"n": int(len(y)), "num_groups": int(num_groups), "num_classes": int(num_classes), "metric": metric}
    for z in range(num_groups):
        out[f"n_group_{z}"] = int((g == z).sum())
    out.update(_section("std", pc, y, g, num_classes, num_groups, metric))
    score = np.asarray([out[f"std_group_{z}"] for z in range(num_groups)], dtype=float)
    if adv is not None:
        pa = _as_pred(adv)
        if pa.shape != y.shape:
            raise ValueError(f"report_from_logits: adversarial predictions {tuple(pa.shape)} do not match y {tuple(y.shape)}")
        out.update(_section("rob", pa, y, g, num_classes, num_groups, metric))
        score = (score + np.asarray([out[f"rob_group_{z}"] for z in range(num_groups)], dtype=float)) / 2
    out["worst_group"] = int(np.nanargmin(score)) if not np.all(np.isnan(score)) else -1
    return out


def _attack_kwargs(attack: dict | bool | None, eps: float, alpha: float, steps: int, loss: str) -> dict | None:
    if attack is None or attack is False:
        return None
    kw = {"eps": eps, "alpha": alpha, "steps": steps, "loss": loss}
    if isinstance(attack, dict):
        unknown = set(attack) - {"eps", "alpha", "steps", "loss", "random_start", "norm"}
        if unknown:
            raise ValueError(f"unknown PGD option(s) {sorted(unknown)}; valid: eps, alpha, steps, loss, random_start, norm")
        kw.update(attack)
    elif attack is not True:
        raise ValueError(f"attack must be None, True or a dict of pgd options, got {attack!r}")
    return kw


def predict(model: nn.Module, data: GroupDataset, idx: torch.Tensor | Sequence[int] | None = None, *,
            attack: dict | bool | None = None, batch_size: int = 1024, amp: bool = True,
            seed: int | None = 0) -> torch.Tensor:
    """Logits ``[n, C]`` (fp32, on the model's device) of ``data`` (or ``data[idx]``), in eval mode.

    Args:
        attack: ``None`` for clean inputs; ``True`` for the JIN threat model (PGD-5, CE on the true labels,
            eps 4/255, step 2/255); or a dict of ``fralkit.attacks.pgd`` options overriding it.
        batch_size: evaluation batch (large is fine: no gradients are kept).
        amp: bf16 autocast on CUDA.
        seed: seeds the attack's random start inside a forked RNG (the global RNG is left untouched); ``None``
            draws from the global RNG.
    """
    kw = _attack_kwargs(attack, 4 / 255, 2 / 255, 5, "ce")
    out = infer(model, data, idx, batch_size=batch_size, amp=amp, clean=kw is None, attack=kw, seed=seed)
    return out.logits if kw is None else out.adv_logits


def group_report(model: nn.Module, data: GroupDataset, *, idx: torch.Tensor | Sequence[int] | None = None,
                 metric: str = "acc", robust: bool = True, eps: float = 4 / 255, alpha: float = 2 / 255,
                 steps: int = 5, attack_loss: str = "ce", batch_size: int = 1024, amp: bool = True,
                 seed: int | None = 0, return_logits: bool = False) -> dict:
    """Clean and PGD-robust performance per group and per class: JIN Eq. 1 and Tables 1-3, FairAT's class-wise
    robustness. See ``report_from_logits`` for the keys.

    Args:
        model: the classifier (evaluated in eval mode; its mode is restored).
        data: evaluation set (test or validation); ``idx`` restricts it.
        metric: ``"acc"`` or ``"f1"`` (macro-F1, JIN's choice for HAM10000).
        robust: also attack (white-box PGD with the true labels) and report ``rob_`` keys.
        eps, alpha, steps, attack_loss: the threat model (JIN §4.1 by default).
        batch_size, amp: evaluation batch; bf16 autocast on CUDA.
        seed: seeds the attack's random start (forked RNG); ``None``: the global RNG.
        return_logits: also return ``{"clean": [n, C], "adv": [n, C] or None}`` (CPU) under ``"logits"``.

    Returns:
        A flat dict of plain scalars, from one clean and one adversarial pass.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {list(METRICS)}")
    kw = {"eps": eps, "alpha": alpha, "steps": steps, "loss": attack_loss} if robust else None
    lc, la, _ = infer(model, data, idx, batch_size=batch_size, amp=amp, attack=kw, seed=seed)
    sel = slice(None) if idx is None else torch.as_tensor(idx).cpu()
    y, g = data.y.cpu()[sel], data.g.cpu()[sel]
    out = report_from_logits(y, g, lc.cpu(), None if la is None else la.cpu(), num_classes=data.num_classes,
                             num_groups=data.num_groups, metric=metric)
    if robust:
        out.update({"eps": float(eps), "alpha": float(alpha), "steps": int(steps)})
    if return_logits:
        out["logits"] = {"clean": lc.cpu(), "adv": None if la is None else la.cpu()}
    return out


def report_table(report: dict, *, kind: str = "rob", what: str = "acc", classes: Sequence[str] | None = None,
                 groups: Sequence[str] | None = None):
    """A ``[class x group]`` pandas table of ``{kind}_{what}_g{z}_c{c}`` from a report (or a result record's
    metrics), e.g. the robust per-class F1 of each group (JIN Table 3)."""
    import pandas as pd

    if kind not in ("std", "rob") or what not in METRICS:
        raise ValueError(f"kind must be 'std' or 'rob' and what 'acc' or 'f1', got {kind!r}, {what!r}")
    nc, ng = int(report["num_classes"]), int(report["num_groups"])
    classes = list(classes) if classes is not None else [str(c) for c in range(nc)]
    groups = list(groups) if groups is not None else [str(z) for z in range(ng)]
    vals = [[report.get(f"{kind}_{what}_g{z}_c{c}", float("nan")) for z in range(ng)] for c in range(nc)]
    return pd.DataFrame(vals, index=pd.Index(classes, name="class"), columns=pd.Index(groups, name="group"))


def measure_robustness(model: nn.Module, ds: GroupDataset, *, idx: torch.Tensor | None = None, batch_size: int = 1024,
                       overshoot: float = 0.02, max_iter: int = 50, candidates: int | None = None, clamp: bool = False,
                       before: str = "boundary", ddof: int = 0, pad: bool = False) -> tuple[dict, dict]:
    """Accuracy and FARMUR Defs. 1-5 of ``model`` on ``ds`` (at ``idx``), partitions = ``ds.g``.

    DeepFool runs only on the correctly classified points (the others are outside ``Corr_f(P)`` and their
    distance is never used; it is stored as None). ``pad``: DeepFool's ``pad`` (recurring batch shapes on CUDA).

    Returns:
        ``(metrics, distances)``: ``metrics`` from ``fralkit.metrics.robustness_report`` plus DeepFool counts
        (``n_unflipped`` correct points that DeepFool never moved across a boundary in ``max_iter`` steps;
        their distance is the last iterate's and is kept), and ``distances`` = ``{"d", "correct", "partition"}``
        lists for redrawing I_P(tau).
    """
    idx = torch.arange(len(ds)) if idx is None else torch.as_tensor(idx).cpu()
    dev = ds.device
    pred = clean_logits(model, ds, idx, batch_size=batch_size, amp=False, channels_last=False).argmax(1)
    y = ds.y[idx.to(dev)]
    correct = pred == y
    x = to_float(ds.x[idx.to(dev)][correct])
    t0 = time.time()
    res = deepfool(model, x, overshoot=overshoot, max_iter=max_iter, candidates=candidates, clamp=clamp, before=before,
                   batch_size=batch_size, pad=pad)
    sync(dev)
    seconds = time.time() - t0
    d = torch.full((len(idx),), float("nan"), dtype=torch.float64)
    d[correct.cpu()] = res.d_theta.double().cpu()
    g = ds.g[idx.to(dev)].cpu()
    metrics = robustness_report(d, correct.cpu(), g, num_groups=ds.num_groups, group_names=ds.groups, ddof=ddof)
    metrics["v_f_sample"] = float(np.var(metrics["rob_p"], ddof=1)) if ds.num_groups > 1 else float("nan")
    summary = res.summary()
    # Farther than the diameter sqrt(D) of the image box [0, 1]^D: no image is that far (unclamped DeepFool
    # on a nearly flat model); counted so that such points are seen, not averaged in silently.
    box = math.sqrt(x[0].numel()) if len(x) else float("inf")
    metrics.update({"n_eval": int(len(idx)), "n_attacked": summary["n"], "n_unflipped": summary["n_unflipped"],
                    "n_beyond_box": int((res.d_theta > box).sum()), "mean_iters": summary["mean_iters"],
                    "max_iters": summary["max_iters"], "deepfool_s": seconds})
    dist = {"d": [None if math.isnan(v) else round(v, 6) for v in d.tolist()],
            "correct": correct.cpu().int().tolist(), "partition": g.tolist()}
    return metrics, dist


def stratified_idx(ds: GroupDataset, n: int | None, seed: int) -> torch.Tensor:
    """Indices of a seeded subset of ``n`` points of ``ds`` stratified by its groups (``ds.g``; all points when
    ``n`` is None, 0 or at least ``len(ds)``): the points ``measure_robustness`` measures when not all of them."""
    if not n or n >= len(ds):
        return torch.arange(len(ds))
    keep, _ = stratified_split(ds.g.cpu(), [n / len(ds), 1 - n / len(ds)], seed)
    return keep
