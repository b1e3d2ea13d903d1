"""Small shared helpers: atomic writes, hashing, progress bars, run provenance (devices and seeds: ``runtime``).

Everything here is free of research logic; every other module may import it.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .runtime import resolve_device

__all__ = [
    "config_hash",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "load_checkpoint",
    "CorruptFileError",
    "remove_stale_tmp",
    "cache_dir",
    "COMMITTED_PROFILES",
    "figures_dir",
    "repo_root",
    "progress",
    "in_papermill",
    "equation_line",
    "run_info",
    "git_commit",
]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    return obj


def config_hash(config: dict, length: int = 16) -> str:
    """Stable hex digest of a JSON-able config (key order does not matter)."""
    blob = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


class CorruptFileError(ValueError):
    """A record or checkpoint that cannot be read back (truncated, or not what it claims to be); ``path`` names it."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(message)
        self.path = Path(path)


def _umask() -> int:
    """The process umask, read without changing it where the system allows (``os.umask`` is a swap, racy
    when another thread creates a file in between)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a cut run never leaves half a file.

    The file gets the mode a plain ``open`` would give (``0o666`` less the umask): ``mkstemp`` creates it
    ``0o600`` and ``os.replace`` keeps that mode. A killed write leaves ``.<name>.<random>.tmp`` beside
    ``path``; ``remove_stale_tmp`` clears old ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temporary file; load it back with ``load_checkpoint(path)``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with an error naming ``path`` when the file cannot be read.

    torch reports a truncated file as "PytorchStreamReader failed reading zip archive" without the path;
    here it raises ``CorruptFileError`` (a ``ValueError``) saying which file and what to do. A missing file
    raises ``FileNotFoundError`` as usual.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptFileError(path, f"checkpoint {path} cannot be loaded ({type(err).__name__}: {first}); if it "
                                     "is truncated (a killed copy, a full disk), delete it to recompute what it "
                                     "held") from err


def remove_stale_tmp(root: str | Path, *, older_than_s: float = 3600.0) -> list[Path]:
    """Delete the temporary files that killed writes left under ``root``; return the ones removed.

    Only files named like ``atomic_write_bytes``' temporaries and untouched for ``older_than_s`` seconds
    go: a run writing into the same folder right now holds a fresh one, which stays.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            # atomic_write_bytes' temporaries: .<name>.<random>.tmp
            if not (name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3):
                continue
            path = Path(dirpath) / name
            try:
                if path.is_file() and not path.is_symlink() and path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # another run removed or renamed it meanwhile
                continue
    return removed


def cache_dir() -> Path:
    """Where generated data sets are cached: ``$FRALKIT_CACHE`` or ``~/.cache/fralkit``."""
    root = os.environ.get("FRALKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fralkit")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_root() -> Path | None:
    """The source checkout this package runs from (None for an installed, non-editable copy)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "fralkit").is_dir() and (here / "notebooks").is_dir() else None


# Profiles whose ``reproduce`` runs made the committed ``figures/``; every other run writes under ``runs/<profile>/``.
COMMITTED_PROFILES = ("gpu", "paper")


def figures_dir(profile: str | None = None, *, reproduce: bool = False, create: bool = True) -> Path:
    """Where figures and tables go; the one place that decides it.

    ``$FRALKIT_FIGURES`` when set (``reproduce`` sets it for the notebooks it runs). Otherwise the repository's
    committed ``figures/`` only for a ``reproduce`` run (``reproduce=True``) of a committed profile
    (``COMMITTED_PROFILES``), and ``runs/<profile>/figures/`` (ignored by git) for everything else: the ``quick``
    and ``smoke`` runs, plain papermill and JupyterLab. ``profile`` defaults to ``$FRALKIT_PROFILE`` (set by
    ``fralkit.profiles.apply`` in a notebook's set-up cell), else ``"quick"``.
    """
    env = os.environ.get("FRALKIT_FIGURES")
    if env:
        path = Path(env)
    else:
        profile = profile or os.environ.get("FRALKIT_PROFILE") or "quick"
        base = repo_root() or Path.cwd()
        path = base / "figures" if reproduce and profile in COMMITTED_PROFILES else base / "runs" / profile / "figures"
    if create:  # ``create=False``: a caller that checks the folder is writable before making anything
        path.mkdir(parents=True, exist_ok=True)
    return path


def in_papermill() -> bool:
    """True inside a papermill-executed notebook, so widget cells skip and progress bars are plain text.

    Two signals, because the kernel cannot see papermill's injected-parameters cell: ``FRALKIT_BATCH=1`` (set by
    ``reproduce`` and by callers of papermill's Python API that want batch behaviour), and a kernel whose parent
    process is the ``papermill`` command line (jupyter_client names the parent in ``JPY_PARENT_PID``), which is
    how a plain ``papermill in.ipynb out.ipynb -p profile smoke`` is recognised. JupyterLab's kernels have
    ``jupyter-lab`` as parent.
    """
    if os.environ.get("FRALKIT_BATCH") == "1":
        return True
    return _parent_is_papermill()


@lru_cache(maxsize=1)
def _parent_is_papermill() -> bool:
    parent = os.environ.get("JPY_PARENT_PID")
    if not parent or not parent.isdigit():
        return False
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:  # no procfs (macOS, Windows): ask psutil, which ipykernel installs
        try:
            import psutil

            argv = [a.encode() for a in psutil.Process(int(parent)).cmdline()]
        except Exception:
            return False
    return any(Path(a.decode(errors="replace")).name.startswith("papermill") for a in argv[:3])


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, leave: bool = True, disable: bool | None = None):
    """A tqdm bar: widget bar in an interactive notebook, plain text bar in batch runs.

    Widget bars do not update in a papermill-executed notebook, so batch runs (``FRALKIT_BATCH=1``) get
    ``tqdm.std`` bars, refreshed at most every 5 s so logs stay short.
    """
    if disable is None:
        disable = os.environ.get("FRALKIT_NO_PROGRESS") == "1"
    if in_papermill():
        from tqdm.std import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable, mininterval=5.0, file=sys.stdout)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable)


def equation_line(fn) -> str:
    """The equation a function implements, as its docstring states it: the first paragraph, and the indented block
    after it when that paragraph ends with ``::`` (what a notebook shows instead of the function's source)."""
    doc = inspect.getdoc(fn) or ""
    paras = doc.split("\n\n")
    head = " ".join(paras[0].split())
    if head.endswith("::") and len(paras) > 1:
        return head[:-1] + "\n\n" + paras[1]
    return head


def git_commit(cwd: str | Path | None = None) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``"unknown"``."""
    if os.environ.get("FRALKIT_GIT_COMMIT"):  # a copy without .git (e.g. a remote machine) can be told its commit
        return os.environ["FRALKIT_GIT_COMMIT"]
    cwd = str(cwd or Path(__file__).resolve().parent.parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: str | torch.device = "auto") -> str:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def run_info(device: str | torch.device = "auto") -> dict:
    """Provenance saved beside every result: device, versions, git commit."""
    import torchvision

    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }
