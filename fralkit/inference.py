"""The one eval-mode inference loop: clean logits, attacked logits, embeddings and MC-dropout samples.

``infer`` walks ``data[idx]`` in order in chunks of ``batch_size`` with the model in eval mode (its mode is
restored) and returns, from one pass, any of: the clean logits ``[N, C]``, the logits on PGD examples made under
a given threat model ``[N, C]``, and the embeddings ``[N, D]`` (the input of the head's last linear layer:
``model.features(x)`` for the backbones of ``fralkit.models``, whose head is one linear layer). Per batch the
order is fixed: clean forward, attack, attacked forward, so the attacks' random starts draw from the RNG in
batch order. ``mc_probs`` gives the MC-dropout samples ``[N, C, T]`` of BALD.

Choices a caller makes, with their defaults: ``amp`` (bf16 autocast on CUDA; CPU stays fp32),
``channels_last`` (``None``: on CUDA), ``pad`` (pad a short batch to the full batch, or a set smaller than one
batch to ``BUCKET`` rows times a power of two, so that candidate sets of every size reuse a few input shapes; rows
are independent in eval mode, so padding changes no real row), ``seed`` (seeds the attacks' random starts in a
forked RNG, leaving the caller's stream alone), ``fold_bn`` (``None``: the attack runs on the batch-norm-folded
twin on CUDA, the model itself on the CPU). All outputs are float32 on the model's device.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.dropout import _DropoutNd

from . import runtime
from .attacks.pgd import pgd
from .data.core import GroupDataset, to_float
from .models import FoldedTwin, has_dropout_only_in_head, mc_dropout
from .runtime import autocast, eval_mode, model_device

__all__ = ["BUCKET", "Outputs", "batches", "infer", "clean_logits", "attacked_logits", "embeddings", "mc_probs",
           "last_linear"]

# With ``pad``, every chunk of a set that fills at least one batch is padded to the full batch (one shape for the
# whole set, the same in every round as the pool shrinks), and a set smaller than one batch to BUCKET * 2**k >= n
# rows: at most log2(batch_size / BUCKET) + 2 shapes, whatever the sizes of the candidate sets. Each new shape costs
# cuDNN its plans (runtime-compiled depthwise kernels among them): on one H200 that set-up was most of JIN's
# selection time in the FRAL loop (benchmarks/fral_study_cost.py): 2.4, 5.2, 5.6, 1.2 and 1.1 s over its five
# rounds with the last chunk padded to BUCKET * 2**k only (commit 20a96dd), the slow rounds those where a new
# multiple appeared; 2.34, 1.39, 1.37, 1.20 and 1.29 s with every chunk at the full batch (commit 5fc9436).
BUCKET = 128


class Outputs(NamedTuple):
    """What ``infer`` returns; a part that was not asked for is ``None``."""

    logits: torch.Tensor | None  # [N, C] clean logits
    adv_logits: torch.Tensor | None  # [N, C] logits on the attacked inputs
    embeddings: torch.Tensor | None  # [N, D] input of the head's last linear layer


def _images(data: GroupDataset | torch.Tensor) -> torch.Tensor:
    if isinstance(data, GroupDataset):
        return data.x
    if isinstance(data, torch.Tensor):
        if data.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(data.shape)}")
        return data
    raise ValueError(f"data must be a GroupDataset or an image tensor [N, C, H, W], got {type(data).__name__}")


def _order(n: int, idx: torch.Tensor | Sequence[int] | None) -> torch.Tensor:
    order = torch.arange(n) if idx is None else torch.as_tensor(idx).cpu()
    if order.dtype == torch.bool:
        order = order.nonzero().flatten()
    return order.long()


def batches(data: GroupDataset | torch.Tensor, idx: torch.Tensor | Sequence[int] | None = None, batch_size: int = 1024,
            *, device: torch.device | None = None, channels_last: bool = False,
            pad: bool = False) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """Yield ``(x, n, b)``: float [0, 1] images of ``data[idx]`` (default all, in this order) in chunks, the number
    ``n`` of real rows in the chunk, and the chunk's indices ``b`` (on the data's device).

    Args:
        data: a ``GroupDataset`` or an image tensor ``[N, C, H, W]`` (uint8, or float in [0, 1]).
        idx: indices (or a bool mask) of the rows to read.
        device: where ``x`` goes (default: the data's device).
        channels_last: return ``x`` in the channels_last memory format.
        pad: pad each chunk with copies of its first row: to ``batch_size`` rows when the set fills at least one
            batch, else to ``BUCKET * 2**k`` rows (the fewest that hold it).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    x_all = _images(data)
    order = _order(len(x_all), idx).to(x_all.device)
    full = len(order) >= batch_size
    for start in range(0, len(order), batch_size):
        b = order[start:start + batch_size]
        x = to_float(x_all[b].to(device if device is not None else x_all.device, non_blocking=True))
        n = x.shape[0]
        rows = (batch_size if full else _bucket(n)) if pad else n
        if rows > n:
            x = torch.cat([x, x[:1].expand(rows - n, *x.shape[1:])])
        yield runtime.channels_last(x, channels_last and x.ndim == 4), n, b


def _bucket(n: int) -> int:
    """The padded size of a chunk of ``n`` rows: the smallest ``BUCKET * 2**k >= n``."""
    rows = BUCKET
    while rows < n:
        rows *= 2
    return rows


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model.head``, whose input is the penultimate embedding (CSET, BADGE, BALD)."""
    head = getattr(model, "head", None)
    if head is None:
        raise ValueError("embeddings need a model with features(x) and head(z) (see fralkit.models)")
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model's head has no nn.Linear layer; BADGE/CSET/BALD need its last linear layer")
    return linears[-1]


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([t, t[:1].expand(rows - t.shape[0], *t.shape[1:])]) if rows > t.shape[0] else t


def infer(model: nn.Module, data: GroupDataset | torch.Tensor, idx: torch.Tensor | Sequence[int] | None = None, *,
          batch_size: int = 1024, amp: bool = True, channels_last: bool | None = None, pad: bool = False,
          clean: bool = True, attack: dict | None = None, targets: torch.Tensor | None = None, embed: bool = False,
          seed: int | None = None, fold_bn: bool | None = None) -> Outputs:
    """Clean logits, attacked logits and / or embeddings of ``model`` on ``data[idx]``, in eval mode, in one pass.

    Args:
        model: a classifier on [0, 1] inputs (for ``embed``: with ``head``, see ``last_linear``).
        data: a ``GroupDataset`` or an image tensor ``[N, C, H, W]``.
        idx: rows to read (indices or a bool mask; default all), in this order.
        batch_size: rows per forward pass.
        amp: bf16 autocast on CUDA (attack and forwards).
        channels_last: the channels_last layout for the inputs (``None``: on CUDA).
        pad: pad short batches as ``batches`` does (the padding is dropped from the outputs).
        clean: compute the clean logits.
        attack: ``fralkit.attacks.pgd`` options (``eps``, ``alpha``, ``steps``, ``loss``, ...): also compute the
            logits on ``pgd(model, x, targets)``; ``None``: no attack.
        targets: the attack's targets ``[N]`` in the order of ``idx`` (default: the data set's labels).
        embed: capture the input of the head's last linear layer during the clean forward.
        seed: seeds the attacks' random starts inside a forked RNG; ``None`` draws from the global RNG.
        fold_bn: the attack's PGD steps run on a ``fralkit.models.FoldedTwin`` of the model (batch norm folded into
            the convolutions, bf16 weights under ``amp``): the same eval-mode function with fewer layers, as ``fit``
            attacks on CUDA; the logits themselves come from the model. ``None``: on CUDA (the CPU keeps the plain
            attack and its results exactly).

    Returns:
        ``Outputs(logits [N, C], adv_logits [N, C], embeddings [N, D])``, float32 on the model's device.
    """
    dev = model_device(model)
    on_cuda = dev.type == "cuda"
    layout = on_cuda if channels_last is None else bool(channels_last)
    if attack is not None and targets is None and not isinstance(data, GroupDataset):
        raise ValueError("infer: an attack on an image tensor needs its targets")
    width = data.num_classes if isinstance(data, GroupDataset) else 0
    clean = clean or embed
    lin = last_linear(model) if embed else None
    outs_c: list[torch.Tensor] = []
    outs_a: list[torch.Tensor] = []
    outs_e: list[torch.Tensor] = []
    attacker = model
    if attack is not None and (on_cuda if fold_bn is None else fold_bn):
        twin = FoldedTwin(model, dtype=torch.bfloat16 if amp and on_cuda else None)
        attacker = twin.module if twin.folded else model
        if attacker is not model:
            attacker = attacker.to(memory_format=torch.channels_last) if layout else attacker
    rng = torch.random.fork_rng(devices=[dev] if on_cuda else [], enabled=seed is not None)
    with rng, eval_mode(model):
        if seed is not None:
            torch.manual_seed(int(seed))
        start = 0
        for x, n, b in batches(data, idx, batch_size, device=dev, channels_last=layout, pad=pad):
            with autocast(dev, amp):
                if clean:
                    captured: list[torch.Tensor] = []
                    hook = lin.register_forward_hook(lambda m, i, o: captured.append(i[0].float())) if embed else None
                    try:
                        with torch.no_grad():
                            outs_c.append(model(x).float()[:n])
                    finally:
                        if hook is not None:
                            hook.remove()
                    if embed:
                        outs_e.append(captured[-1][:n])
                if attack is not None:
                    t = data.y[b] if targets is None else targets[start:start + n]
                    t = _pad_rows(t.to(dev, non_blocking=True), x.shape[0])
                    x_adv = pgd(attacker, x, t, **attack)
                    with torch.no_grad():
                        outs_a.append(model(x_adv).float()[:n])
            start += n

    def cat(parts: list[torch.Tensor], w: int) -> torch.Tensor:
        return torch.cat(parts) if parts else torch.empty(0, w, device=dev)

    return Outputs(cat(outs_c, width) if clean else None, cat(outs_a, width) if attack is not None else None,
                   cat(outs_e, lin.in_features) if embed else None)


def clean_logits(model: nn.Module, data: GroupDataset | torch.Tensor, idx=None, **kw) -> torch.Tensor:
    """Clean logits ``[N, C]`` (``infer`` with its options)."""
    return infer(model, data, idx, **kw).logits


def attacked_logits(model: nn.Module, data: GroupDataset | torch.Tensor, idx=None, *, attack: dict,
                    **kw) -> torch.Tensor:
    """Logits ``[N, C]`` on ``pgd(model, x, targets, **attack)`` (``infer`` with ``clean=False``)."""
    return infer(model, data, idx, clean=False, attack=attack, **kw).adv_logits


def embeddings(model: nn.Module, data: GroupDataset | torch.Tensor, idx=None, **kw) -> torch.Tensor:
    """Penultimate embeddings ``[N, D]``: the input of the head's last linear layer (``infer(embed=True)``)."""
    return infer(model, data, idx, embed=True, **kw).embeddings


