"""Result store: one flat JSON per run, keyed by the hash of its full config; every table comes from these files.

Every study writes one record schema (``RECORD_FIELDS``): ``config`` (everything that determines the run: study,
dataset, method, seed, sizes, ...), ``key`` (its hash), ``metrics`` (numbers, or lists of per-round numbers),
``series`` (per-epoch or per-step histories), ``classes`` and ``groups`` (names), ``timings`` (seconds) and
``provenance`` (device, versions, git commit, time); a study may add its own fields (FARMUR's ``distances``, FRAL's
``init_fingerprint``). Records written by earlier versions (provenance at the top level, ``group_names`` /
``class_names``, ``history``) are read into the same schema by ``normalize_record``. ``ResultStore.has(config)`` lets a study skip what is done; writes are atomic, so a run cut at any
point leaves only complete records; a record damaged later (a disk, a hand edit) is named, never skipped in
silence. Tables are rendered with ``summarize`` (mean and std over seeds) and
``save_table`` (CSV + Markdown in ``figures/``), never from live objects.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .utils import CorruptFileError, atomic_write_json, atomic_write_text, config_hash, figures_dir, repo_root, run_info

__all__ = ["ResultStore", "RECORD_FIELDS", "PROVENANCE_FIELDS", "normalize_record", "default_results_dir", "summarize",
           "format_mean_std", "save_table", "flatten_records", "paired_verdict"]

SCHEMA = 2
RECORD_FIELDS = ("schema", "config", "key", "metrics", "series", "classes", "groups", "timings", "provenance")
PROVENANCE_FIELDS = ("device", "torch", "torchvision", "numpy", "python", "git_commit", "saved_at")
_RENAMED = {"group_names": "groups", "class_names": "classes"}


def normalize_record(record: dict) -> dict:
    """A record in the one schema of ``RECORD_FIELDS`` (records of earlier versions are converted; the config and
    key are untouched, so the record's identity does not change)."""
    if record.get("schema") == SCHEMA:
        return record
    out = {k: v for k, v in record.items() if k not in PROVENANCE_FIELDS and k not in _RENAMED and k != "history"}
    out["provenance"] = {**{k: record[k] for k in PROVENANCE_FIELDS if k in record}, **record.get("provenance", {})}
    for old, new in _RENAMED.items():
        if old in record and new not in out:
            out[new] = list(record[old])
    series = dict(record.get("series") or {})
    if "history" in record:
        series["history"] = record["history"]
    out["series"] = series
    out.setdefault("classes", None)
    out.setdefault("groups", None)
    out.setdefault("metrics", {})
    out.setdefault("timings", {})
    out["schema"] = SCHEMA
    return out


def default_results_dir() -> Path:
    """``$FRALKIT_RESULTS``, else ``results/`` in the repository (or the working directory)."""
    env = os.environ.get("FRALKIT_RESULTS")
    if env:
        return Path(env)
    return (repo_root() or Path.cwd()) / "results"


class ResultStore:
    """A folder of result records ``<root>/<study>/<dataset>/<method>-s<seed>-<hash>.json``.

    A record that does not parse is an error naming its file (``CorruptFileError``, a ``ValueError``) in
    ``load`` and ``has``. With ``recompute_corrupt=True`` (default: ``$FRALKIT_RECOMPUTE_CORRUPT=1``, which
    ``reproduce --recompute-corrupt`` sets) ``has`` instead moves the file aside to ``<name>.corrupt`` and
    answers False, so the study computes that run again. ``records`` skips unreadable files with a warning
    naming each and lists them in ``skipped``.
    """

    def __init__(self, root: str | Path | None = None, *, recompute_corrupt: bool | None = None):
        self.root = Path(root) if root is not None else default_results_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        if recompute_corrupt is None:
            recompute_corrupt = os.environ.get("FRALKIT_RECOMPUTE_CORRUPT") == "1"
        self.recompute_corrupt = bool(recompute_corrupt)
        self.skipped: list[Path] = []  # the unreadable files the last ``records`` call left out

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
        """Whether the run of ``config`` is done; a corrupt record raises, or is moved aside (``recompute_corrupt``)."""
        path = self.path(config)
        if not path.exists():
            return False
        try:
            _read_record(path)
        except CorruptFileError:
            if not self.recompute_corrupt:
                raise
            aside = move_aside(path)
            warnings.warn(f"result record {path} is corrupt: moved to {aside.name}; the run is computed again",
                          stacklevel=2)
            return False
        return True

    def load(self, config: dict) -> dict:
        path = self.path(config)
        if not path.exists():
            raise FileNotFoundError(f"no result for this config at {path}")
        return normalize_record(_read_record(path))

    def save(self, config: dict, metrics: dict, *, timings: dict | None = None, device: str = "auto",
             series: dict | None = None, **extra) -> dict:
        """Write one record atomically (schema ``RECORD_FIELDS``) and return it; ``extra`` holds ``classes``,
        ``groups`` and the study's own fields."""
        record = normalize_record({
            "config": config, "key": self.key(config), "metrics": metrics, "series": series or {},
            "timings": timings or {}, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **run_info(device), **extra})
        atomic_write_json(self.path(config), record)
        return record

    def records(self, study: str | None = None, **match) -> list[dict]:
        """All records (of ``study``), optionally only those whose config matches ``match``.

        Files that cannot be read are left out, named in a warning and kept in ``self.skipped``.
        """
        base = self.root / study if study else self.root
        out, skipped = [], []
        for path in sorted(base.rglob("*.json")) if base.exists() else []:
            try:
                rec = _read_record(path)
            except (OSError, CorruptFileError):
                skipped.append(path)
                continue
            cfg = rec.get("config", {})
            if all(cfg.get(k) == v for k, v in match.items()):
                out.append(normalize_record(rec))
        self.skipped = skipped
        if skipped:
            warnings.warn(f"{len(skipped)} unreadable result file(s) left out of the records: "
                          + ", ".join(str(p) for p in skipped)
                          + " (ResultStore(recompute_corrupt=True) moves a corrupt record aside when its run comes "
                          "up again)", stacklevel=2)
        return out


def _read_record(path: Path) -> dict:
    """One record from disk; ``CorruptFileError`` naming ``path`` when it is not a JSON object."""
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(path, f"result record {path} is corrupt ({err}); delete it, or run with "
                                     "--recompute-corrupt (FRALKIT_RECOMPUTE_CORRUPT=1) to move it aside and "
                                     "compute that run again") from None
    if not isinstance(rec, dict):
        raise CorruptFileError(path, f"result record {path} holds a {type(rec).__name__}, not a record object; "
                                     "delete it, or run with --recompute-corrupt to move it aside")
    return rec


def move_aside(path: str | Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt`` (kept for a look, out of every glob); return the new path."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # a concurrent run moved it first
        pass
    return aside


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


def paired_verdict(diffs, direction: int = 1) -> str:
    """A claim about paired per-seed differences (``direction`` +1: claimed above zero, -1: below): ``agrees`` when
    their mean lies beyond two seed standard deviations on the claimed side, ``disagrees`` beyond them on the other
    side, ``inconclusive`` within them; ``inconclusive (1 seed)`` and ``not run`` for one or no difference. The claims
    tables of notebooks 03 and 04 judge by it."""
    import numpy as np

    d = np.asarray(diffs, float)
    if len(d) == 0:
        return "not run"
    if len(d) < 2:
        return "inconclusive (1 seed)"
    m, sd = direction * float(d.mean()), float(d.std(ddof=1))
    return "agrees" if m > 2 * sd else ("disagrees" if m < -2 * sd else "inconclusive")


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
