"""Data: the ``GroupDataset`` container, the built-in Synbols generator and its presets, real-data loaders.

One entry point, ``load_dataset(name, root=None, seed=0, **options) -> DataSplits``; ``DATASETS`` lists
every name. Synbols presets need no files; real data sets read the layout of their official download.
"""
from __future__ import annotations

import numbers
from typing import Callable

from .core import (DataSplits, GroupDataset, fral_split, iterate_batches, resize_uint8, split_indices,
                   split_size_table, stratified_split, to_float)
from .presets import PRESETS, load_synbols_preset, preset_configs
from .synbols import GroupStyle, SynbolsConfig, available_fonts, make_synbols, render_synbols
from . import real


def _preset_loader(name: str) -> Callable[..., DataSplits]:
    def load(root=None, seed: int = 0, **options) -> DataSplits:
        return load_synbols_preset(name, root=root, seed=seed, **options)

    load.__doc__ = f"Synbols preset {name!r}: {PRESETS[name]['about']}."
    return load


DATASETS: dict[str, Callable[..., DataSplits]] = {name: _preset_loader(name) for name in PRESETS}
DATASETS.update({
    "utkface": real.load_utkface,
    "cinic10": real.load_cinic10,
    "ham10000": real.load_ham10000,
    "mnist": real.load_mnist,
    "cifar10": real.load_cifar10,
})

REAL_DATASETS = ("utkface", "cinic10", "ham10000", "mnist", "cifar10")


def load_dataset(name: str, root=None, seed: int = 0, **options) -> DataSplits:
    """Load data set ``name`` as seeded train/val/test ``DataSplits``.

    Args:
        name: a key of ``DATASETS`` (Synbols presets such as ``"synbols-utk"``, or ``"utkface"``,
            ``"cinic10"``, ``"ham10000"``, ``"mnist"``, ``"cifar10"``).
        root: folder of the real data set's official download (required for real data sets); for
            Synbols presets, the cache folder (optional).
        seed: fixes generation and splits: same seed, same images and indices.
        **options: passed to the loader (``n``, ``size``, ``task``, ...); see each loader's docstring.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"load_dataset({name!r}): seed must be a non-negative integer, got {seed!r}")
    if name in REAL_DATASETS and root is None:
        raise ValueError(f"dataset {name!r} reads files from disk: pass root=<folder of its official download>")
    return DATASETS[name](root=root, seed=seed, **options)


__all__ = [
    "DATASETS", "REAL_DATASETS", "load_dataset", "GroupDataset", "DataSplits", "fral_split", "iterate_batches",
    "split_indices", "split_size_table", "stratified_split", "to_float", "resize_uint8", "PRESETS", "preset_configs", "load_synbols_preset",
    "GroupStyle", "SynbolsConfig", "available_fonts", "make_synbols", "render_synbols",
]
