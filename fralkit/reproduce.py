"""``python -m fralkit reproduce``: run the numbered notebooks through papermill and regenerate ``figures/``.

Each notebook gets its profile's parameters (``fralkit.profiles``); executed copies go to
``runs/<profile>/`` (ignored by git), figures and tables to ``figures/`` (or ``--out``), and
``figures/manifest.json`` records, per notebook, the profile, device, versions, git commit, wall time
and the files it wrote. A failing notebook stops the run with a non-zero exit naming the notebook and cell.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES, notebook_parameters
from .utils import atomic_write_json, repo_root, run_info

__all__ = ["NOTEBOOKS", "find_notebooks", "run_notebook", "reproduce", "manifest_key", "parse_overrides", "main"]

NOTEBOOKS = {
    "01": "01_data.ipynb",
    "02": "02_adversarial_training.ipynb",
    "03": "03_jin_vs_baselines.ipynb",
    "04": "04_farmur_fairness_in_robustness.ipynb",
    "05": "05_bald_grad_synbols.ipynb",
}


class NotebookFailed(RuntimeError):
    """A notebook raised: carries the notebook name and the failing cell."""


def find_notebooks(only: list[str] | None = None, notebooks_dir: Path | None = None) -> list[tuple[str, Path]]:
    """The notebooks to run, in order (``only`` selects by number, e.g. ``["01", "03"]``)."""
    folder = notebooks_dir or ((repo_root() or Path.cwd()) / "notebooks")
    keys = sorted(NOTEBOOKS)
    if only:
        bad = [k for k in only if k not in NOTEBOOKS]
        if bad:
            raise ValueError(f"--only takes notebook numbers {keys}, got {bad}")
        keys = [k for k in keys if k in only]
    out = []
    for key in keys:
        path = folder / NOTEBOOKS[key]
        if not path.exists():
            raise FileNotFoundError(f"notebook {path} is missing")
        out.append((key, path))
    return out


def run_notebook(key: str, path: Path, profile: str, *, executed_dir: Path, figures: Path, results: Path | None = None,
                 extra: dict | None = None, log_output: bool = True) -> dict:
    """Execute one notebook with papermill; return its manifest entry. Raises ``NotebookFailed``."""
    import papermill as pm

    params = {**notebook_parameters(key, profile), **(extra or {})}
    executed_dir.mkdir(parents=True, exist_ok=True)
    out_nb = executed_dir / path.name
    env_before = dict(os.environ)
    os.environ["FRALKIT_BATCH"] = "1"  # plain progress bars: widget bars do not update under papermill
    os.environ["FRALKIT_FIGURES"] = str(figures)
    if results is not None:
        os.environ["FRALKIT_RESULTS"] = str(results)
    before = {p: p.stat().st_mtime for p in figures.glob(f"{key}_*")}
    info = run_info()  # before the run: the figures it writes would mark the checkout dirty
    start = time.time()
    try:
        pm.execute_notebook(str(path), str(out_nb), parameters=params, kernel_name="python3", language="python",
                            cwd=str(path.parent), log_output=log_output, progress_bar=False, stdout_file=None)
    except pm.PapermillExecutionError as err:
        first_line = _cell_first_line(out_nb, err.cell_index)
        raise NotebookFailed(f"{path.name} failed in cell {err.cell_index} of the executed copy (execution count "
                             f"{err.exec_count}, `{first_line}`): {err.ename}: {err.evalue}. Executed copy: {out_nb}") from None
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    wall = time.time() - start
    written = sorted(p.name for p in figures.glob(f"{key}_*") if before.get(p) != p.stat().st_mtime)
    return {"notebook": path.name, "profile": profile, "parameters": params, "wall_s": round(wall, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": written, **info}


def _cell_first_line(notebook: Path, index: int) -> str:
    try:
        cells = [c for c in json.loads(notebook.read_text())["cells"]
                 if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        cell = cells[index]
        src = "".join(cell["source"]).strip().splitlines()
        return src[0][:80] if src else ""
    except (OSError, ValueError, KeyError, IndexError):
        return "?"


def reproduce(profile: str = "quick", only: list[str] | None = None, out: str | Path | None = None,
              executed: str | Path | None = None, results: str | Path | None = None,
              notebooks_dir: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Run the notebooks of ``profile`` and update ``<out>/manifest.json``; return the manifest.

    ``overrides`` replace profile parameters (``--set dataset=synbols-cinic``); each key must be a parameter of
    every notebook that runs, so a typo fails before anything is computed. The manifest records the result.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILE_NAMES)}")
    root = repo_root() or Path.cwd()
    figures = Path(out).resolve() if out else root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    executed_dir = Path(executed).resolve() if executed else root / "runs" / profile
    results_dir = Path(results).resolve() if results else None
    manifest_path = figures / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"notebooks": {}}
    todo = find_notebooks(only, Path(notebooks_dir) if notebooks_dir else None)
    overrides = dict(overrides or {})
    for key, _path in todo:
        unknown = sorted(set(overrides) - set(notebook_parameters(key, profile)))
        if unknown:
            raise ValueError(f"--set {unknown} not parameters of notebook {key}; valid: "
                             f"{sorted(notebook_parameters(key, profile))}")
    total = time.time()
    for i, (key, path) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {path.name} (profile {profile}) ...", flush=True)
        entry = run_notebook(key, path, profile, executed_dir=executed_dir, figures=figures, results=results_dir,
                             extra=overrides)
        manifest["notebooks"][manifest_key(key, overrides)] = entry
        manifest["updated_at"] = entry["finished_at"]
        atomic_write_json(manifest_path, manifest)
        print(f"[{i}/{len(todo)}] {path.name} done in {entry['wall_s']:.0f} s, {len(entry['files'])} files", flush=True)
    print(f"all {len(todo)} notebooks done in {time.time() - total:.0f} s; figures in {figures}", flush=True)
    return manifest


def manifest_key(key: str, overrides: dict | None = None) -> str:
    """The manifest entry of a run: the notebook number, plus its overrides when some were given (``"03"``,
    ``"03 dataset=synbols-cinic"``), so the parts of a run split with ``--set`` keep one entry each."""
    if not overrides:
        return key
    return " ".join([key, *(f"{k}={overrides[k]}" for k in sorted(overrides))])


def parse_overrides(items: list[str]) -> dict:
    """``["seeds=1", "dataset=synbols-cinic"]`` -> ``{"seeds": 1, "dataset": "synbols-cinic"}``: Python literals
    (numbers, True/False/None, quoted strings) are parsed, anything else is kept as a string."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fralkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run the notebooks with a profile and regenerate figures/")
    rep.add_argument("--profile", default="quick", choices=PROFILE_NAMES)
    rep.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers to run, e.g. --only 01 03")
    rep.add_argument("--out", help="folder for figures, tables and manifest.json (default: figures/)")
    rep.add_argument("--executed", help="folder for executed notebooks (default: runs/<profile>/)")
    rep.add_argument("--results", help="result-store folder (default: results/ or $FRALKIT_RESULTS)")
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a profile parameter (repeatable), e.g. --set dataset=synbols-cinic --set seeds=1")
    args = parser.parse_args(argv)
    try:
        reproduce(args.profile, args.only, args.out, args.executed, args.results,
                  overrides=parse_overrides(args.overrides))
    except (NotebookFailed, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
