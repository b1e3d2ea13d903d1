"""Data: the ``GroupDataset`` container, the built-in Synbols generator and its presets, real-data loaders.

One entry point, ``load_dataset(name, root=None, seed=0, **options) -> DataSplits``; ``DATASETS`` holds one
``DatasetInfo`` per name (its loader and facts: metric, oversampling, disadvantaged group, title). Synbols presets
need no files; real data sets read the layout of their official download.
"""
from __future__ import annotations

from .core import (DataSplits, GroupDataset, fral_split, iterate_batches, resize_uint8, split_indices,
                   split_size_table, stratified_split, to_float)
from .presets import CALIBRATED, KNOBS, PAPER_SIZES, PRESETS, Knob, apply_knobs, knob_values, load_synbols_preset, preset_configs
from .registry import DATASETS, REAL_DATASETS, DatasetInfo, dataset_facts, dataset_root, load_dataset
from .synbols import GroupStyle, SynbolsConfig, available_fonts, make_synbols, render_synbols
from . import real

__all__ = [
    "DATASETS", "REAL_DATASETS", "DatasetInfo", "dataset_facts", "dataset_root", "load_dataset", "GroupDataset", "DataSplits",
    "fral_split", "iterate_batches", "split_indices", "split_size_table", "stratified_split", "to_float",
    "resize_uint8", "PRESETS", "preset_configs", "load_synbols_preset", "KNOBS", "Knob", "CALIBRATED", "apply_knobs",
    "knob_values", "PAPER_SIZES",
    "GroupStyle", "SynbolsConfig", "available_fonts", "make_synbols", "render_synbols",
]
