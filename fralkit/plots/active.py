"""Figures of the JIN study (notebook 03): worst-group performance per round, the worst group's labelled
classes per strategy, and the cost of each selection. Inputs are the tidy frames of
``fralkit.studies.jin`` (built from result records); save with ``fralkit.plots.savefig``."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..active.strategies import STRATEGY_LABELS

__all__ = ["plot_worst_vs_round", "plot_worst_group_classes", "plot_selection_cost", "strategy_palette",
           "strategy_label", "round_explorer"]


def strategy_label(name: str) -> str:
    """The paper's name of a strategy (``"g-rand"`` -> ``"G-RAND"``); the initial model is ``"Init. AT"``."""
    return "Init. AT" if name == "init-at" else STRATEGY_LABELS.get(name, name)


def strategy_palette(strategies: Sequence[str]) -> dict:
    """One colour per strategy (JIN always the same strong colour, baselines from the colour-blind palette)."""
    import seaborn as sns

    others = [s for s in strategies if s not in ("jin", "init-at")]
    colours = sns.color_palette("colorblind") + sns.color_palette("dark")  # 20 distinct colours
    pal = {s: colours[(i + 1) % len(colours)] for i, s in enumerate(others)}
    pal["jin"] = colours[0]
    pal["init-at"] = (0.4, 0.4, 0.4)
    return pal


def plot_worst_vs_round(rounds, *, strategies: Sequence[str] | None = None, title: str | None = None,
                        x: str = "labelled"):
    """Worst-group standard and robust performance (JIN Eq. 1) against the labelled set size, one line per
    strategy (mean over seeds, band = ± 1 std); round 0 is the shared initial model.

    Args:
        rounds: ``jin_study.rounds_frame(records)``.
        strategies: which lines, in this order (default: all).
        x: ``"labelled"`` (|D_L|) or ``"round"``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = rounds if strategies is None else rounds[rounds["strategy"].isin(strategies)]
    names = list(dict.fromkeys(strategies or frame["strategy"]))
    names = [s for s in names if s in set(frame["strategy"])]
    pal = strategy_palette(names)
    word = "F1" if frame["metric"].iloc[0] == "f1" else "accuracy"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, metric, label in ((axes[0], "std_worst", f"worst-group standard {word} (%)"),
                              (axes[1], "rob_worst", f"worst-group robust {word} (%)")):
        for s in names:
            sub = frame[frame["strategy"] == s].groupby(x)[metric]
            mean, std = sub.mean(), sub.std().fillna(0.0)
            lw = 2.4 if s == "jin" else 1.3
            ls = "--" if s in ("jin-p", "jin-r", "g-ent") else "-"
            ax.plot(mean.index, mean.values, marker="o", ms=3, lw=lw, ls=ls, color=pal[s], label=strategy_label(s))
            ax.fill_between(mean.index, mean - std, mean + std, color=pal[s], alpha=0.12, lw=0)
        ax.set_ylabel(label)
        ax.set_xlabel("labelled images |D_L|" if x == "labelled" else "active round")
    axes[1].legend(fontsize=7, ncol=2, loc="best")
    sns.despine(fig)
    fig.suptitle(title or f"{frame['dataset'].iloc[0]} ({frame['backbone'].iloc[0]}): minimax fairness per round", fontsize=10)
    fig.tight_layout()
    return fig


def plot_worst_group_classes(shares, *, title: str | None = None):
    """Class distribution of the worst group's labelled samples at the end of each run (JIN Table 3's
    "Class Freq"): one stacked bar per strategy, shares in %, rare classes on the right.

    Args:
        shares: ``jin_study.class_share_frame(records)``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    wide = shares.pivot_table(index="strategy", columns="class", values="share", sort=False)
    wide = wide[list(dict.fromkeys(shares["class"]))]
    order = list(dict.fromkeys(shares["strategy"]))
    wide = wide.loc[order[::-1]]
    colours = sns.color_palette("mako", wide.shape[1])
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(wide) + 1.0))
    left = np.zeros(len(wide))
    for i, cname in enumerate(wide.columns):
        vals = wide[cname].fillna(0).values
        ax.barh([strategy_label(s) for s in wide.index], vals, left=left, color=colours[i], label=str(cname),
                edgecolor="white", lw=0.5)
        for j, v in enumerate(vals):
            if v >= 7:
                ax.text(left[j] + v / 2, j, f"{v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if i < wide.shape[1] / 2 else "black")
        left += vals
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the worst group's labelled samples (%)")
    ax.legend(title="class", fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(title or "labelled classes of the worst group (end of the run)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_selection_cost(cost, *, title: str | None = None):
    """JIN Table 4 as bars: selection time of each strategy over all rounds beside the initial adversarial
    training (log scale), annotated with the share of it.

    Args:
        cost: ``jin_study.table_cost(records)``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = cost.reset_index()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(frame) + 1.2))
    colours = [(0.4, 0.4, 0.4) if m == "Init. AT" else (sns.color_palette("colorblind")[0] if m == "JIN" else
                                                         sns.color_palette("colorblind")[7]) for m in frame["method"]]
    secs = frame["seconds"].clip(lower=1e-3)
    ax.barh(frame["method"][::-1], secs[::-1], color=colours[::-1])
    ax.set_xscale("log")
    for j, (s, share) in enumerate(zip(secs[::-1], frame["share of Init. AT (%)"][::-1])):
        ax.text(s * 1.08, j, f"{share:.1f} %", va="center", fontsize=7)
    ax.set_xlabel("seconds (all rounds; log scale)")
    ax.set_title(title or "selection cost vs the initial adversarial training", fontsize=10)
    fig.tight_layout()
    return fig


def round_explorer(rounds):
    """ipywidgets: pick a dataset, a metric and strategies to redraw the per-round curves (for JupyterLab)."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    metrics = ["std_worst", "rob_worst", "std_avg", "rob_avg", "std_disp", "rob_disp"]
    names = list(dict.fromkeys(rounds["strategy"]))
    ds_dd = w.Dropdown(options=list(dict.fromkeys(rounds["dataset"])), description="dataset")
    metric_dd = w.Dropdown(options=metrics, description="metric")
    pick = w.SelectMultiple(options=names, value=tuple(names), description="strategies", rows=min(8, len(names)))
    out = w.Output()

    def draw(*_):
        sub = rounds[(rounds["dataset"] == ds_dd.value) & rounds["strategy"].isin(pick.value)]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for s, g in sub.groupby("strategy", sort=False):
                mean = g.groupby("labelled")[metric_dd.value].mean()
                ax.plot(mean.index, mean.values, marker="o", ms=3, label=s, lw=2.4 if s == "jin" else 1.2)
            ax.set_xlabel("labelled images |D_L|")
            ax.set_ylabel(metric_dd.value + " (%)")
            ax.legend(fontsize=7)
            plt.show()

    for widget in (ds_dd, metric_dd, pick):
        widget.observe(draw, names="value")
    draw()
    return w.VBox([w.HBox([ds_dd, metric_dd]), pick, out])
