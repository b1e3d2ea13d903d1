"""``python -m fralkit reproduce``: run the numbered notebooks through papermill and regenerate their figures.

Each notebook gets its profile's parameters (``fralkit.profiles``); executed copies, each with an HTML export
beside it, go to ``runs/<profile>/`` (ignored by git); figures and tables go to ``figures/`` for the committed
profiles (``gpu``, ``paper``) and to ``runs/<profile>/figures/`` for the others (or ``--out`` /
``$FRALKIT_FIGURES``; ``fralkit.utils.figures_dir`` decides), and ``manifest.json`` there records, per notebook,
the profile, device, versions, git commit, wall time, the files it wrote and its executed copy and HTML. A failing notebook stops the run with a non-zero exit naming the notebook and cell.

Every argument is checked before any kernel starts (``--set`` values against the parameters' types, the
output folders writable). A kernel that does not start is given a second chance. The manifest is merged
under a file lock, so concurrent runs into one ``--out`` keep each other's entries. A splittable study
(``SPLITTABLE``) runs as independent parts through submitit: its local executor on one host (one slot per
GPU, ``CUDA_VISIBLE_DEVICES`` per part) or SLURM, with the same code.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import zmq
from traitlets.config import Config

from .experiments import default_results_dir, move_aside
from .profiles import (NOTEBOOKS, PROFILE_NAMES, SET_ENV, check_overrides, check_parameters, notebook_parameters,
                       parse_overrides)
from .studies import STUDIES
from .utils import atomic_write_json, atomic_write_text, figures_dir, remove_stale_tmp, repo_root, run_info

__all__ = ["NOTEBOOKS", "SPLITTABLE", "ENGINES", "find_notebooks", "run_notebook", "split_parts", "part_name", "reproduce",
           "manifest_key", "update_manifest", "check_overrides", "visible_gpus", "local_slots", "make_executor",
           "run_part", "parse_overrides", "main"]

# The study of each notebook, read from the studies' registry.
STUDY_OF = {mod.NOTEBOOK: mod for mod in STUDIES.values()}

# Notebooks whose study splits into independent processes (``--jobs``): the study names the notebook parameters a
# part overrides (``PART_PARAMETERS``) and gives one override dict per part (``part_parameters``). The parts share
# one result store (they write disjoint records), then one drawing pass (``run=False``) makes the figures.
SPLITTABLE = {key: mod.PART_PARAMETERS for key, mod in STUDY_OF.items() if getattr(mod, "PART_PARAMETERS", None)}

# Where the parts run (``--engine``): submitit's executors, one host or a SLURM cluster through the same code.
ENGINES = ("local", "slurm")

# papermill waits 60 s for a kernel by default; six kernels importing torch at once on a cold GPU machine took
# longer (issue 18), so the wait is longer and a kernel that still does not start gets one more try.
KERNEL_START_TIMEOUT_S = 300
KERNEL_START_TRIES = 2

LOCAL_PART_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after 2 min unless told otherwise


# The kernel's ZeroMQ transport encrypted with CurveZMQ keys that jupyter_client provisions (the python3 kernelspec
# declares support): without it every kernel logs "[IPKernelApp] WARNING | Kernel is running over TCP without
# encryption" into the run's console. The runner starts ``python3``, not the notebooks' ``fralkit`` kernel (whose
# provisioner asks for the same encryption): ipykernel installs python3 wherever it is installed, the fralkit
# kernelspec only comes with an installed fralkit, and a GPU machine runs the package from PYTHONPATH.
KERNEL_NAME = "python3"
KERNEL_CONFIG = Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


class NotebookFailed(RuntimeError):
    """A notebook raised: carries the notebook name and the failing cell."""


class KernelNotStarted(NotebookFailed):
    """The notebook failed before its first cell ran (the kernel did not start), on every try."""


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
                 extra: dict | None = None, log_output: bool = True, recompute_corrupt: bool = False) -> dict:
    """Execute one notebook with papermill; return its manifest entry. Raises ``NotebookFailed``.

    The kernel gets ``KERNEL_START_TIMEOUT_S`` to start; a run that fails before its first cell ran is tried
    once more (``KernelNotStarted`` when the second try fails too). ``recompute_corrupt`` lets the notebook's
    result store move corrupt records aside and compute them again.
    """
    import papermill as pm

    params = {**notebook_parameters(key, profile), **(extra or {})}
    executed_dir.mkdir(parents=True, exist_ok=True)
    out_nb = executed_dir / path.name
    env_before = dict(os.environ)
    os.environ["FRALKIT_BATCH"] = "1"  # plain progress bars: widget bars do not update under papermill
    os.environ["FRALKIT_FIGURES"] = str(figures)
    os.environ[SET_ENV] = ",".join(sorted(extra or {}))  # the kernel's apply keeps these even at their quick value
    if results is not None:
        os.environ["FRALKIT_RESULTS"] = str(results)
    if recompute_corrupt:
        os.environ["FRALKIT_RECOMPUTE_CORRUPT"] = "1"
    info = run_info()  # before the run: the figures it writes would mark the checkout dirty
    (figures / f"{key}_records.json").unlink(missing_ok=True)  # this run's record provenance only
    before = {p: p.stat().st_mtime for p in figures.glob(f"{key}_*")}
    start = time.time()
    try:
        for attempt in range(1, KERNEL_START_TRIES + 1):
            out_nb.unlink(missing_ok=True)  # a copy left by an earlier run would look like cells that ran
            try:
                pm.execute_notebook(str(path), str(out_nb), parameters=params, kernel_name=KERNEL_NAME,
                                    language="python", cwd=str(path.parent), log_output=log_output,
                                    progress_bar=False, stdout_file=None, start_timeout=KERNEL_START_TIMEOUT_S,
                                    config=KERNEL_CONFIG)
                break
            except pm.PapermillExecutionError as err:
                first_line = _cell_first_line(out_nb, err.cell_index)
                raise NotebookFailed(f"{path.name} failed in cell {err.cell_index} of the executed copy (execution count "
                                     f"{err.exec_count}, `{first_line}`): {err.ename}: {err.evalue}. Executed copy: {out_nb}") from None
            except Exception as err:  # the kernel did not start, or died: papermill raises whatever its client raised
                reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                if _cells_started(out_nb):
                    raise NotebookFailed(f"{path.name}: the kernel stopped during the run ({reason}). "
                                         f"Executed copy: {out_nb}") from err
                if attempt == KERNEL_START_TRIES:
                    raise KernelNotStarted(f"{path.name}: the kernel did not start, {attempt} tries ({reason})") from err
                print(f"  {path.name}: the kernel did not start ({reason}); trying once more", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    wall = time.time() - start
    written = sorted(p.name for p in figures.glob(f"{key}_*") if before.get(p) != p.stat().st_mtime)
    try:
        html, html_error = export_html(out_nb), None
    except Exception as err:  # the run itself is done: a missing exporter template must not stop the others
        html, html_error = None, f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        print(f"  {path.name}: executed, but its HTML export failed ({html_error})", flush=True)
    records = _records_provenance(figures / f"{key}_records.json")
    return {"notebook": path.name, "profile": profile, "parameters": params, "wall_s": round(wall, 1),
            **({"records": records} if records else {}),
            "kernel_tries": attempt, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": written, "executed": _shown(out_nb), "html": _shown(html) if html else None,
            **({"html_error": html_error} if html_error else {}), **info}


def _records_provenance(path: Path) -> dict | None:
    """The summary of ``fralkit.studies.write_provenance``'s file: where the drawn records were computed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {k: data[k] for k in ("n_records", "devices", "git_commits", "saved_between") if k in data}


