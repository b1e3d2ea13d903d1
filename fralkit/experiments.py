"""Result store: one flat JSON per run, keyed by the hash of its full config; every table comes from these files.

A record holds ``config`` (everything that determines the run: study, dataset, method, seed, sizes, ...),
``metrics`` (numbers, or lists of per-round numbers), ``timings``, and provenance (device, versions, git
commit). ``ResultStore.has(config)`` lets a study skip what is done; writes are atomic, so a run cut at any
point leaves only complete records. Tables are rendered with ``summarize`` (mean and std over seeds) and
``save_table`` (CSV + Markdown in ``figures/``), never from live objects.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .utils import atomic_write_json, atomic_write_text, config_hash, figures_dir, repo_root, run_info

__all__ = ["ResultStore", "default_results_dir", "summarize", "format_mean_std", "save_table", "flatten_records"]


def default_results_dir() -> Path:
    """``$FRALKIT_RESULTS``, else ``results/`` in the repository (or the working directory)."""
    env = os.environ.get("FRALKIT_RESULTS")
    if env:
        return Path(env)
    return (repo_root() or Path.cwd()) / "results"


class ResultStore:
    """A folder of result records ``<root>/<study>/<dataset>/<method>-s<seed>-<hash>.json``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_results_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r}, records={len(list(self.root.rglob('*.json')))})"

    @staticmethod
    def key(config: dict) -> str:
        return config_hash(config)

    def path(self, config: dict) -> Path:
        for field in ("study", "dataset", "method", "seed"):
            if field not in config:
                raise ValueError(f"a result config needs '{field}' (got keys {sorted(config)})")
        safe = lambda s: str(s).replace("/", "_").replace(" ", "_")  # noqa: E731
        return (self.root / safe(config["study"]) / safe(config["dataset"])
                / f"{safe(config['method'])}-s{config['seed']}-{self.key(config)}.json")

    def has(self, config: dict) -> bool:
        return self.path(config).exists()

    def load(self, config: dict) -> dict:
        path = self.path(config)
        if not path.exists():
            raise FileNotFoundError(f"no result for this config at {path}")
        return json.loads(path.read_text())

    def save(self, config: dict, metrics: dict, *, timings: dict | None = None, device: str = "auto", **extra) -> dict:
        """Write one record atomically and return it."""
        record = {"config": config, "key": self.key(config), "metrics": metrics, "timings": timings or {},
                  "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **run_info(device), **extra}
        atomic_write_json(self.path(config), record)
        return record

    def records(self, study: str | None = None, **match) -> list[dict]:
        """All records (of ``study``), optionally only those whose config matches ``match``."""
        base = self.root / study if study else self.root
        out = []
        for path in sorted(base.rglob("*.json")) if base.exists() else []:
            try:
                rec = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            cfg = rec.get("config", {})
            if all(cfg.get(k) == v for k, v in match.items()):
                out.append(rec)
        return out


def flatten_records(records: Iterable[dict], metrics: Sequence[str] | None = None):
    """One row per record: config fields plus scalar metrics (the last value of a per-round list)."""
    import pandas as pd

    rows = []
    for rec in records:
        row = {k: v for k, v in rec.get("config", {}).items() if isinstance(v, (str, int, float, bool)) or v is None}
        for name, val in rec.get("metrics", {}).items():
            if metrics is not None and name not in metrics:
                continue
            if isinstance(val, list):
                val = val[-1] if val else np.nan
            if isinstance(val, (int, float)) or val is None:
                row[name] = val
        for name, val in rec.get("timings", {}).items():
            if isinstance(val, (int, float)):
                row[f"time_{name}"] = val
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(records: Iterable[dict] | "pd.DataFrame", by: Sequence[str], metrics: Sequence[str]):
    """Mean and std over seeds: a DataFrame indexed by ``by`` with columns ``<metric>_mean``, ``<metric>_std``, ``n``."""
    import pandas as pd

    df = records if isinstance(records, pd.DataFrame) else flatten_records(records)
    missing = [c for c in list(by) + list(metrics) if c not in df.columns]
    if missing:
        raise ValueError(f"summarize: columns {missing} not in the records (have {sorted(df.columns)})")
    grouped = df.groupby(list(by), sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n"] = grouped.size()
    return out


def format_mean_std(summary, metrics: Sequence[str], *, scale: float = 1.0, digits: int = 1):
    """``"mean ± std"`` strings for each metric (std omitted when only one run)."""
    import pandas as pd

    table = pd.DataFrame(index=summary.index)
    for m in metrics:
        mean, std = summary[f"{m}_mean"] * scale, summary[f"{m}_std"] * scale
        table[m] = [f"{a:.{digits}f}" if (np.isnan(b) or n < 2) else f"{a:.{digits}f} ± {b:.{digits}f}"
                    for a, b, n in zip(mean, std, summary["n"])]
    return table


def save_table(df, name: str, *, index: bool = True) -> list[Path]:
    """Write ``<figures_dir()>/<name>.csv`` and ``.md`` (atomic). A multi-level index becomes named columns, so no
    table shows tuples as row labels."""
    if index and df.index.nlevels > 1:
        df = df.reset_index()
        index = False
    folder = figures_dir()
    csv = atomic_write_text(folder / f"{name}.csv", df.to_csv(index=index))
    try:
        md_text = df.to_markdown(index=index)
    except ImportError:  # tabulate missing: a plain pipe table
        md_text = _markdown(df, index=index)
    md = atomic_write_text(folder / f"{name}.md", md_text + "\n")
    return [csv, md]


def _markdown(df, *, index: bool) -> str:
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)
