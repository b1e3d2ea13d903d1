"""Loaders for the real data sets, each reading the layout its official download unpacks to.

(Being written: see the loaders' docstrings once filled in.)
"""
from __future__ import annotations

from .core import DataSplits


def _todo(name):
    def load(root=None, seed: int = 0, **options) -> DataSplits:
        raise NotImplementedError(f"{name} loader not written yet")
    return load


load_utkface = _todo("utkface")
load_cinic10 = _todo("cinic10")
load_ham10000 = _todo("ham10000")
load_mnist = _todo("mnist")
load_cifar10 = _todo("cifar10")