def _cells_started(notebook: Path) -> bool:
    """Whether any code cell of papermill's output copy began: papermill stamps a cell's ``start_time`` when it
    starts (its ``status`` says "completed" for every cell once the run ends, even for cells never run)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return False  # no copy written: nothing ran
    return any(c.get("cell_type") == "code" and (c.get("execution_count") is not None
               or c.get("metadata", {}).get("papermill", {}).get("start_time") is not None) for c in cells)


def export_html(notebook: Path) -> Path:
    """Export an executed notebook to ``<same name>.html`` beside it, figures inline: one file for a reading group."""
    import nbconvert
    import nbformat

    # nbconvert's templates are data files under <prefix>/share/jupyter; installed with `pip --target` they sit
    # beside the package instead, where jupyter's search path does not look: name that folder too.
    beside = Path(nbconvert.__file__).resolve().parents[1] / "share" / "jupyter" / "nbconvert" / "templates"
    extra = [str(beside)] if beside.is_dir() else []
    exporter = nbconvert.HTMLExporter(extra_template_basedirs=extra)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
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
    """The independent parts of a splittable notebook's study: one override dict per part (notebook 01: per preset
    searched, 03: per (data set, seed), 04: per (row, seed))."""
    if key not in SPLITTABLE:
        raise ValueError(f"--jobs splits notebooks {sorted(SPLITTABLE)} only; notebook {key} runs as one process")
    return STUDY_OF[key].part_parameters(params)


def part_name(part: dict) -> str:
    """A part's folder and log name from its overrides: ``{"dataset": "synbols-utk", "seeds": [1]}`` ->
    ``synbols-utk-s1``, ``{"rows": "lenet5-mnist", "seeds": [0]}`` -> ``lenet5-mnist-s0``."""
    bits = [f"s{v[0]}" if k == "seeds" else str(v) for k, v in part.items() if v != ""]
    return "-".join(b.replace("/", "_").replace(":", "_").replace(",", "_") for b in bits)


def visible_gpus(spec: str = "auto") -> list[str]:
    """The GPUs the parts share on this host, as ``CUDA_VISIBLE_DEVICES`` entries, read at run time.

    ``"auto"``: the ones this process may use (its ``CUDA_VISIBLE_DEVICES`` when set, else every GPU torch
    counts); ``"none"``: none, the parts run on the CPU; ``"0,2"``: those.
    """
    if spec == "none":
        return []
    if spec == "auto":
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is not None:
            return [g.strip() for g in env.split(",") if g.strip()]
        return [str(i) for i in range(torch.cuda.device_count())]
    gpus = [g.strip() for g in str(spec).split(",") if g.strip()]
    if not gpus:
        raise ValueError(f"--gpus takes auto, none or a comma-separated list of GPU ids, got {spec!r}")
    return gpus


def local_slots(jobs: int | str, gpus: list[str], parts_per_gpu: int = 1) -> list[str]:
    """The slots of the local engine, as the ``CUDA_VISIBLE_DEVICES`` each gives its part ("" = CPU).

    ``jobs="auto"``: one slot per GPU, ``parts_per_gpu`` times over; ``jobs=N``: N slots taking the GPUs in
    turn (on the CPU when there are none).
    """
    if parts_per_gpu < 1:
        raise ValueError(f"--parts-per-gpu must be >= 1, got {parts_per_gpu}")
    if jobs == "auto":
        if not gpus:
            raise ValueError("--jobs auto runs one part per GPU and found no GPU (CUDA_VISIBLE_DEVICES, "
                             "torch.cuda); give --jobs N to run N parts on the CPU")
        return [g for _ in range(parts_per_gpu) for g in gpus]
    if parts_per_gpu != 1:
        raise ValueError("--parts-per-gpu goes with --jobs auto (one slot per GPU, that many times over); "
                         "--jobs N spreads its N slots over the GPUs in turn")
    return [gpus[i % len(gpus)] if gpus else "" for i in range(jobs)]


def make_executor(engine: str, folder: Path, *, jobs: int | str = "auto", slurm: dict | None = None):
    """A submitit executor for the parts: ``local`` (one host) or ``slurm`` (``slurm`` holds its parameters:
    ``partition``, ``gpus_per_node``, ``time`` in minutes, and any other ``slurm_<name>`` submitit takes)."""
    import submitit  # only split runs need it

    if engine not in ENGINES:
        raise ValueError(f"--engine takes {list(ENGINES)}, got {engine!r}")
    if engine == "local":
        if slurm:
            raise ValueError(f"--slurm-* options {sorted(slurm)} go with --engine slurm")
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
        executor.update_parameters(timeout_min=LOCAL_PART_TIMEOUT_MIN, gpus_per_node=0)  # run_part sets the GPU
        return executor
    opts = dict(slurm or {})
    params = {"timeout_min": int(opts.pop("time", 24 * 60)), "gpus_per_node": int(opts.pop("gpus_per_node", 1)),
              "name": "fralkit-part"}
    partition = opts.pop("partition", None)
    if partition is not None:
        params["slurm_partition"] = partition
    if jobs != "auto" and jobs > 1:
        params["slurm_array_parallelism"] = int(jobs)
    params.update({f"slurm_{k}": v for k, v in opts.items()})
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as err:  # submitit looks for srun
        raise ValueError(f"--engine slurm: {err}") from None
    try:
        executor.update_parameters(**params)
    except (NameError, ValueError, AssertionError) as err:
        raise ValueError("--slurm-option: " + " ".join(str(err).split("\n")[:1])) from None
    return executor


def run_part(cmd: list[str], log: str, env: dict[str, str]) -> dict:
    """The body of one submitit job: run ``cmd`` (a ``python -m fralkit reproduce`` of one part) with ``env``
    over the job's environment, output to ``log``; return its exit code, wall time and host."""
    start = time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode
    return {"rc": rc, "wall_s": round(time.time() - start, 1), "host": platform.node()}


