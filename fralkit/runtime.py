"""Where and how a computation runs: the device, bf16 autocast, host-device sync, the memory layout, the
eval-mode context, and the named seed schedules that derive every random stream from one run's ``seed``.

Every module takes its device, precision and seeds from here, so the CUDA path (bf16 autocast, channels_last)
and the CPU path (plain fp32) are decided in one place. The seed schedules are today's formulas, each with a
name: a record made before they were named keeps its numbers.

| schedule | formula (``M = 2^31 - 1``) | seeds |
|---|---|---|
| ``epoch_seed(s, e)`` | ``(s * 1_000_003 + e * 7_919 + 12_345) mod M`` | one epoch of ``fit`` |
| ``stage_seed(s, k, stage)`` | ``(s * 1_000_003 + k * 7_919 + stage * 104_729) mod M`` | a stage of FRAL round k |
| ``round_seed(s, k, salt)`` | ``s * 1_000_003 + k * 7_919 + salt`` | a strategy's choices in round k |
| ``std_fit_seed(s, k)`` | ``s * 1_000_003 + k`` | the default M_S training of round k |
| ``step_seed(s, t)`` | ``s * 1_000 + t`` | BALD + GRAD: labelling step t |
| ``query_seed(s, t)`` | ``s * 100_003 + t`` | BALD + GRAD: the queries of step t |
| ``offset_seed(s, o)`` | ``s + o`` | a second stream: FARMUR's phases, GRAD's head |
"""
from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    "release_cached_memory",
    "set_seed", "resolve_device", "autocast", "sync", "channels_last", "eval_mode", "model_device",
    "epoch_seed", "stage_seed", "round_seed", "std_fit_seed", "step_seed", "query_seed", "offset_seed",
]

_MOD = 2**31 - 1


# ------------------------------------------------------------------------------------------ device and precision
def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded the same.

    The one place where seeds are set: data generation, splits, init and selection all derive from it.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else CPU; any other value is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def autocast(device: torch.device | str, amp: bool, cache: bool = True):
    """bf16 autocast on CUDA when ``amp``; a no-op context on CPU, which computes in fp32.

    ``cache=False`` turns off autocast's weight-cast cache, which a captured CUDA graph must not keep.
    """
    if amp and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued kernels (CUDA), so a wall-clock timing measures the work; no-op on CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def release_cached_memory(device: torch.device | str) -> None:
    """Give the CUDA caching allocator's unused blocks back to the device (no-op on CPU). After a phase with a
    high peak (DeepFool keeps a forward graph per chunk for its k - 1 backward passes), so that one process does
    not hold its peak while other processes of a split run share the GPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def channels_last(x: torch.Tensor, on: bool) -> torch.Tensor:
    """``x`` [B, C, H, W] in the channels_last memory format when ``on`` (the layout CUDA training uses)."""
    return x.contiguous(memory_format=torch.channels_last) if on else x


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for the block; its previous train / eval mode is restored, also after an error."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


# ------------------------------------------------------------------------------------------ seed schedules
def epoch_seed(seed: int, epoch: int) -> int:
    """``fit``'s seed of one epoch: batch order, augmentation and attack noise, so a resumed run continues exactly."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % _MOD


def stage_seed(seed: int, round_: int, stage: int) -> int:
    """The FRAL loop's seed of one stage of a round (0: init / train, 1-2: its evaluations, 3: M_S, 4: selection,
    5: fine-tuning, 6-7: evaluations), so a resumed run draws what an uninterrupted one draws."""
    return (int(seed) * 1_000_003 + int(round_) * 7_919 + int(stage) * 104_729) % _MOD


def round_seed(seed: int, round_: int, salt: int = 0) -> int:
    """A strategy's seed in one FRAL round; ``salt`` separates the uses within a round (selection 0, BADGE 1,
    BALD masks 2, FairAL 3 and its look-aheads 4, M_S initialisation 17)."""
    return int(seed) * 1_000_003 + int(round_) * 7_919 + int(salt)


def std_fit_seed(seed: int, round_: int) -> int:
    """The ``fit`` seed of the default standard model M_S of a FRAL round."""
    return int(seed) * 1_000_003 + int(round_)


def step_seed(seed: int, step: int) -> int:
    """BALD + GRAD: the seed of labelling step ``step`` (its training, evaluation and MC-dropout masks)."""
    return seed * 1_000 + step


def query_seed(seed: int, step: int) -> int:
    """BALD + GRAD: the seed of the queries after labelling step ``step``."""
    return int(seed) * 100_003 + step


def offset_seed(seed: int, offset: int) -> int:
    """A second stream of one run's seed, ``seed + offset`` (FARMUR: 1 for the continuation phase and the test
    subset, 11 for the evaluated test points, 12 for Algorithm 1's training points; GRAD's group head: 7_919)."""
    return seed + offset