def mc_probs(model: nn.Module, data: GroupDataset | torch.Tensor, *, T: int = 20, idx: torch.Tensor | None = None,
             batch_size: int = 512, fast: bool | None = None, seed: int | None = None,
             amp: bool | None = None) -> torch.Tensor:
    """MC-dropout class probabilities ``[N, C, T]`` (the samples of ``p(y | x, w_t)``, ``w_t ~ q(w)``): ``T``
    stochastic passes with every Dropout layer on and everything else (BatchNorm) in eval mode (Gal &
    Ghahramani 2016; Eq. 1 of the BALD + GRAD paper scores them).

    Args:
        model: a classifier with Dropout layers (inputs in [0, 1]); with ``features``/``head`` for the fast path.
        data: a ``GroupDataset`` or an image tensor ``[N, C, H, W]`` (uint8, or float in [0, 1]).
        T: number of MC samples (20 in the paper).
        idx: rows of ``data`` to score (default all), in this order.
        batch_size: examples per trunk pass.
        fast: compute ``features`` once and sample ``head`` T times. None (default) = whenever every Dropout
            layer sits in the head (``fralkit.models.has_dropout_only_in_head``); True insists (ValueError
            otherwise); False = T full forward passes ``model(x)`` (the reference path). Both paths draw the
            masks in the same order (head pass t of batch b), so with one ``seed`` they agree up to rounding.
        seed: seeds the dropout masks in a forked RNG (the caller's RNG stream is untouched). None uses the
            current RNG.
        amp: bf16 autocast on CUDA (default: on there; CPU stays fp32).

    Returns:
        float32 ``[N, C, T]`` on the model's device.
    """
    if T < 1:
        raise ValueError(f"T (MC samples) must be >= 1, got {T}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = model_device(model)
    amp = (device.type == "cuda") if amp is None else amp
    if not any(isinstance(m, _DropoutNd) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no Dropout layer: MC dropout needs one (e.g. make_model('vgg_mc', ...) "
                         "or make_model('small_cnn', ..., dropout=0.5))")
    splits = callable(getattr(model, "features", None)) and callable(getattr(model, "head", None))
    trunk_clean = splits and has_dropout_only_in_head(model)
    if fast and not trunk_clean:
        raise ValueError("fast=True needs a features/head split with every Dropout layer in the head "
                         f"({type(model).__name__} has dropout outside model.head)")
    use_fast = trunk_clean if fast is None else bool(fast)

    fork_devices = [device] if device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=fork_devices) if seed is not None else contextlib.nullcontext()
    out = []
    with rng, mc_dropout(model), torch.no_grad(), autocast(device, amp):
        if seed is not None:
            torch.manual_seed(int(seed))
        for x, _, _ in batches(data, idx, batch_size, device=device, channels_last=device.type == "cuda"):
            if use_fast:
                z = model.features(x)
                samples = [model.head(z).float().softmax(-1) for _ in range(T)]
            else:
                samples = [model(x).float().softmax(-1) for _ in range(T)]
            out.append(torch.stack(samples, dim=-1))
    if not out:
        return torch.empty((0, 0, T), device=device)
    return torch.cat(out)