@contextlib.contextmanager
def _environ(**values: str):
    """``os.environ`` with ``values`` for the duration (submitit's jobs take the environment at submission)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _part_command(key: str, profile: str, part: dict, shared: dict, *, folder: Path, results: Path,
                  notebooks_dir: Path | None, recompute_corrupt: bool) -> list[str]:
    cmd = [sys.executable, "-m", "fralkit", "reproduce", "--profile", profile, "--only", key,
           "--results", str(results), "--executed", str(folder), "--out", str(folder / "figures")]
    if notebooks_dir is not None:
        cmd += ["--notebooks", str(notebooks_dir)]
    if recompute_corrupt:
        cmd += ["--recompute-corrupt"]
    for k, v in {**shared, **part}.items():
        cmd += ["--set", f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"]
    return cmd


def _run_parts(key: str, profile: str, parts: list[dict], overrides: dict, *, executor, engine: str,
               slots: list[str], results: Path, executed_dir: Path, notebooks_dir: Path | None,
               recompute_corrupt: bool = False) -> list[dict]:
    """Run ``parts`` as submitit jobs, each a ``python -m fralkit reproduce`` process with its own log.

    Local engine: one part per slot at a time, the slot's GPU in ``CUDA_VISIBLE_DEVICES``. SLURM: every part
    submitted at once as a job array; the scheduler places them (``slurm_array_parallelism`` caps them).
    """
    shared = {k: v for k, v in overrides.items() if k not in SPLITTABLE[key]}
    package_parent = str(Path(__file__).resolve().parents[1])  # the jobs and parts import this same fralkit
    pythonpath = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    todo = []
    for part in parts:
        folder = executed_dir / "parts" / part_name(part)
        folder.mkdir(parents=True, exist_ok=True)
        cmd = _part_command(key, profile, part, shared, folder=folder, results=results, notebooks_dir=notebooks_dir,
                            recompute_corrupt=recompute_corrupt)
        todo.append((part, folder, cmd))
    out: list[dict | None] = [None] * len(todo)
    running: dict[int, tuple] = {}  # part index -> (job, slot, folder)

    def submit_local(i: int, slot: int) -> None:
        part, folder, cmd = todo[i]
        job = executor.submit(run_part, cmd, str(folder / "log.txt"), {"CUDA_VISIBLE_DEVICES": slots[slot]})
        where = f"GPU {slots[slot]}" if slots[slot] else "the CPU"
        print(f"  part {folder.name} started on {where} (job {job.job_id}, log: {folder / 'log.txt'})", flush=True)
        running[i] = (job, slot, folder)

    def collect(i: int) -> int | None:
        job, slot, folder = running.pop(i)
        part, _folder, _cmd = todo[i]
        log = folder / "log.txt"
        try:
            res = job.result()
        except Exception as err:  # the job itself failed (killed, out of memory, preempted too often)
            lines = [ln for ln in str(err).splitlines() if ln.strip()]
            res = {"rc": -1, "wall_s": None, "error": lines[-1] if lines else type(err).__name__}
            if not log.exists():
                log = Path(job.paths.stderr)
        out[i] = {**part, **res, "log": str(log), "engine": engine, "job_id": str(job.job_id),
                  **({} if slot is None else {"cuda_visible_devices": slots[slot]})}
        state = "done" if res["rc"] == 0 else f"FAILED (exit {res['rc']})"
        print(f"  part {folder.name} {state} in {res['wall_s'] or 0:.0f} s", flush=True)
        return slot

    poll_s = 0.5 if engine == "local" else 10.0
    with _environ(PYTHONPATH=pythonpath):
        try:
            if engine == "local":
                free, queue = list(range(len(slots))), list(range(len(todo)))
                while queue or running:
                    while queue and free:
                        submit_local(queue.pop(0), free.pop(0))
                    time.sleep(poll_s)
                    for i in [i for i, (job, _s, _f) in running.items() if job.done()]:
                        free.append(collect(i))
            else:
                with executor.batch():  # one job array
                    submitted = [executor.submit(run_part, cmd, str(folder / "log.txt"), {}) for _p, folder, cmd in todo]
                running.update({i: (job, None, todo[i][1]) for i, job in enumerate(submitted)})
                for i, (job, _s, folder) in running.items():
                    print(f"  part {folder.name} submitted (job {job.job_id}, log: {folder / 'log.txt'})", flush=True)
                while running:
                    time.sleep(poll_s)
                    for i in [i for i, (job, _s, _f) in running.items() if job.done()]:
                        collect(i)
        finally:
            for job, _slot, _folder in running.values():  # interrupted: stop what still runs
                job.cancel(check=False)
    return out


def _log_tail(path: str | Path) -> str:
    """The last non-empty line of a part's log (its ``error: ...`` line when it failed)."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"


