"""What ``fit`` trains on, batch by batch: the per-epoch order, class-balanced oversampling, FARMUR's pairing.

A sampler owns the randomness of the batch order. ``fit`` asks it once for ``steps_per_epoch`` (what the
learning-rate schedule counts) and at the start of every epoch for that epoch's index batches (on the data's
device). An objective names its sampler (``Objective.sampler``); a factory is called as
``make(data, idx, batch_size=, seed=, oversample=, options=)`` with the objective's resolved options.

- ``EpochSampler`` (default): a permutation of ``idx`` (after class-balanced oversampling with ``oversample``)
  in chunks of ``batch_size``; a last batch of one is dropped (batch norm cannot train on it). Every epoch is
  seeded from ``epoch_seed(seed, epoch)`` (the global RNG and the order's generator), so a resumed run
  continues exactly.
- ``PairedSampler`` (FARMUR): ``"split"``, a permutation of ``idx`` in chunks, each split into its vulnerable and
  robust part; ``"cycle"``, ``batch_size`` examples of each part, one pass over the larger part with the
  smaller one reshuffled and cycled. One generator and the global RNG are seeded with ``seed`` once, for all
  epochs (so it does not resume from a checkpoint).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..data.core import GroupDataset
from ..runtime import epoch_seed

__all__ = ["PAIRINGS", "class_balanced_indices", "EpochSampler", "PairedSampler", "epoch_sampler",
           "paired_sampler"]

PAIRINGS = ("split", "cycle")


def class_balanced_indices(y: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random oversampling (the HAM10000 protocol of the JIN paper, §4.1): every class of ``idx`` is topped up,
    by drawing its examples again with replacement, to the size of the largest class; all originals are kept.

    Args:
        y: labels of the whole data set ``[N]`` (CPU).
        idx: the training indices ``[n]`` (CPU).
    Returns:
        Indices ``[C_present * max_count]``, unshuffled.
    """
    yi = y[idx]
    classes, counts = torch.unique(yi, return_counts=True)
    top = int(counts.max()) if len(counts) else 0
    parts = []
    for c, n in zip(classes.tolist(), counts.tolist()):
        members = idx[yi == c]
        extra = members[torch.randint(0, n, (top - n,), generator=generator)] if top > n else members[:0]
        parts.append(torch.cat([members, extra]))
    return torch.cat(parts) if parts else idx


class EpochSampler:
    """``fit``'s default order: each epoch a seeded permutation of ``idx`` (oversampled with ``oversample``)."""

    resumable = True

    def __init__(self, data: GroupDataset, idx: torch.Tensor, *, batch_size: int, seed: int, oversample: bool = False):
        self.y, self.idx, self.device = data.y.cpu(), idx, data.device
        self.batch_size, self.seed, self.oversample = int(batch_size), seed, bool(oversample)
        # The epoch's size; with oversampling its draw comes from the global RNG, before any epoch seeds it.
        n = len(class_balanced_indices(self.y, idx)) if oversample else len(idx)
        steps = math.ceil(n / batch_size)
        if n % batch_size == 1 and steps > 1:
            steps -= 1  # a last batch of one image breaks batch norm in train mode: drop it
        self.steps_per_epoch = steps

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        """Seed the epoch (global RNG: augmentation and attack noise) and return its index batches."""
        torch.manual_seed(epoch_seed(self.seed, epoch))
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = class_balanced_indices(self.y, self.idx, gen) if self.oversample else self.idx
        order = order[torch.randperm(len(order), generator=gen)].to(self.device, non_blocking=True)
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.steps_per_epoch)]


class PairedSampler:
    """FARMUR's paired batches of the vulnerable sub-partitions ``D^vul`` and the robust ones ``D^rob``
    (Algorithm 1 of Mousavi et al. 2023; the pairings are explained in ``fralkit.studies.farmur``).

    A part of a batch with a single example is dropped (batch norm cannot train on one example), and a batch
    left with fewer than two examples is skipped; ``steps_per_epoch`` counts the batches before that.

    Args:
        data: the training set; ``data.g`` is the partition.
        idx: the training indices (CPU).
        vulnerable: ids of the vulnerable sub-partitions.
        pairing: ``"split"`` or ``"cycle"``.
        seed: seeds the batch order (one generator for all epochs) and the global RNG (the attacks), once.
    """

    resumable = False

    def __init__(self, data: GroupDataset, idx: torch.Tensor, *, batch_size: int, seed: int,
                 vulnerable: Sequence[int] = (), pairing: str = "split"):
        if pairing not in PAIRINGS:
            raise ValueError(f"unknown pairing {pairing!r}; valid: {list(PAIRINGS)}")
        self.idx, self.device, self.batch_size, self.pairing = idx, data.device, int(batch_size), pairing
        ids = torch.as_tensor(list(vulnerable), dtype=data.g.dtype, device=data.g.device)
        self.vul = torch.isin(data.g, ids)  # [N] bool: the example's sub-partition is vulnerable
        self.gen = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))
        n_vul = int(self.vul[idx.to(self.device)].sum())
        paired = pairing == "cycle" and 0 < n_vul < len(idx)
        self.steps_per_epoch = math.ceil((max(n_vul, len(idx) - n_vul) if paired else len(idx)) / batch_size)

    def _raw(self, pairing: str) -> list[torch.Tensor]:
        if pairing == "split":
            order = self.idx[torch.randperm(len(self.idx), generator=self.gen)].to(self.device)
            return list(order.split(self.batch_size))
        is_vul = self.vul[self.idx.to(self.device)].cpu()
        vul_idx, rob_idx = self.idx[is_vul], self.idx[~is_vul]
        if len(vul_idx) == 0 or len(rob_idx) == 0:  # nothing to pair: plain batches of the one non-empty subset
            return self._raw("split")

        def stream(pool: torch.Tensor):
            while True:
                yield from pool[torch.randperm(len(pool), generator=self.gen)].split(self.batch_size)

        sv, sr = stream(vul_idx), stream(rob_idx)
        steps = math.ceil(max(len(vul_idx), len(rob_idx)) / self.batch_size)
        return [torch.cat([next(sv), next(sr)]).to(self.device) for _ in range(steps)]

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's index batches (drawn from the sampler's one generator, in order)."""
        out = []
        for b in self._raw(self.pairing):
            vm = self.vul[b]
            n_vul = int(vm.sum())
            if n_vul == 1 or len(vm) - n_vul == 1:  # a one-example part: batch norm cannot train on it
                b = b[vm if n_vul > 1 else ~vm]
                if len(b) < 2:
                    continue
            out.append(b)
        return out


def epoch_sampler(data: GroupDataset, idx: torch.Tensor, *, batch_size: int, seed: int, oversample: bool,
                  options: dict) -> EpochSampler:
    """The default sampler factory (``Objective.sampler``)."""
    return EpochSampler(data, idx, batch_size=batch_size, seed=seed, oversample=oversample)


def paired_sampler(data: GroupDataset, idx: torch.Tensor, *, batch_size: int, seed: int, oversample: bool,
                   options: dict) -> PairedSampler:
    """FARMUR's sampler factory: reads the objective's ``vulnerable`` and ``pairing`` options."""
    if oversample:
        raise ValueError("objective 'farmur' pairs its own batches: oversample must be False")
    return PairedSampler(data, idx, batch_size=batch_size, seed=seed, vulnerable=options["vulnerable"],
                         pairing=options["pairing"])
