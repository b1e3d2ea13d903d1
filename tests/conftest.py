"""Shared fixtures: tiny data sets and models, CPU only; generated data cached in a temporary folder."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("FRALKIT_NO_PROGRESS", "1")


def pytest_configure(config):
    # OMP_NUM_THREADS wins: on a shared machine, more threads than free cores slows torch down by orders of magnitude.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_slow = pytest.mark.skip(reason="slow: set FRALKIT_SLOW=1 to run")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and os.environ.get("FRALKIT_SLOW") != "1":
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated data, results and figures of the tests never touch the user's folders."""
    root = tmp_path_factory.mktemp("fralkit")
    old = {k: os.environ.get(k) for k in ("FRALKIT_CACHE", "FRALKIT_RESULTS", "FRALKIT_FIGURES")}
    os.environ["FRALKIT_CACHE"] = str(root / "cache")
    os.environ["FRALKIT_RESULTS"] = str(root / "results")
    os.environ["FRALKIT_FIGURES"] = str(root / "figures")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def tiny_groups():
    """A few dozen 8 x 8 RGB images, 3 classes, 2 groups (group 1 is darker), deterministic."""
    from fralkit.data import GroupDataset

    gen = torch.Generator().manual_seed(0)
    n = 48
    y = torch.arange(n) % 3
    g = (torch.arange(n) // 3) % 2
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=gen, dtype=torch.int64)
    x = (x // (1 + g[:, None, None, None])).to(torch.uint8)
    return GroupDataset(x, y, g, ["c0", "c1", "c2"], ["g0", "g1"], name="tiny")
