"""Figures: one visual style, one way to save.

``savefig(fig, name)`` is the only way a figure reaches ``fralkit.utils.figures_dir()`` (``runs/<profile>/figures/``,
or the committed ``figures/`` from a ``reproduce`` run of the ``gpu`` or ``paper`` profile): PNG (150 dpi) and PDF,
written atomically and without the metadata that would make every run a new file in git. The figure stays open,
so a notebook shows it inline (also in the executed copies papermill writes). Per-study plot
functions live in the submodules (``adversarial``, ``active``, ``farmur``, ``bald``) and the data plots here.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils import atomic_write_bytes, figures_dir

__all__ = ["figures_dir", "set_style", "savefig", "plot_sample_grid", "plot_count_heatmap", "plot_split_table",
           "dataset_browser", "GROUP_PALETTE"]

GROUP_PALETTE = "colorblind"


def set_style() -> None:
    """The project's one look: seaborn whitegrid, colour-blind palette, compact fonts."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=GROUP_PALETTE, font_scale=0.9)
    mpl.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "axes.titlesize": "medium"})


def savefig(fig, name: str, *, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150, close: bool = False) -> list[Path]:
    """Save ``fig`` as ``<figures_dir()>/<name>.png`` and ``.pdf`` (no churn metadata); return the paths.

    Args:
        fig: a matplotlib Figure.
        name: file stem, conventionally prefixed by the notebook number (``"01_samples_synbols-utk"``).
        formats: file types to write.
        dpi: raster resolution for PNG.
        close: close the figure after saving (scripts that draw many figures; a notebook shows and closes
            each figure at the end of its cell).
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file stem like '01_samples', got {name!r}")
    out = []
    for fmt in formats:
        meta = {"Software": None} if fmt == "png" else {"CreationDate": None, "Producer": None} if fmt == "pdf" else None
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
        out.append(atomic_write_bytes(figures_dir() / f"{name}.{fmt}", buf.getvalue()))
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return out


def plot_sample_grid(ds, *, per_cell: int = 4, max_classes: int = 10, seed: int = 0, title: str | None = None):
    """Grid of example images: one row per class, ``per_cell`` columns per group (groups side by side)."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    classes = list(range(min(ds.num_classes, max_classes)))
    ncols = per_cell * ds.num_groups
    fig, axes = plt.subplots(len(classes), ncols, figsize=(0.9 * ncols, 0.95 * len(classes) + 0.4), squeeze=False)
    y, g = ds.y.cpu().numpy(), ds.g.cpu().numpy()
    for r, c in enumerate(classes):
        for gi in range(ds.num_groups):
            idx = np.nonzero((y == c) & (g == gi))[0]
            pick = rng.choice(idx, size=min(per_cell, len(idx)), replace=False) if len(idx) else []
            for k in range(per_cell):
                ax = axes[r, gi * per_cell + k]
                ax.set_xticks([]); ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
                if k < len(pick):
                    img = ds.x[pick[k]].cpu().permute(1, 2, 0).numpy()
                    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
                if r == 0 and k == 0:
                    ax.set_title(f"group: {ds.groups[gi]}", loc="left", fontsize=8)
            axes[r, 0].set_ylabel(ds.classes[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title or ds.name, fontsize=10)
    fig.tight_layout()
    return fig


def plot_count_heatmap(ds, *, ax=None, title: str | None = None):
    """Heatmap of example counts per class x group."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    counts = ds.counts().numpy()
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * ds.num_groups, 0.9 + 0.35 * ds.num_classes))
    sns.heatmap(counts, annot=True, fmt="d", cmap="mako", cbar=False, ax=ax,
                xticklabels=ds.groups, yticklabels=ds.classes)
    ax.set_xlabel("group"); ax.set_ylabel("class")
    ax.set_title(title or f"{ds.name}: counts (n={len(ds)})")
    return ax.figure


def plot_split_table(sizes):
    """One panel per data set: split sizes as bars stacked by group (``sizes`` from ``data.split_size_table``)."""
    import matplotlib.pyplot as plt

    frame = sizes.reset_index()
    names = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        sub = frame[frame["dataset"] == name].pivot(index="split", columns="group", values="n")
        sub = sub.loc[[s for s in ("train", "val", "test") if s in sub.index], list(dict.fromkeys(frame[frame["dataset"] == name]["group"]))]
        sub.plot(kind="bar", stacked=True, ax=ax, width=0.7, rot=0, legend=True)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("")
        ax.legend(fontsize=7, title=None)
    axes[0, 0].set_ylabel("images")
    fig.tight_layout()
    return fig


def dataset_browser(data: dict, *, per_page: int = 24):
    """ipywidgets browser: dataset / split / group / class dropdowns and an image grid (for JupyterLab)."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    names = list(data)
    ds_dd = w.Dropdown(options=names, description="dataset")
    split_dd = w.Dropdown(options=["train", "val", "test"], description="split")
    group_dd = w.Dropdown(description="group")
    class_dd = w.Dropdown(description="class")
    out = w.Output()

    def current():
        return getattr(data[ds_dd.value], split_dd.value)

    def refresh_options(*_):
        ds = current()
        group, cls = group_dd.value, class_dd.value
        group_dd.options = [(gname, gi) for gi, gname in enumerate(ds.groups)]
        class_dd.options = [(cname, ci) for ci, cname in enumerate(ds.classes)]
        # keep the selection where the new data set has it, else its first group and class: never empty
        group_dd.value = group if group is not None and group < len(ds.groups) else 0
        class_dd.value = cls if cls is not None and cls < len(ds.classes) else 0

    def draw(*_):
        ds = current()
        if group_dd.value is None or class_dd.value is None:
            return
        idx = ((ds.y == class_dd.value) & (ds.g == group_dd.value)).nonzero().flatten()[:per_page].cpu()
        with out:
            out.clear_output(wait=True)
            cols = 8
            rows = max(1, (len(idx) + cols - 1) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
            for k, ax in enumerate(axes.flat):
                ax.axis("off")
                if k < len(idx):
                    img = ds.x[idx[k]].cpu().permute(1, 2, 0).numpy()
                    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            fig.suptitle(f"{ds_dd.value} / {split_dd.value}: class {ds.classes[class_dd.value]}, group {ds.groups[group_dd.value]} "
                         f"({len(idx)} shown)", fontsize=9)
            plt.show()

    for dd in (ds_dd, split_dd):
        dd.observe(refresh_options, names="value")
    for dd in (ds_dd, split_dd, group_dd, class_dd):
        dd.observe(draw, names="value")
    refresh_options()
    draw()
    return w.VBox([w.HBox([ds_dd, split_dd]), w.HBox([group_dd, class_dd]), out])