def _check_writable(path: Path, what: str) -> None:
    """Create ``path`` if needed and write a probe file in it; a ``ValueError`` of one line when either fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot create the folder ({err.strerror or err})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{what} {path} is not writable ({err.strerror or err})") from None


def update_manifest(path: str | Path, key: str, entry: dict) -> dict:
    """Merge ``entry`` as ``manifest["notebooks"][key]`` into ``path`` and return the merged manifest.

    Read, update and write happen under an exclusive ``flock`` on ``.manifest.json.lock`` beside it, so
    concurrent runs into one folder keep each other's entries. A manifest that does not parse is moved aside
    (``manifest.json.corrupt``) and a new one started.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            manifest = {"notebooks": {}}
            if path.exists():
                try:
                    manifest = json.loads(path.read_text())
                    if not isinstance(manifest, dict) or not isinstance(manifest.get("notebooks"), dict):
                        raise ValueError("no 'notebooks' object in it")
                except ValueError as err:
                    aside = move_aside(path)
                    print(f"warning: {path} could not be read ({err}); moved to {aside.name}, starting anew",
                          file=sys.stderr, flush=True)
                    manifest = {"notebooks": {}}
            manifest["notebooks"][key] = entry
            manifest["updated_at"] = entry.get("finished_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            atomic_write_json(path, manifest)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return manifest


def reproduce(profile: str = "quick", only: list[str] | None = None, out: str | Path | None = None,
              executed: str | Path | None = None, results: str | Path | None = None,
              notebooks_dir: str | Path | None = None, overrides: dict | None = None, jobs: int | str = 1, *,
              engine: str = "local", gpus: str = "auto", parts_per_gpu: int = 1, slurm: dict | None = None,
              recompute_corrupt: bool = False) -> dict:
    """Run the notebooks of ``profile`` and merge their entries into ``<out>/manifest.json``; return the manifest.

    ``overrides`` replace profile parameters (``--set dataset=synbols-cinic``); each key must be a parameter of
    every notebook that runs and each value of that parameter's type, so a typo fails before anything is
    computed; so do an output folder that cannot be written and bad engine options. The manifest records the result.

    ``jobs != 1`` or ``engine="slurm"`` runs a splittable notebook's study (``SPLITTABLE``: notebook 03) as one
    submitit job per (data set, seed), sharing one result store, then draws its figures once from the records.
    Local engine: ``jobs`` slots (``"auto"``: one per GPU in ``gpus``, ``parts_per_gpu`` times over), each part
    seeing its slot's GPU only; ``gpus="none"`` runs the parts on the CPU. SLURM: ``slurm`` holds ``partition``,
    ``gpus_per_node``, ``time`` (minutes) and other submitit ``slurm_*`` parameters; ``jobs`` caps the parts at once.
    ``recompute_corrupt`` moves corrupt result records aside and computes their runs again.
    """
    # Everything is checked before any work: no folder is made and no kernel starts on a bad argument.
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILE_NAMES)}")
    todo = find_notebooks(only, Path(notebooks_dir) if notebooks_dir else None)
    overrides = dict(overrides or {})
    for key, _path in todo:
        check_parameters(key, profile, overrides)
    if jobs != "auto" and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs must be >= 1 or auto, got {jobs!r}")
    if engine not in ENGINES:
        raise ValueError(f"--engine takes {list(ENGINES)}, got {engine!r}")
    split = jobs != 1 or engine == "slurm"
    slots: list[str] = []
    if split:
        if not any(key in SPLITTABLE for key, _path in todo):  # the others run whole, as without --jobs
            split_parts(todo[0][0], {})  # refuses: names the notebooks that split
        if importlib.util.find_spec("submitit") is None:
            raise ValueError("running a study as parts (--jobs, --engine) needs submitit: pip install submitit")
        if engine == "local":
            if slurm:
                raise ValueError(f"--slurm-* options {sorted(slurm)} go with --engine slurm")
            slots = local_slots(jobs, visible_gpus(gpus), parts_per_gpu)
    elif slurm:
        raise ValueError(f"--slurm-* options {sorted(slurm)} go with --engine slurm")
    root = repo_root() or Path.cwd()
    figures = Path(out).resolve() if out else figures_dir(profile, reproduce=True, create=False)
    executed_dir = Path(executed).resolve() if executed else root / "runs" / profile
    results_dir = Path(results).resolve() if results else None
    store = results_dir or default_results_dir().resolve()
    for folder, what in ((figures, "--out"), (executed_dir, "--executed"), (store, "the result store")):
        _check_writable(folder, what)
    executor = None
    if split:
        executor = make_executor(engine, executed_dir / "parts" / "submitit" / "%j", jobs=jobs, slurm=slurm)
    for folder in {figures, store}:
        stale = remove_stale_tmp(folder)
        if stale:
            print(f"removed {len(stale)} temporary file(s) left by killed writes under {folder}", flush=True)
    manifest_path = figures / "manifest.json"
    total = time.time()
    failed: list[str] = []
    manifest: dict = {"notebooks": {}}
    for i, (key, path) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {path.name} (profile {profile}) ...", flush=True)
        if split and key in SPLITTABLE:
            params = {**notebook_parameters(key, profile), **overrides}
            start = time.time()
            parts = _run_parts(key, profile, split_parts(key, params), overrides, executor=executor, engine=engine,
                               slots=slots, results=store, executed_dir=executed_dir,
                               notebooks_dir=Path(notebooks_dir) if notebooks_dir else None,
                               recompute_corrupt=recompute_corrupt)
            entry = run_notebook(key, path, profile, executed_dir=executed_dir, figures=figures, results=store,
                                 extra={**overrides, "run": False}, recompute_corrupt=recompute_corrupt)
            entry["parameters"]["run"] = params.get("run", True)  # what the parts ran; the drawing only drew
            entry.update(wall_s=round(time.time() - start, 1), draw_wall_s=entry["wall_s"], jobs=jobs,
                         engine=engine, parts=parts)
            failed += [f"{part_name({k: p[k] for k in SPLITTABLE[key] if k in p})} (exit {p['rc']}: {p.get('error') or _log_tail(p['log'])}; "
                       f"log {p['log']})" for p in parts if p["rc"] != 0]
        else:
            entry = run_notebook(key, path, profile, executed_dir=executed_dir, figures=figures, results=results_dir,
                                 extra=overrides, recompute_corrupt=recompute_corrupt)
        manifest = update_manifest(manifest_path, manifest_key(key, overrides), entry)
        print(f"[{i}/{len(todo)}] {path.name} done in {entry['wall_s']:.0f} s, {len(entry['files'])} files", flush=True)
    print(f"all {len(todo)} notebooks done in {time.time() - total:.0f} s; figures and tables in {figures}, "
          f"executed notebooks and their HTML in {executed_dir}", flush=True)
    if failed:
        raise NotebookFailed(f"{len(failed)} part(s) failed (figures drawn from the records that exist): "
                             + "; ".join(failed))
    return manifest


