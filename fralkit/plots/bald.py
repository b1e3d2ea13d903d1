"""Figures of the BALD+GRAD study (Branchaud-Charron et al.): Fig. 1 (uncertainty gap), Figs. 2-3 (learning curves),
the share of under-represented cells in the labelled set, and the queried images of a step split by group (static and ipywidgets).

Every function takes the long per-step table of ``fralkit.studies.bald_grad.steps_frame`` (one row per
dataset, method, seed and step), so figures are drawn from the stored result records. One colour per
heuristic, one line style per GRAD weight: solid = standard training, dashed = lambda 0.5, dotted = lambda 1.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..active.methods import TABLE1_METHODS, method_label, parse_method
from ..data import dataset_facts
from .active import strategy_style

__all__ = ["method_style", "plot_uncertainty_gap", "plot_learning_curves", "plot_rare_share", "plot_query_grid",
           "query_browser"]

# Each heuristic in the colour of its family's strategy in notebook 03 (plots.active.STRATEGY_STYLE): uniform as
# RAND, BALD as BALD, the group-balancing oracle as G-RAND; REPAIR (no heuristic) grey-black.
_HEURISTIC_STRATEGY = {"uniform": "rand", "bald": "bald", "balanced": "g-rand", None: "init-at"}
_LAMBDA_STYLE = {0.0: "-", 0.5: "--", 1.0: ":"}
_Y_LABEL = {"parity": "predictive parity δ_A (%)", "accuracy": "accuracy (%)", "nll": "NLL",
            "bald_gap": "|Δ mean BALD| between groups", "eq_odds": "equalized odds (%)", "eq_opp": "equal opportunity (%)"}
_PERCENT = ("parity", "accuracy", "eq_odds", "eq_opp", "dem_parity")
_RANGE = {"accuracy": (0.0, 100.0), "share": (0.0, 1.0)}  # a ± std band never leaves the metric's range


def _title(dataset: str) -> str:
    return dataset_facts(dataset, strict=False).title


def method_style(method: str) -> dict:
    """Matplotlib line keywords of a method: colour and marker by heuristic (shared with notebook 03's strategy
    families), line style by GRAD weight."""
    spec = parse_method(method)
    base = strategy_style(_HEURISTIC_STRATEGY.get(spec.heuristic, "init-at"))
    return {"color": base["color"], "marker": base["marker"], "linestyle": _LAMBDA_STYLE.get(spec.lambd, "-."),
            "label": method_label(method)}


def _methods(frame) -> list[str]:
    present = list(dict.fromkeys(frame["method"]))
    order = {m: i for i, m in enumerate(TABLE1_METHODS)}
    return sorted(present, key=lambda m: order.get(m, len(order)))


def _draw_metric(ax, frame, metric: str, *, x: str = "labelled") -> None:
    """Mean over seeds with a ±1 std band per method; single-step runs (REPAIR) as a horizontal line."""
    scale = 100.0 if metric in _PERCENT else 1.0
    for method in _methods(frame):
        sub = frame[frame["method"] == method]
        style = method_style(method)
        stats = sub.groupby("step").agg(x=(x, "mean"), mean=(metric, "mean"), std=(metric, "std")).sort_index()
        mean, std = stats["mean"].to_numpy() * scale, np.nan_to_num(stats["std"].to_numpy()) * scale
        if len(stats) == 1:
            ax.axhline(mean[0], color=style["color"], linestyle="-.", linewidth=1.2, label=style["label"])
            continue
        ax.plot(stats["x"], mean, color=style["color"], linestyle=style["linestyle"], marker=style["marker"], ms=3,
                linewidth=1.6, label=style["label"])
        low, high = _RANGE.get(metric, (0.0, 100.0 if metric in _PERCENT else None))  # gaps, parity, NLL: >= 0
        ax.fill_between(stats["x"], np.clip(mean - std, low, high), np.clip(mean + std, low, high), color=style["color"],
                        alpha=0.12, linewidth=0)
    ax.set_xlabel("labelled examples" if x == "labelled" else x)
    ax.set_ylabel(_Y_LABEL.get(metric, metric))


def plot_uncertainty_gap(frame, *, datasets: Sequence[str] | None = None):
    """Fig. 1 of the paper: absolute difference in mean epistemic uncertainty (BALD) between groups on the
    held-out set, against the number of labelled examples; one panel per dataset, mean ± std over seeds."""
    import matplotlib.pyplot as plt

    datasets = list(datasets or dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.4), squeeze=False)
    for k, (ax, dataset) in enumerate(zip(axes[0], datasets)):
        _draw_metric(ax, frame[frame["dataset"] == dataset], "bald_gap")
        ax.set_title(f"({'abcdefgh'[k]}) {_title(dataset)}")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("Epistemic-uncertainty gap between groups", fontsize=10)
    fig.tight_layout()
    return fig


def plot_learning_curves(frame, dataset: str, *, metrics: Sequence[str] = ("parity", "accuracy", "nll")):
    """Figs. 2-3 of the paper: predictive parity, test accuracy and NLL against the labelled count for one dataset."""
    import matplotlib.pyplot as plt

    sub = frame[frame["dataset"] == dataset]
    if sub.empty:
        raise ValueError(f"no rows for dataset {dataset!r}; have {sorted(set(frame['dataset']))}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        _draw_metric(ax, sub, metric)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(f"Uniform labelling vs BALD: {_title(dataset)} ({dataset})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_rare_share(frame, *, datasets: Sequence[str] | None = None):
    """Share of the under-represented class x group cells in the labelled set against the labelled count:
    which examples each heuristic asks for (minority group: the red glyphs; sensitive attribute: red *a*, blue *d*)."""
    import matplotlib.pyplot as plt

    if "labelled_rare" not in frame.columns:
        raise ValueError(f"column 'labelled_rare' not in the frame (have {sorted(frame.columns)})")
    datasets = list(datasets or dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = frame[(frame["dataset"] == dataset) & (frame["method"] != "repair")].copy()
        sub["share"] = sub["labelled_rare"] / sub["labelled"]
        _draw_metric(ax, sub, "share")
        ax.set_ylabel("share of under-represented cells")
        ax.set_title(f"{_title(dataset)}: {dataset_facts(dataset, strict=False).rare_cells or 'rare class x group cells'}")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig



def plot_query_grid(train, idx, *, cols: int = 10, max_per_group: int = 30, title: str | None = None):
    """The images at ``idx`` (e.g. the queries of one step) as a grid, one block of rows per group, class below each."""
    import matplotlib.pyplot as plt

    idx = np.asarray([int(i) for i in idx], dtype=np.int64)
    g = train.g.cpu().numpy()[idx] if len(idx) else np.zeros(0, dtype=np.int64)
    blocks = [(a, idx[g == a][:max_per_group], int((g == a).sum())) for a in range(train.num_groups)]
    rows = [max(1, int(np.ceil(len(b) / cols))) for _, b, _ in blocks]
    fig, axes = plt.subplots(sum(rows), cols, figsize=(0.72 * cols, 0.95 * sum(rows) + 0.5), squeeze=False)
    first = 0
    for (a, members, total), r in zip(blocks, rows):
        block = axes[first:first + r].flat
        for k, ax in enumerate(block):
            ax.set_xticks([]); ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if k < len(members):
                img = train.x[int(members[k])].cpu().permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
                ax.set_xlabel(train.classes[int(train.y[int(members[k])])], fontsize=6, labelpad=1)
        shown = f", first {len(members)} shown" if total > len(members) else ""
        axes[first, 0].set_title(f"group '{train.groups[a]}': {total} of {len(idx)} queries{shown}", loc="left",
                                 fontsize=8, pad=3)
        first += r
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.05, top=0.86 if title else 0.92, wspace=0.08, hspace=0.55)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def query_browser(records: Sequence[dict], train_sets: dict, *, max_per_group: int = 30):
    """ipywidgets view: pick dataset, method, seed and labelling step; see that step's queries split by group.

    Args:
        records: result records of the BALD+GRAD study (their ``queried`` lists index the training split).
        train_sets: dataset name -> its training ``GroupDataset`` (``bald_study.load_train_sets(records)``).
        max_per_group: images shown per group.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    runs = {(r["config"]["dataset"], r["config"]["method"], r["config"]["seed"]): r for r in records
            if r["config"]["method"] != "repair"}
    if not runs:
        return w.HTML("No active-learning runs to browse.")
    # Wide enough for the longest label ("Balanced uniform + GRAD (λ = 0.5)"), which the default 300 px cuts.
    ds_dd = w.Dropdown(options=sorted({k[0] for k in runs}), description="dataset", layout=w.Layout(width="260px"))
    m_dd = w.Dropdown(options=[(method_label(m), m) for m in TABLE1_METHODS if any(k[1] == m for k in runs)],
                      description="method", layout=w.Layout(width="380px"))
    s_dd = w.Dropdown(options=sorted({k[2] for k in runs}), description="seed", layout=w.Layout(width="160px"))
    step = w.IntSlider(min=0, max=0, description="step", continuous_update=False)
    out = w.Output()

    def current():
        return runs.get((ds_dd.value, m_dd.value, s_dd.value))

    def draw(*_):
        rec = current()
        with out:
            out.clear_output(wait=True)
            if rec is None:
                print("no run for this choice")
                return
            steps = [s for s in steps_from_record(rec) if s.get("queried")]
            step.max = max(0, len(steps) - 1)
            if not steps:
                print("this run queried nothing")
                return
            s = steps[min(step.value, len(steps) - 1)]
            fig = plot_query_grid(train_sets[ds_dd.value], s["queried"], max_per_group=max_per_group,
                                  title=f"{ds_dd.value} · {method_label(m_dd.value)} · seed {s_dd.value} · "
                                        f"the {len(s['queried'])} queries after step {s['step']} "
                                        f"({s['labelled']} labelled)")
            plt.show()
            plt.close(fig)

    for widget in (ds_dd, m_dd, s_dd, step):
        widget.observe(draw, names="value")
    draw()
    return w.VBox([w.HBox([ds_dd, m_dd, s_dd]), step, out])


def steps_from_record(record: dict) -> list[dict]:
    """The per-step dicts of a stored record (the inverse of how the study's ``run`` stores them)."""
    metrics = record["metrics"]
    n_steps = len(next(iter(metrics.values()))) if metrics else 0
    return [{"step": i, **{k: v[i] for k, v in metrics.items()}} for i in range(n_steps)]
