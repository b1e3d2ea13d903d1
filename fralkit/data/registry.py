"""``DATASETS``: one entry per data set, holding everything the rest of the package needs to know about it.

| name | stands in for | metric | oversample | disadvantaged group | title |
|---|---|---|---|---|---|
| ``synbols-minority`` | BALD+GRAD (Branchaud-Charron et al.), minority group | acc | no | none | Minority group |
| ``synbols-sensitive`` | BALD+GRAD, sensitive attribute | acc | no | none | Sensitive attribute |
| ``synbols-utk`` | UTKFace (JIN, Wu et al.) | acc | no | 1 (low-contrast) | UTKFace-like |
| ``synbols-cinic`` | CINIC-10 (JIN) | acc | no | 1 (textured) | CINIC-10-like |
| ``synbols-ham`` | HAM10000 (JIN) | macro-F1 | yes | 1 (female-like) | HAM10000-like |
| ``synbols-farmur`` | UTKFace (FARMUR, Mousavi et al.) | acc | no | none | UTKFace-like (FARMUR) |
| ``utkface``, ``cinic10``, ``ham10000``, ``mnist``, ``cifar10`` | themselves | acc (HAM10000: macro-F1) | HAM10000 | none | their names |

A study reads a data set's facts here (``DATASETS[name].metric``, ``.oversample``, ``.disadvantaged``, ``.title``)
instead of keeping its own list of names; ``dataset_facts(name, strict=False)`` also answers for data the caller
built itself (custom ``DataSplits`` under any name), with the defaults of a plain balanced data set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import real
from .core import DataSplits
from .presets import PRESETS, load_synbols_mnist, load_synbols_preset

__all__ = ["DatasetInfo", "DATASETS", "REAL_DATASETS", "dataset_facts", "dataset_root", "load_dataset"]

METRICS = ("acc", "f1")


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of one data set.

    Attributes:
        loader: ``fn(root=None, seed=0, **options) -> DataSplits``; calling the entry calls it.
        title: short human name for figure titles and table columns (``"Minority group"``); unique.
        stands_for: the data set it is (real) or stands in for (Synbols presets), and the paper that uses it.
        papers: the papers whose protocols use it (``"JIN"``, ``"FARMUR"``, ``"BALD+GRAD"``).
        synthetic: generated offline by the Synbols generator (False: read from an official download).
        metric: ``"acc"`` or ``"f1"`` (macro-F1 within each group: HAM10000 in the JIN paper, §4.1).
        oversample: class-balanced random oversampling when training (HAM10000's long tail, JIN §4.1).
        disadvantaged: the group index a FRAL preset is designed to disadvantage (clean and robust, JIN Table 1);
            None where no group is designated.
        rare_cells: the under-represented class x group cells, in words (BALD+GRAD's sets), for figure titles.
    """

    loader: Callable[..., DataSplits] | None
    title: str
    stands_for: str
    papers: tuple[str, ...] = ()
    synthetic: bool = False
    metric: str = "acc"
    oversample: bool = False
    disadvantaged: int | None = None
    rare_cells: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {self.metric!r}")

    def __call__(self, root=None, seed: int = 0, **options) -> DataSplits:
        if self.loader is None:
            raise ValueError(f"data set {self.title!r} is not in DATASETS, so it has no loader; valid: {sorted(DATASETS)}")
        return self.loader(root=root, seed=seed, **options)


def _preset(name: str) -> Callable[..., DataSplits]:
    def load(root=None, seed: int = 0, **options) -> DataSplits:
        return load_synbols_preset(name, root=root, seed=seed, **options)

    load.__doc__ = f"Synbols preset {name!r}: {PRESETS[name]['about']}."
    return load


_HAM = dict(metric="f1", oversample=True)

