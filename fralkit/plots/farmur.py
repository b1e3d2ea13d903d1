"""Figures of the FARMUR paper (Mousavi et al.): its Fig. 2 (I_P(tau) of every sub-partition and their mean),
bars of Rob(P) per sub-partition, and an interactive tau slider.

Everything is drawn from saved result records (``fralkit.studies.farmur``), never from live models, so a figure
can be redrawn without re-running the study."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..metrics.robustness import curves_from_record

METHODS = ("natural", "trades", "farmur")
METHOD_TITLES = {"natural": "Natural", "trades": "Adversarial", "farmur": "FARMUR"}

__all__ = ["plot_i_p_grid", "plot_rob_p", "tau_explorer", "select_records"]

SUBPARTITION_COLOR = "tab:blue"
MEAN_COLOR = "tab:red"
VULNERABLE_COLOR = "tab:orange"


def select_records(records: Sequence[dict], seed: int | None = None) -> dict[str, dict[str, dict]]:
    """``{row label: {method: record}}`` for one seed (default: the smallest seed of each row), in study order."""
    out: dict[str, dict[str, dict]] = {}
    for rec in records:
        if not rec.get("distances"):
            continue
        label = rec["row_label"]
        want = seed if seed is not None else min(r["config"]["seed"] for r in records if r["row_label"] == label)
        if rec["config"]["seed"] == want:
            out.setdefault(label, {})[rec["config"]["method"]] = rec
    if not out:
        raise ValueError(f"no records with saved distances{'' if seed is None else f' for seed {seed}'}")
    return out


def _tau_max(recs: Sequence[dict], q: float = 99.5) -> float:
    vals = [v for rec in recs for v, c in zip(rec["distances"]["d"], rec["distances"]["correct"]) if c and v is not None]
    return float(np.percentile(vals, q) * 1.05) if vals else 1.0


def plot_i_p_grid(records: Sequence[dict], *, seed: int | None = None, num: int = 400, sharex: str = "row",
                  methods: Sequence[str] = METHODS):
    """Fig. 2 of the paper: I_P(tau) of every sub-partition (thin blue) and their mean I_f (red).

    One panel per (row, method); the y axis is shared by all panels, the tau axis by the panels of a row
    (``sharex="row"``: data sets differ in scale) or by all (``sharex="all"``). Each title gives Rob(f) and
    V_f(P) of that model.
    """
    if sharex not in ("row", "all"):
        raise ValueError(f"sharex must be 'row' or 'all', got {sharex!r}")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    sel = select_records(records, seed)
    labels = list(sel)
    fig, axes = plt.subplots(len(labels), len(methods), figsize=(3.3 * len(methods), 2.5 * len(labels)),
                             squeeze=False, sharey=True, sharex=True if sharex == "all" else False)
    global_max = _tau_max([r for row in sel.values() for r in row.values()])
    for i, label in enumerate(labels):
        row_max = global_max if sharex == "all" else _tau_max(list(sel[label].values()))
        tau = np.linspace(0.0, row_max, num)
        for j, method in enumerate(methods):
            ax = axes[i, j]
            rec = sel[label].get(method)
            if rec is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            else:
                curves, mean = curves_from_record(rec, tau)
                for curve in curves:
                    ax.plot(tau, curve, color=SUBPARTITION_COLOR, lw=0.8, alpha=0.75)
                ax.plot(tau, mean, color=MEAN_COLOR, lw=2.0)
                m = rec["metrics"]
                ax.set_title(f"{METHOD_TITLES[method]}: Rob(f)={m['rob_f']:.3f}, V_f={m['v_f']:.2g}", fontsize=8)
            ax.set_xlim(0, row_max)
            ax.set_ylim(0, 1.02)
            # at most 5 ticks and none at the right end, where it would run into the next panel's first label
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, prune="upper"))
            if j == 0:
                ax.set_ylabel(f"{label}\nI_P(τ)", fontsize=8)
            if i == len(labels) - 1:
                ax.set_xlabel("τ (L2 distance to the boundary, [0, 1] pixels)", fontsize=8)
    from matplotlib.lines import Line2D

    axes[0, -1].legend([Line2D([], [], color=SUBPARTITION_COLOR, lw=0.8), Line2D([], [], color=MEAN_COLOR, lw=2)],
                       ["I_P(τ), one per sub-partition", "mean I_f(τ)"], loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def plot_rob_p(records: Sequence[dict], *, seed: int | None = None, methods: Sequence[str] = METHODS):
    """Rob(P) per sub-partition and method, one panel per row; dashed lines at Rob(f) (Def. 5's threshold).
    Hatched bars are the vulnerable sub-partitions (Rob(P) < Rob(f))."""
    import matplotlib.pyplot as plt

    sel = select_records(records, seed)
    labels = list(sel)
    fig, axes = plt.subplots(len(labels), 1, figsize=(7.5, 2.3 * len(labels)), squeeze=False)
    width = 0.8 / len(methods)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, label in zip(axes[:, 0], labels):
        names = None
        for j, method in enumerate(methods):
            rec = sel[label].get(method)
            if rec is None:
                continue
            m = rec["metrics"]
            names = rec.get("groups") or [str(k) for k in range(len(m["rob_p"]))]
            xs = np.arange(len(m["rob_p"])) + (j - (len(methods) - 1) / 2) * width
            bars = ax.bar(xs, m["rob_p"], width=width, color=colors[j % len(colors)], label=METHOD_TITLES[method])
            for k in m["vulnerable"]:
                bars[k].set_hatch("///")
            ax.axhline(m["rob_f"], color=colors[j % len(colors)], ls="--", lw=1)
        if names is not None:
            ax.set_xticks(np.arange(len(names)))
            ax.set_xticklabels(names, fontsize=7)
        ax.set_ylabel("Rob(P)")
        ax.set_title(f"{label}: Rob(P) per sub-partition (hatched: vulnerable, Rob(P) < Rob(f), dashed)", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=len(methods))
    fig.tight_layout()
    return fig


def tau_explorer(records: Sequence[dict], *, seed: int | None = None):
    """ipywidgets: pick a row and move tau; bars show each sub-partition's I_P(tau) per method, coloured by
    Def. 5 (vulnerable: Rob(P) < Rob(f), from the whole curve, not from this tau). For JupyterLab."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    sel = select_records(records, seed)
    labels = list(sel)
    row_dd = w.Dropdown(options=labels, description="row")
    tau_sl = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.005, description="τ", readout_format=".3f",
                           continuous_update=False)
    out = w.Output()

    def set_range(*_):
        tmax = _tau_max(list(sel[row_dd.value].values()), q=95.0)  # a few outliers would stretch the slider
        tau_sl.max = round(tmax, 3)
        tau_sl.step = max(tmax / 200, 1e-4)

    def draw(*_):
        recs = sel[row_dd.value]
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, len(recs), figsize=(3.4 * len(recs), 2.8), squeeze=False, sharey=True)
            for ax, (method, rec) in zip(axes[0], recs.items()):
                curves, mean = curves_from_record(rec, [tau_sl.value])
                names = rec.get("groups") or [str(k) for k in range(len(curves))]
                vul = set(rec["metrics"]["vulnerable"])
                cols = [VULNERABLE_COLOR if k in vul else SUBPARTITION_COLOR for k in range(len(curves))]
                ax.bar(range(len(curves)), curves[:, 0], color=cols)
                ax.axhline(mean[0], color=MEAN_COLOR, lw=1.5)
                ax.set_xticks(range(len(names)))
                ax.set_xticklabels(names, fontsize=7, rotation=45 if len(names) > 5 else 0)
                ax.set_ylim(0, 1.02)
                ax.set_title(f"{METHOD_TITLES.get(method, method)}: I_f(τ)={mean[0]:.3f}\n"
                             f"vulnerable: {', '.join(names[k] for k in sorted(vul)) or 'none'}", fontsize=8)
            axes[0, 0].set_ylabel(f"I_P(τ = {tau_sl.value:.3f})")
            fig.tight_layout()
            plt.show()

    row_dd.observe(lambda *_: (set_range(), draw()), names="value")
    tau_sl.observe(draw, names="value")
    set_range()
    draw()
    note = w.HTML("<small>orange: vulnerable sub-partitions (Rob(P) &lt; Rob(f), Def. 5); blue: robust; "
                  "red line: I_f(τ), the mean over sub-partitions</small>")
    return w.VBox([w.HBox([row_dd, tau_sl]), note, out])
