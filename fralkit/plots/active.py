"""Figures of the JIN study (notebook 03): worst-group performance per round, the worst group's labelled
classes per strategy, and the cost of each selection. Inputs are the tidy frames of
``fralkit.studies.jin`` (built from result records); save with ``fralkit.plots.savefig``."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..active.strategies import STRATEGY_LABELS

__all__ = ["plot_worst_vs_round", "plot_worst_group_classes", "plot_selection_cost", "STRATEGY_FAMILIES",
           "STRATEGY_STYLE", "strategy_family", "strategy_style", "strategy_palette", "strategy_label", "round_explorer"]


def strategy_label(name: str) -> str:
    """The paper's name of a strategy (``"g-rand"`` -> ``"G-RAND"``); the initial model is ``"Init. AT"``."""
    return "Init. AT" if name == "init-at" else STRATEGY_LABELS.get(name, name)


# One fixed colour, marker and line style per strategy, by family, shared by every plot and widget (notebooks 03
# and 05): the active-learning baselines in blues and greys, the group-aware strategies in oranges, greens and
# browns (dashed), JIN and its ablations in reds and purples (thick). Fixed by name, not by position, so a strategy
# keeps its colour whichever subset a figure draws.
STRATEGY_FAMILIES = {
    "active-learning baselines": ("rand", "ent", "cset", "badge", "bald"),
    "group-aware": ("g-rand", "g-ent", "minmax", "opt", "fairal"),
    "JIN and its ablations": ("jin", "jin-p", "jin-r", "jin+fairat"),
}
STRATEGY_STYLE = {
    "rand": {"color": "#7f7f7f", "marker": "o"},
    "ent": {"color": "#1f77b4", "marker": "s"},
    "cset": {"color": "#17becf", "marker": "^"},
    "badge": {"color": "#6b8fd6", "marker": "D"},
    "bald": {"color": "#393b79", "marker": "v"},
    "g-rand": {"color": "#ff7f0e", "marker": "P"},
    "g-ent": {"color": "#e6ab02", "marker": "X"},
    "minmax": {"color": "#2ca02c", "marker": "*"},
    "opt": {"color": "#98c379", "marker": "p"},
    "fairal": {"color": "#8c564b", "marker": "h"},
    "jin": {"color": "#d62728", "marker": "o"},
    "jin-p": {"color": "#e377c2", "marker": "<"},
    "jin-r": {"color": "#9467bd", "marker": ">"},
    "jin+fairat": {"color": "#7b0d1e", "marker": "*"},
    "init-at": {"color": "#444444", "marker": "x"},
}
_FAMILY_LINE = {"active-learning baselines": ("-", 1.3), "group-aware": ("--", 1.3), "JIN and its ablations": ("-", 2.2)}
_OTHER_COLOURS = ("#bcbd22", "#a05195", "#003f5c", "#ff6361")  # strategies added outside the registry's families


def strategy_family(name: str) -> str | None:
    """The family of a strategy name (``STRATEGY_FAMILIES``), ``None`` for one added outside them."""
    return next((fam for fam, names in STRATEGY_FAMILIES.items() if name in names), None)


def strategy_style(name: str) -> dict:
    """Matplotlib keywords of one strategy: its fixed colour and marker, its family's line style and width."""
    style = STRATEGY_STYLE.get(name)
    if style is None:
        style = {"color": _OTHER_COLOURS[sum(map(ord, name)) % len(_OTHER_COLOURS)], "marker": "o"}
    ls, lw = _FAMILY_LINE.get(strategy_family(name), ("-.", 1.3))
    return {**style, "ls": ls, "lw": lw, "label": strategy_label(name)}


def strategy_palette(strategies: Sequence[str] | None = None) -> dict:
    """The fixed colour of each strategy (all of ``STRATEGY_STYLE`` by default), the same in every figure."""
    names = list(STRATEGY_STYLE) if strategies is None else list(strategies)
    return {s: strategy_style(s)["color"] for s in names}


def _legend_outside(ax, **kw) -> None:
    """A legend to the right of ``ax``, outside the data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, **kw)


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
    word = "F1" if frame["metric"].iloc[0] == "f1" else "accuracy"
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
    for ax, metric, label in ((axes[0], "std_worst", f"worst-group standard {word} (%)"),
                              (axes[1], "rob_worst", f"worst-group robust {word} (%)")):
        for s in names:
            sub = frame[frame["strategy"] == s].groupby(x)[metric]
            mean, std = sub.mean(), sub.std().fillna(0.0)
            style = strategy_style(s)
            ax.plot(mean.index, mean.values, ms=4, **style)
            ax.fill_between(mean.index, (mean - std).clip(0, 100), (mean + std).clip(0, 100), color=style["color"],
                            alpha=0.12, lw=0)
        ax.set_ylabel(label)
        ax.set_xlabel("labelled images |D_L|" if x == "labelled" else "active round")
    _legend_outside(axes[1])
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

    frame = cost.reset_index()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(frame) + 1.2))
    by_label = {strategy_label(s): s for s in STRATEGY_STYLE}
    colours = [strategy_style(by_label.get(m, m))["color"] for m in frame["method"]]
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

    word = "F1" if "metric" in rounds and (rounds["metric"] == "f1").any() else "Acc"
    metrics = [(f"{kind} {stat} ({word}, %)", f"{kind.lower()}_{stat.lower()}")
               for stat in ("Worst", "Avg", "Disp") for kind in ("Std", "Rob")]
    names = list(dict.fromkeys(rounds["strategy"]))
    by = "run" if "run" in rounds else "dataset"  # data set, with -resnet18 for Table 7's runs
    ds_dd = w.Dropdown(options=list(dict.fromkeys(rounds[by])), description="dataset")
    metric_dd = w.Dropdown(options=metrics, value="rob_worst", description="metric")
    pick = w.SelectMultiple(options=[(strategy_label(s), s) for s in names], value=tuple(names),
                            description="strategies", rows=min(8, len(names)))
    out = w.Output()

    def draw(*_):
        sub = rounds[(rounds[by] == ds_dd.value) & rounds["strategy"].isin(pick.value)]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 3.5))
            for s, g in sub.groupby("strategy", sort=False):
                mean = g.groupby("labelled")[metric_dd.value].mean()
                ax.plot(mean.index, mean.values, ms=4, **strategy_style(s))
            ax.set_xlabel("labelled images |D_L|")
            ax.set_ylabel(metric_dd.label)
            _legend_outside(ax)
            plt.show()

    for widget in (ds_dd, metric_dd, pick):
        widget.observe(draw, names="value")
    draw()
    return w.VBox([w.HBox([ds_dd, metric_dd]), pick, out])
