"""Figures of notebook 02 (natural vs PGD-AT vs TRADES vs FairAT), drawn from the tidy frames of ``fralkit.studies.adversarial`` (built from result records).

``plot_classwise`` (FairAT's class-wise robust accuracy per method), ``plot_group_accuracy`` (JIN's groups:
clean and robust per group), ``plot_training_curves`` (loss, accuracy, validation clean / robust accuracy per
epoch) and ``class_explorer`` (an ipywidgets corner: pick a data set, method and group, see its per-class
clean and robust accuracy). Bars are means over seeds with one standard deviation.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["plot_classwise", "plot_group_accuracy", "plot_training_curves", "class_explorer"]



def _one_legend(axes, title: str | None = None) -> None:
    """Keep a single legend, beside the last panel (outside the bars), and drop the others."""
    axes = list(axes)
    for ax in axes[:-1]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[-1].legend(title=title, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))

def _of(frame, dataset: str):
    """The rows of one data set of a tidy frame (``fralkit.studies.adversarial.*_frame``)."""
    df = frame[frame["dataset"] == dataset]
    if df.empty:
        raise ValueError(f"no rows for dataset {dataset!r}; have {sorted(set(frame['dataset']))}")
    return df


def plot_classwise(frame, dataset: str, *, group: str = "all", kinds: Sequence[str] = ("clean", "robust")):
    """Class-wise accuracy per method (bars: mean ± std over seeds), one panel per kind; ``group`` restricts
    to one group's examples (``"all"``: every group). The robust panel is FairAT's class-wise robustness."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = _of(frame, dataset)
    df = df[df["group"] == group]
    if df.empty:
        raise ValueError(f"no class-wise values for group {group!r}")
    df = df.assign(acc=df["acc"] * 100)
    n_cls = df["class"].nunique()
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(5.0, 0.55 * n_cls * len(kinds) + 3), 3.4), squeeze=False,
                             sharey=True)
    for ax, kind in zip(axes[0], kinds):
        sns.barplot(data=df[df["kind"] == kind], x="class", y="acc", hue="method", errorbar="sd", ax=ax,
                    err_kws={"linewidth": 1}, capsize=0.1)
        ax.set_title(f"{kind} accuracy per class" + ("" if group == "all" else f" (group {group})"))
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
    _one_legend(axes[0])
    fig.suptitle(dataset, fontsize=10)
    fig.tight_layout()
    return fig


def plot_group_accuracy(frame, dataset: str):
    """Clean and robust performance of each group per method (JIN Eq. 1's per-group terms), mean ± std."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = _of(frame, dataset)
    df = df.assign(value=df["value"] * 100)
    metric = "macro-F1" if df["metric"].iloc[0] == "f1" else "accuracy"
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=True)
    for ax, kind in zip(axes, ("clean", "robust")):
        sns.barplot(data=df[df["kind"] == kind], x="method", y="value", hue="group", errorbar="sd", ax=ax,
                    err_kws={"linewidth": 1}, capsize=0.1)
        ax.set_title(f"{kind}: per group")
        ax.set_xlabel("")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(0, 100)
    _one_legend(axes, title="group")
    fig.suptitle(dataset, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curves(frame, dataset: str):
    """Per-epoch training loss, training accuracy and validation clean / robust accuracy per method
    (mean over seeds, band: ± std)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = _of(frame, dataset)
    curves = [c for c in ("train loss", "train accuracy", "val clean accuracy", "val robust accuracy")
              if c in set(df["curve"])]
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.0), squeeze=False)
    for ax, curve in zip(axes[0], curves):
        sns.lineplot(data=df[df["curve"] == curve], x="epoch", y="value", hue="method", errorbar="sd", ax=ax,
                     marker="o", markersize=3)
        ax.set_title(curve)
        ax.set_ylabel("")
    _one_legend(axes[0])
    fig.suptitle(dataset, fontsize=10)
    fig.tight_layout()
    return fig


def class_explorer(frame):
    """An ipywidgets corner: choose data set, method and group; shows that group's per-class clean and robust
    accuracy (mean over seeds) as bars and a table. Returns the widget (``None`` without ipywidgets)."""
    try:
        import ipywidgets as widgets
    except ImportError:
        return None
    import matplotlib.pyplot as plt

    df = frame
    if df.empty:
        return None
    datasets = sorted(df["dataset"].unique())
    methods = list(dict.fromkeys(df["method"]))

    def show(dataset: str, method: str, group: str):
        sub = df[(df["dataset"] == dataset) & (df["method"] == method) & (df["group"] == group)]
        if sub.empty:
            print(f"no values for {dataset} / {method} / group {group}")
            return
        wide = sub.groupby(["class", "kind"], sort=False)["acc"].mean().mul(100).unstack("kind")
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(wide) + 2), 2.8))
        wide.plot.bar(ax=ax, rot=0)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{dataset}: {method}, group {group}")
        plt.show()
        print(wide.round(1).to_string())

    groups = ["all"] + [g for g in dict.fromkeys(df["group"]) if g != "all"]
    return widgets.interactive(show, dataset=widgets.Dropdown(options=datasets, description="data set"),
                               method=widgets.Dropdown(options=methods, description="method"),
                               group=widgets.Dropdown(options=groups, description="group"))