def manifest_key(key: str, overrides: dict | None = None) -> str:
    """The manifest entry of a run: the notebook number, plus its overrides when some were given (``"03"``,
    ``"03 dataset=synbols-cinic"``), so the parts of a run split with ``--set`` keep one entry each."""
    if not overrides:
        return key
    return " ".join([key, *(f"{k}={overrides[k]}" for k in sorted(overrides))])


def _parse_jobs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number of parts at once or auto, got {text!r}") from None


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
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a profile parameter (repeatable), e.g. --set dataset=synbols-cinic --set seeds=1")
    rep.add_argument("--recompute-corrupt", action="store_true",
                     help="move result records that do not parse aside (<name>.corrupt) and compute their runs again")
    parts = rep.add_argument_group("parts", "notebooks 01, 03 and 04: their studies as one job per part (01: preset "
                                   "searched, 03: data set and seed, 04: row and seed), through submitit; the other "
                                   "notebooks run whole")
    parts.add_argument("--jobs", type=_parse_jobs, default=1, metavar="N|auto",
                       help="split the study and run N parts at once on this host; auto: one per GPU")
    parts.add_argument("--engine", default="local", choices=ENGINES,
                       help="local: this host (default); slurm: one SLURM job per part (a job array)")
    parts.add_argument("--gpus", default="auto", metavar="auto|none|IDS",
                       help="local engine: GPUs the parts share (auto: those visible now; none: CPU only; or 0,1,...)")
    parts.add_argument("--parts-per-gpu", type=int, default=1, metavar="K",
                       help="with --jobs auto: K parts on each GPU at once")
    parts.add_argument("--slurm-partition", help="SLURM partition of the parts")
    parts.add_argument("--slurm-gpus-per-node", type=int, help="GPUs per part (default 1)")
    parts.add_argument("--slurm-time", type=int, metavar="MINUTES", help="time limit of each part (default 1440)")
    parts.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="any other submitit slurm_<KEY> parameter (repeatable), e.g. account=lab, mem_gb=32")
    args = parser.parse_args(argv)
    try:
        slurm = {k: v for k, v in (("partition", args.slurm_partition), ("gpus_per_node", args.slurm_gpus_per_node),
                                   ("time", args.slurm_time)) if v is not None}
        slurm.update(parse_overrides(args.slurm_option, flag="--slurm-option"))
        reproduce(args.profile, args.only, args.out, args.executed, args.results, notebooks_dir=args.notebooks,
                  overrides=parse_overrides(args.overrides), jobs=args.jobs, engine=args.engine, gpus=args.gpus,
                  parts_per_gpu=args.parts_per_gpu, slurm=slurm or None, recompute_corrupt=args.recompute_corrupt)
    except (NotebookFailed, ValueError, OSError) as err:  # one line naming what failed; no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
