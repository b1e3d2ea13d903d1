"""The data container every study shares, its splits, and GPU-resident batching.

A ``GroupDataset`` holds a whole (small-image) data set as tensors: images ``x`` as uint8 ``[N, C, H, W]``,
labels ``y`` and group ids ``g`` as int64 ``[N]``. A subset is an index tensor, never a copy on disk, so the
FRAL loop can keep the whole set on the GPU and move labels between pool and labelled set by index.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "GroupDataset",
    "DataSplits",
    "split_indices",
    "stratified_split",
    "fral_split",
    "iterate_batches",
    "to_float",
    "resize_uint8",
    "split_size_table",
]


@dataclass
class GroupDataset:
    """Images with class labels and group (sensitive attribute / partition) ids.

    Attributes:
        x: uint8 images ``[N, C, H, W]`` in 0..255.
        y: int64 class labels ``[N]`` in ``0..len(classes)-1``.
        g: int64 group ids ``[N]`` in ``0..len(groups)-1``.
        classes: class names.
        groups: group names.
        name: data set name (registry key).
        meta: free-form facts about the source (preset options, skipped files, ...).
    """

    x: torch.Tensor
    y: torch.Tensor
    g: torch.Tensor
    classes: list[str]
    groups: list[str]
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(self.x)
        self.y = torch.as_tensor(self.y, dtype=torch.int64)
        self.g = torch.as_tensor(self.g, dtype=torch.int64)
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise ValueError(f"GroupDataset.x must be uint8 [N, C, H, W], got {self.x.dtype} {tuple(self.x.shape)}")
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.g.shape != (n,):
            raise ValueError(f"GroupDataset: x has {n} images but y has shape {tuple(self.y.shape)} and g {tuple(self.g.shape)}")
        if n and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise ValueError(f"GroupDataset: labels must lie in 0..{len(self.classes) - 1} ({len(self.classes)} classes)")
        if n and (int(self.g.min()) < 0 or int(self.g.max()) >= len(self.groups)):
            raise ValueError(f"GroupDataset: group ids must lie in 0..{len(self.groups) - 1} ({len(self.groups)} groups)")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (f"GroupDataset(name={self.name!r}, n={len(self)}, image={tuple(self.x.shape[1:])}, "
                f"classes={len(self.classes)}, groups={self.groups})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def image_size(self) -> int:
        return int(self.x.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def subset(self, idx: torch.Tensor | Sequence[int] | np.ndarray) -> "GroupDataset":
        """The examples at ``idx`` (an index tensor or a boolean mask), same names and meta."""
        idx = torch.as_tensor(idx, device=self.x.device)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        return GroupDataset(self.x[idx], self.y[idx], self.g[idx], list(self.classes), list(self.groups), self.name, dict(self.meta))

    def to(self, device: str | torch.device) -> "GroupDataset":
        return GroupDataset(self.x.to(device), self.y.to(device), self.g.to(device), list(self.classes), list(self.groups), self.name, dict(self.meta))

    def counts(self) -> torch.Tensor:
        """int64 ``[num_classes, num_groups]`` table of example counts."""
        flat = self.y.cpu() * self.num_groups + self.g.cpu()
        return torch.bincount(flat, minlength=self.num_classes * self.num_groups).view(self.num_classes, self.num_groups)

    def float_images(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Images as float32 in [0, 1] (all, or those at ``idx``)."""
        x = self.x if idx is None else self.x[idx]
        return to_float(x)

    def resized(self, size: int) -> "GroupDataset":
        """A copy with images resized (bilinear, antialiased) to ``size`` x ``size``."""
        if size == self.image_size:
            return self
        x = resize_uint8(self.x, size)
        return GroupDataset(x, self.y, self.g, list(self.classes), list(self.groups), self.name, dict(self.meta))


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1] (float input is returned as float32)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def resize_uint8(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 ``[N, C, H, W]`` images with antialiased bilinear interpolation."""
    out = []
    for start in range(0, x.shape[0], chunk):
        xf = x[start:start + chunk].float()
        xf = F.interpolate(xf, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(xf.round_().clamp_(0, 255).to(torch.uint8))
    if not out:
        return torch.empty((0, x.shape[1], size, size), dtype=torch.uint8)
    return torch.cat(out)


@dataclass
class DataSplits:
    """Train / validation / test sets of one data set (same classes and groups)."""

    train: GroupDataset
    val: GroupDataset
    test: GroupDataset

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    def __repr__(self) -> str:
        return f"DataSplits(train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, name={self.train.name!r})"

    def to(self, device: str | torch.device) -> "DataSplits":
        return DataSplits(self.train.to(device), self.val.to(device), self.test.to(device))

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _check_fracs(fracs: Sequence[float]) -> None:
    if any(f < 0 for f in fracs) or abs(sum(fracs) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {list(fracs)}")


def split_indices(n: int, fracs: Sequence[float], seed: int = 0) -> list[torch.Tensor]:
    """Seeded random partition of ``range(n)`` into parts of the given fractions (same seed, same indices)."""
    _check_fracs(fracs)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    bounds = np.round(np.cumsum([0.0] + list(fracs)) * n).astype(int)
    return [perm[bounds[i]:bounds[i + 1]].sort().values for i in range(len(fracs))]


def stratified_split(strata: torch.Tensor, fracs: Sequence[float], seed: int = 0) -> list[torch.Tensor]:
    """Seeded partition with the fractions applied within each stratum (e.g. ``y * G + g``)."""
    _check_fracs(fracs)
    strata = torch.as_tensor(strata).cpu()
    gen = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in fracs]
    for s in torch.unique(strata):
        idx = (strata == s).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        bounds = np.round(np.cumsum([0.0] + list(fracs)) * len(idx)).astype(int)
        for i in range(len(fracs)):
            parts[i].append(idx[bounds[i]:bounds[i + 1]])
    return [torch.cat(p).sort().values if p else torch.empty(0, dtype=torch.int64) for p in parts]


def fral_split(train: GroupDataset, init_frac: float = 0.2, seed: int = 0, stratify: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The FRAL start: an initial labelled set D_L (``init_frac`` of D, 20 % in JIN §4.1) and the pool D_U.

    Returns ``(labelled_idx, pool_idx)``, sorted int64 index tensors into ``train`` that partition it.
    Random by default, as in the JIN protocol; ``stratify=True`` keeps class x group proportions.
    """
    if not 0.0 < init_frac < 1.0:
        raise ValueError(f"init_frac must lie in (0, 1), got {init_frac}")
    if stratify:
        lab, pool = stratified_split(train.y.cpu() * train.num_groups + train.g.cpu(), [init_frac, 1 - init_frac], seed)
    else:
        lab, pool = split_indices(len(train), [init_frac, 1 - init_frac], seed)
    return lab, pool


def iterate_batches(
    ds: GroupDataset,
    batch_size: int,
    *,
    idx: torch.Tensor | None = None,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y, g, index)`` batches; ``x`` float32 in [0, 1] on ``device``.

    The data set is moved to ``device`` once (keep it there: ``ds.to('cuda')``) so that batches are
    gathered on the GPU by index with no host round trip.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else ds.device
    if ds.device != device:
        ds = ds.to(device)
    order = torch.arange(len(ds)) if idx is None else torch.as_tensor(idx).cpu()
    if shuffle:
        order = order[torch.randperm(len(order), generator=generator)]
    order = order.to(device)
    n = len(order)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        b = order[start:start + batch_size]
        yield to_float(ds.x[b]), ds.y[b], ds.g[b], b


def split_size_table(data: dict[str, DataSplits]):
    """Long table of split sizes: one row per (dataset, split, group) with the count and share of the split."""
    import pandas as pd

    rows = []
    for name, splits in data.items():
        for split, ds in zip(("train", "val", "test"), splits):
            counts = torch.bincount(ds.g.cpu(), minlength=ds.num_groups)
            for gi, gname in enumerate(ds.groups):
                rows.append({"dataset": name, "split": split, "group": gname, "n": int(counts[gi]),
                             "share %": round(100.0 * int(counts[gi]) / max(1, len(ds)), 1)})
    return pd.DataFrame(rows).set_index(["dataset", "split", "group"])
