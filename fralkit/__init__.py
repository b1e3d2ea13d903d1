"""fralkit: fair and robust learning with few labels.

Reproduces and extends four papers in thin notebooks over this package:
JIN / FRAL (Wu et al.), FARMUR (Mousavi et al.), FairAT (Mou et al.) and BALD + GRAD (Branchaud-Charron et al.).
Modules, lowest first: ``runtime`` / ``utils`` -> ``data`` -> ``models`` -> ``attacks`` / ``inference`` / ``train``
-> ``metrics`` -> ``active`` / ``experiments`` -> ``plots`` -> ``reproduce``.
"""
from .runtime import resolve_device, set_seed
from .utils import run_info
from . import data, profiles
from .data import DATASETS, load_dataset

__version__ = "0.1.0"
__all__ = ["data", "profiles", "load_dataset", "DATASETS", "set_seed", "resolve_device", "run_info", "__version__"]