DATASETS: dict[str, DatasetInfo] = {
    "synbols-minority": DatasetInfo(_preset("synbols-minority"), "Minority group",
                                    "BALD+GRAD's minority-group Synbols set", ("BALD+GRAD",), True,
                                    rare_cells="red glyphs"),
    "synbols-sensitive": DatasetInfo(_preset("synbols-sensitive"), "Sensitive attribute",
                                     "BALD+GRAD's sensitive-attribute Synbols set", ("BALD+GRAD",), True,
                                     rare_cells="red a, blue d"),
    "synbols-utk": DatasetInfo(_preset("synbols-utk"), "UTKFace-like", "UTKFace in the JIN paper", ("JIN",), True,
                               disadvantaged=1),
    "synbols-cinic": DatasetInfo(_preset("synbols-cinic"), "CINIC-10-like",
                                 "CINIC-10 in the JIN paper; CIFAR-10 in FARMUR", ("JIN", "FARMUR"), True,
                                 disadvantaged=1),
    "synbols-ham": DatasetInfo(_preset("synbols-ham"), "HAM10000-like", "HAM10000 in the JIN paper", ("JIN",),
                               True, disadvantaged=1, **_HAM),
    "synbols-farmur": DatasetInfo(_preset("synbols-farmur"), "UTKFace-like (FARMUR)", "UTKFace in FARMUR",
                                  ("FARMUR",), True),
    "synbols-mnist": DatasetInfo(load_synbols_mnist, "MNIST-like", "MNIST in FARMUR: grey digits, partitions = "
                                 "classes", ("FARMUR",), True),
    "utkface": DatasetInfo(real.load_utkface, "UTKFace", "UTKFace (JIN: race groups; FARMUR: age bins)",
                           ("JIN", "FARMUR")),
    "cinic10": DatasetInfo(real.load_cinic10, "CINIC-10", "CINIC-10 (JIN)", ("JIN",)),
    "ham10000": DatasetInfo(real.load_ham10000, "HAM10000", "HAM10000 (JIN)", ("JIN",), **_HAM),
    "mnist": DatasetInfo(real.load_mnist, "MNIST", "MNIST (FARMUR)", ("FARMUR",)),
    "cifar10": DatasetInfo(real.load_cifar10, "CIFAR-10", "CIFAR-10 (FARMUR)", ("FARMUR",)),
}

# Read from disk: load_dataset needs their root.
REAL_DATASETS = tuple(name for name, info in DATASETS.items() if not info.synthetic)


def dataset_facts(name: str, *, strict: bool = True) -> DatasetInfo:
    """The ``DATASETS`` entry of ``name``.

    Args:
        name: a data-set name.
        strict: raise ``ValueError`` (listing the valid names) for a name not in ``DATASETS``; with False, such a
            name (data the caller built, e.g. a test's tiny splits) gets a plain entry: titled by its name, accuracy,
            no oversampling, no designated group, no loader.
    """
    if name in DATASETS:
        return DATASETS[name]
    if strict:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    return DatasetInfo(None, str(name), "data built by the caller")


def load_dataset(name: str, root=None, seed: int = 0, **options) -> DataSplits:
    """Load data set ``name`` as seeded train/val/test ``DataSplits``.

    Args:
        name: a key of ``DATASETS`` (Synbols presets such as ``"synbols-utk"``, or ``"utkface"``,
            ``"cinic10"``, ``"ham10000"``, ``"mnist"``, ``"cifar10"``).
        root: folder of the real data set's official download (required for real data sets); for
            Synbols presets, the cache folder (optional).
        seed: a non-negative integer; fixes generation and splits: same seed, same images and indices.
        **options: passed to the loader (``n``, ``size``, ``task``, ...); see each loader's docstring.
    """
    info = dataset_facts(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"load_dataset({name!r}): seed must be a non-negative integer, got seed={seed!r}")
    if not info.synthetic and root is None:
        raise ValueError(f"dataset {name!r} reads files from disk: pass root=<folder of its official download>")
    return info(root=root, seed=seed, **options)


def dataset_root(name: str, root) -> str | None:
    """The folder of data set ``name``'s download: ``root`` itself, or ``root/<name>`` when ``root`` is a parent
    folder holding one folder per data set (``data/utkface``, ``data/cinic10``, ...)."""
    if root is None:
        return None
    nested = Path(root).expanduser() / name
    return str(nested) if nested.is_dir() else str(root)
