"""``python -m fralkit reproduce``: run the numbered notebooks through papermill and regenerate their figures.

Each notebook gets its profile's parameters (``fralkit.profiles``); executed copies, each with an HTML export
beside it, go to ``runs/<profile>/`` (ignored by git); figures and tables go to ``figures/`` for the committed
profiles (``gpu``, ``paper``) and to ``runs/<profile>/figures/`` for the others (or ``--out`` /
``$FRALKIT_FIGURES``; ``fralkit.utils.figures_dir`` decides), and ``manifest.json`` there records, per notebook,
the profile, device, versions, git commit, wall time, the files it wrote and its executed copy and HTML. A failing notebook stops the run with a non-zero exit naming the notebook and cell.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import zmq
from traitlets.config import Config

from .profiles import PROFILE_NAMES, notebook_parameters
from .utils import atomic_write_json, atomic_write_text, figures_dir, repo_root, run_info

__all__ = ["NOTEBOOKS", "SPLITTABLE", "find_notebooks", "run_notebook", "split_parts", "reproduce", "manifest_key",
           "parse_overrides", "main"]

NOTEBOOKS = {
    "01": "01_data.ipynb",
    "02": "02_adversarial_training.ipynb",
    "03": "03_jin_vs_baselines.ipynb",
    "04": "04_farmur_fairness_in_robustness.ipynb",
    "05": "05_bald_grad_synbols.ipynb",
}


# Notebooks whose study splits into independent processes (``--jobs``): one part per (data set, seed). The parts
# share one result store (they write disjoint records), then one drawing pass (``run=False``) makes the figures.
SPLITTABLE = {"03": ("dataset", "seeds")}


# The kernel's ZeroMQ transport encrypted with CurveZMQ keys that jupyter_client provisions (the python3 kernelspec
# declares support): without it every kernel logs "[IPKernelApp] WARNING | Kernel is running over TCP without
# encryption" into the run's console.
KERNEL_CONFIG = Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


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
                            cwd=str(path.parent), log_output=log_output, progress_bar=False, stdout_file=None,
                            config=KERNEL_CONFIG)
    except pm.PapermillExecutionError as err:
        first_line = _cell_first_line(out_nb, err.cell_index)
        raise NotebookFailed(f"{path.name} failed in cell {err.cell_index} of the executed copy (execution count "
                             f"{err.exec_count}, `{first_line}`): {err.ename}: {err.evalue}. Executed copy: {out_nb}") from None
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    wall = time.time() - start
    written = sorted(p.name for p in figures.glob(f"{key}_*") if before.get(p) != p.stat().st_mtime)
    html = export_html(out_nb)
    return {"notebook": path.name, "profile": profile, "parameters": params, "wall_s": round(wall, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": written,
            "executed": _shown(out_nb), "html": _shown(html), **info}


def export_html(notebook: Path) -> Path:
    """Export an executed notebook to ``<same name>.html`` beside it, figures inline: one file for a reading group."""
    import nbconvert
    import nbformat

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    return atomic_write_text(notebook.with_suffix(".html"), body)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, so a committed manifest names no machine's folders."""
    root = repo_root()
    try:
        return str(path.resolve().relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


def _cell_first_line(notebook: Path, index: int) -> str:
    try:
        cells = [c for c in json.loads(notebook.read_text())["cells"]
                 if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        cell = cells[index]
        src = "".join(cell["source"]).strip().splitlines()
        return src[0][:80] if src else ""
    except (OSError, ValueError, KeyError, IndexError):
        return "?"


def split_parts(key: str, params: dict) -> list[dict]:
    """The independent parts of a splittable notebook's study: one override dict per (data set, seed)."""
    if key not in SPLITTABLE:
        raise ValueError(f"--jobs splits notebooks {sorted(SPLITTABLE)} only; notebook {key} runs as one process")
    from .studies.jin import seed_list, split_names

    return [{"dataset": d, "seeds": [s]} for d in split_names(params["dataset"], what="dataset")
            for s in seed_list(params["seeds"])]


def _run_parts(key: str, profile: str, parts: list[dict], overrides: dict, *, jobs: int, results: Path,
               executed_dir: Path, notebooks_dir: Path | None) -> list[dict]:
    """Run ``parts`` as ``python -m fralkit reproduce`` processes, at most ``jobs`` at a time; one log each."""
    from concurrent.futures import ThreadPoolExecutor

    shared = {k: v for k, v in overrides.items() if k not in SPLITTABLE[key]}
    package_parent = str(Path(__file__).resolve().parents[1])  # the parts import this same fralkit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)}

    def run_one(part: dict) -> dict:
        folder = executed_dir / "parts" / f"{part['dataset']}-s{part['seeds'][0]}"
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "fralkit", "reproduce", "--profile", profile, "--only", key,
               "--results", str(results), "--executed", str(folder), "--out", str(folder / "figures")]
        if notebooks_dir is not None:
            cmd += ["--notebooks", str(notebooks_dir)]
        for k, v in {**shared, **part}.items():
            cmd += ["--set", f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"]
        print(f"  part {folder.name} started (log: {folder / 'log.txt'})", flush=True)
        start = time.time()
        with open(folder / "log.txt", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        wall = round(time.time() - start, 1)
        print(f"  part {folder.name} {'done' if rc == 0 else 'FAILED'} in {wall:.0f} s", flush=True)
        return {**part, "rc": rc, "wall_s": wall, "log": str(folder / "log.txt")}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_one, parts))


def reproduce(profile: str = "quick", only: list[str] | None = None, out: str | Path | None = None,
              executed: str | Path | None = None, results: str | Path | None = None,
              notebooks_dir: str | Path | None = None, overrides: dict | None = None, jobs: int = 1) -> dict:
    """Run the notebooks of ``profile`` and update ``<out>/manifest.json``; return the manifest.

    ``overrides`` replace profile parameters (``--set dataset=synbols-cinic``); each key must be a parameter of
    every notebook that runs, so a typo fails before anything is computed. The manifest records the result.
    ``jobs > 1`` runs a splittable notebook's study (``SPLITTABLE``: notebook 03) as one process per (data set,
    seed), ``jobs`` at a time, sharing one result store, then draws its figures once from the records.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILE_NAMES)}")
    root = repo_root() or Path.cwd()
    figures = Path(out).resolve() if out else figures_dir(profile, reproduce=True)
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
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1:
        for key, _path in todo:
            split_parts(key, {**notebook_parameters(key, profile), **overrides})  # refuses what cannot be split
    total = time.time()
    failed: list[str] = []
    for i, (key, path) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {path.name} (profile {profile}) ...", flush=True)
        if jobs > 1:
            from .experiments import default_results_dir

            params = {**notebook_parameters(key, profile), **overrides}
            store = results_dir or default_results_dir()
            start = time.time()
            parts = _run_parts(key, profile, split_parts(key, params), overrides, jobs=jobs, results=store,
                               executed_dir=executed_dir, notebooks_dir=Path(notebooks_dir) if notebooks_dir else None)
            entry = run_notebook(key, path, profile, executed_dir=executed_dir, figures=figures, results=store,
                                 extra={**overrides, "run": False})
            entry["parameters"]["run"] = params.get("run", True)  # what the parts ran; the drawing only drew
            entry.update(wall_s=round(time.time() - start, 1), draw_wall_s=entry["wall_s"], jobs=jobs, parts=parts)
            failed += [p["log"] for p in parts if p["rc"] != 0]
        else:
            entry = run_notebook(key, path, profile, executed_dir=executed_dir, figures=figures, results=results_dir,
                                 extra=overrides)
        manifest["notebooks"][manifest_key(key, overrides)] = entry
        manifest["updated_at"] = entry["finished_at"]
        atomic_write_json(manifest_path, manifest)
        print(f"[{i}/{len(todo)}] {path.name} done in {entry['wall_s']:.0f} s, {len(entry['files'])} files", flush=True)
    print(f"all {len(todo)} notebooks done in {time.time() - total:.0f} s; figures and tables in {figures}, "
          f"executed notebooks and their HTML in {executed_dir}", flush=True)
    if failed:
        raise NotebookFailed(f"{len(failed)} part(s) failed (figures drawn from the records that exist); logs: "
                             + ", ".join(failed))
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
    rep = sub.add_parser("reproduce", help="run the notebooks with a profile and regenerate its figures and tables")
    rep.add_argument("--profile", default="quick", choices=PROFILE_NAMES)
    rep.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers to run, e.g. --only 01 03")
    rep.add_argument("--out", help="folder for figures, tables and manifest.json (default: $FRALKIT_FIGURES, else "
                     "figures/ for the gpu and paper profiles, runs/<profile>/figures/ for the others)")
    rep.add_argument("--executed", help="folder for executed notebooks (default: runs/<profile>/)")
    rep.add_argument("--results", help="result-store folder (default: results/ or $FRALKIT_RESULTS)")
    rep.add_argument("--notebooks", help="folder holding the notebooks (default: notebooks/)")
    rep.add_argument("--jobs", type=int, default=1,
                     help="notebook 03: run its study as one process per (data set, seed), this many at a time")
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a profile parameter (repeatable), e.g. --set dataset=synbols-cinic --set seeds=1")
    args = parser.parse_args(argv)
    try:
        reproduce(args.profile, args.only, args.out, args.executed, args.results, notebooks_dir=args.notebooks,
                  overrides=parse_overrides(args.overrides), jobs=args.jobs)
    except (NotebookFailed, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
