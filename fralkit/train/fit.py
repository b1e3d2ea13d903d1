"""``fit``: one training engine for every objective (``fralkit.train.objectives``), read in three parts.

1. ``_prepare``: device, layout, the objective's sampler (``fralkit.train.samplers``), the optimiser
   (``fralkit.train.optim``) and the attack set-up (``fralkit.train.fast``).
2. The epoch loop in ``fit``: resume from a checkpoint (``_resume``), one ``_epoch`` per epoch, its history
   (``_log_epoch``), a checkpoint after every epoch (``_save_checkpoint``).
3. ``_epoch``: per batch gather, augment (``fralkit.train.augment``), set the scheduled lr, the objective's step
   under bf16 autocast, ``_update`` (backward, clipping, optimiser step).

The training hyperparameters live in one table, ``Recipe``; ``fit(model, data, recipe, **overrides)`` takes a
recipe and keyword overrides of its fields (or of the objective's options), so ``fit(model, data, epochs=3)``
works as well as ``fit(model, data, Recipe(...))``. A checkpoint is keyed by every recipe field that changes
the result (``Recipe.key``), the seed and the number of training examples: a checkpoint of another run is
refused with the fields that differ. A call may be one phase of a longer schedule (``Recipe.start_epoch``,
``Recipe.schedule_epochs``): its lr continues the whole schedule, and the optimiser passed in (``optimizer=``)
keeps its state, so E - T epochs and then T epochs, possibly of another objective, share one schedule.

**Speed.** On CUDA: the data set lives on the GPU and batches are gathered by index; augmentation runs on the
GPU; bf16 autocast; channels_last; a fused optimizer; losses and accuracies accumulate on the device and are
read once per epoch (no host-device sync in the inner loop). For the fixed-shape objectives (standard, PGD-AT,
TRADES, GRAD) the whole step, from the gather to the optimiser step, is one CUDA graph (``_graphed_epoch``,
``cuda_graph=True`` by default): its first two steps run eagerly, the third is captured, every later one is a
replay, with the scheduled lr written into a device tensor before each. A graph needs one batch shape, so on
this path **the last batch of an epoch is filled up to the full batch by drawing indices of the epoch at random
(with replacement)**; a training set smaller than ``batch_size`` is one batch of all its examples.
``compile=True`` compiles the model and the attack's twin with ``torch.compile`` (default mode, which leaves
CUDA graphs to ``fit``; ``compile="max-autotune-no-cudagraphs"`` also autotunes) inside that captured step.
FairAT, FARMUR and optimisers other than SGD / fused Adam(W) train eagerly (the reason is in ``fit``'s docstring). CPU trains in fp32, eagerly, with today's batches.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..data.core import GroupDataset, to_float
from ..inference import infer
from ..runtime import autocast, channels_last as to_layout, resolve_device, sync
from ..utils import atomic_torch_save, load_checkpoint, progress
from .augment import AUGMENTATIONS, augment_batch
from .fast import COMPILE_MODES, CapturedStep, FoldedTwin, attack_setup, compiled, graph_safe_optimizer
from .objectives import OBJECTIVES, Objective, Step
from .optim import OPTIMIZERS, SCHEDULES, lr_at, make_optimizer

__all__ = ["Recipe", "FitResult", "fit"]

# Recipe fields that change how fast a run goes, not what it computes: left out of the checkpoint key.
_SPEED_FIELDS = ("amp", "channels_last", "compile", "cuda_graph", "fold_bn", "cudnn_benchmark")


@dataclass(frozen=True)
class Recipe:
    """The training hyperparameters of ``fit`` with their defaults, in one table.

    Attributes:
        objective: a key of ``OBJECTIVES``.
        epochs: passes over the training indices (over the oversampled set with ``oversample``) in this call.
        schedule_epochs: length in epochs of the whole learning-rate schedule this call is a phase of; ``None``:
            ``start_epoch + epochs`` (a plain call is the whole schedule).
        start_epoch: the schedule's epoch where this call starts. The lr of the call's step ``s`` is
            ``lr_at(start_epoch * S + s, schedule_epochs * S)`` with ``S`` this call's steps per epoch, so it
            follows the fraction of the whole schedule, and a phase with another sampler (FARMUR's paired
            batches) continues it; the default sampler seeds its epochs by their schedule epoch, so the phases
            ``E - T`` then ``T`` of one sampler, seed and optimiser (``optimizer=`` the first phase's) train
            exactly as one ``E``-epoch call.
        batch_size: examples per step (FairAT adds its copies on top).
        lr: peak learning rate.
        optimizer: ``"sgd"`` (momentum, optional Nesterov), ``"adam"``, ``"adamw"``, or an existing optimiser over
            the model's parameters (kept across calls, e.g. for fine-tuning; its lr is driven by ``schedule``).
        momentum, weight_decay, nesterov: optimiser settings (TRADES' CIFAR-10 recipe: 0.9, 2e-4).
        schedule: ``"cosine"``, ``"constant"``, ``"step"`` (x0.1 at 75 % and 90 %) or ``"onecycle"``, per batch.
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        eps, alpha, steps: the L-inf PGD threat model of the adversarial objectives (JIN §4.1 by default).
        beta: TRADES' weight of the KL term (also FairAT with ``base="trades"``, FARMUR).
        augment: training augmentation of every batch: ``"none"``, ``"crop"`` (pad 1/8 of the image side, random
            crop) or ``"crop+flip"`` (not for glyph data: a flip turns b into d).
        oversample: class-balanced random oversampling each epoch (the JIN paper's HAM10000 protocol).
        grad_clip: clip the gradient's global L2 norm (GRAD's public code uses 5); ``None``: no clipping.
        options: the objective's own options (``OBJECTIVES[name].options``; FairAT: ``hard_frac``, ``hard_by``,
            ``hard_aug``, ``hard_aug_strength``, ``crop_pad``, ``flip``, ``base``; GRAD: ``group_weight``; FARMUR:
            ``vulnerable``, ``pairing``).
        amp: bf16 autocast on CUDA (ignored on CPU, which trains in fp32).
        channels_last: channels_last memory format on CUDA.
        compile: wrap the model (and the attack's twin) in ``torch.compile`` on CUDA, inside the captured step when
            the step is graphed (the compiler's warm-up, tens of seconds per new model shape, is paid by the first
            steps of the process). ``True`` is the default mode; a string is one of ``COMPILE_MODES``
            (``"max-autotune-no-cudagraphs"`` also times Triton's kernels against cuBLAS / cuDNN: minutes of warm-up).
        cuda_graph: on CUDA, the whole step of a graphable objective as one CUDA graph (module docstring; the
            last batch of an epoch is then filled by sampling); FairAT: its PGD loops. Ignored on CPU.
        fold_bn: attack a ``FoldedTwin`` of the model (batch norm folded into the convolutions).
        cudnn_benchmark: let cuDNN time its algorithms for every new input shape during the call (CUDA only; the
            previous setting is restored on return). It pays off when the shapes stay fixed; a caller whose batch
            shapes change from call to call (the FRAL loop, where |D_L| grows every round) pays seconds per shape.
    """

    objective: str = "standard"
    epochs: int = 10
    schedule_epochs: int | None = None
    start_epoch: int = 0
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str | torch.optim.Optimizer = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    eps: float = 4 / 255
    alpha: float = 2 / 255
    steps: int = 5
    beta: float = 6.0
    augment: str = "none"
    oversample: bool = False
    grad_clip: float | None = None
    options: dict = field(default_factory=dict)
    amp: bool = True
    channels_last: bool = True
    compile: bool | str = False
    cuda_graph: bool = True
    fold_bn: bool = True
    cudnn_benchmark: bool = True

    def replace(self, **overrides) -> "Recipe":
        """A copy with ``overrides``: recipe fields replace, any other name is an objective option (merged)."""
        names = {f.name for f in dataclasses.fields(self)}
        fields_ = {k: v for k, v in overrides.items() if k in names}
        options = {**fields_.pop("options", self.options), **{k: v for k, v in overrides.items() if k not in names}}
        return dataclasses.replace(self, **fields_, options=options)

    def kwargs(self) -> dict:
        """The recipe as ``fit`` keyword arguments (objective options flattened): ``fit(m, d, **r.kwargs())``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        return {**out, **self.options}

    def check(self) -> dict:
        """Validate names and sizes before any work; return the objective's options with their defaults."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {sorted(OBJECTIVES)}")
        obj = OBJECTIVES[self.objective]
        unknown = sorted(set(self.options) - set(obj.options))
        if unknown:
            raise ValueError(f"objective {self.objective!r} takes no option(s) {unknown}; "
                             f"its options: {sorted(obj.options) or 'none'}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {self.augment!r}; valid: {list(AUGMENTATIONS)}")
        if not isinstance(self.optimizer, torch.optim.Optimizer) and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {list(OPTIMIZERS)} or a torch.optim.Optimizer")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {list(SCHEDULES)}")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be True, False or one of {list(COMPILE_MODES)}, got {self.compile!r}")
        if self.epochs < 0 or self.batch_size <= 0:
            raise ValueError(f"epochs must be >= 0 and batch_size > 0, got epochs={self.epochs}, "
                             f"batch_size={self.batch_size}")
        if self.start_epoch < 0 or self.start_epoch + self.epochs > self.total_epochs():
            raise ValueError(f"the call's epochs {self.start_epoch}..{self.start_epoch + self.epochs} must lie in the "
                             f"schedule's 0..{self.total_epochs()} (start_epoch={self.start_epoch}, epochs="
                             f"{self.epochs}, schedule_epochs={self.schedule_epochs})")
        return {**obj.options, **self.options}

    def total_epochs(self) -> int:
        """The whole schedule's length in epochs (``schedule_epochs``, default ``start_epoch + epochs``)."""
        return self.start_epoch + self.epochs if self.schedule_epochs is None else int(self.schedule_epochs)

    def key(self, options: dict) -> dict:
        """The fields that change the result (not the speed settings), with the resolved objective options."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in _SPEED_FIELDS and f.name != "options"}
        if isinstance(self.optimizer, torch.optim.Optimizer):
            out["optimizer"] = type(self.optimizer).__name__
        out["schedule_epochs"] = self.total_epochs()
        out["options"] = dict(sorted(options.items()))
        return out


@dataclass
class FitResult:
    """What ``fit`` returns: per-epoch history and wall time.

    Attributes:
        history: per-epoch lists: ``loss`` (mean training loss), ``acc`` (training accuracy of the logits the
            objective trains on: clean for standard / TRADES / GRAD, adversarial for PGD-AT, clean + copies
            for FairAT), ``lr`` (at the epoch's end), ``seconds``; with ``val``: ``val_acc`` (and ``val_rob_acc``);
            the objective's ``logs`` (means over the epoch's batches; FARMUR: ``farmur_loss``, ``trades``, ``natural``).
        seconds: wall time of the epochs run by this call.
        epochs: epochs completed in total (including those restored from a checkpoint).
        objective: the objective's name.
        images: training images processed by this call (copies included), for throughput.
        graphed: the whole step ran as one CUDA graph; ``eager_reason``: why a CUDA run with ``cuda_graph`` did not.
    """

    history: dict[str, list[float]]
    seconds: float
    epochs: int = 0
    objective: str = ""
    images: int = 0
    graphed: bool = False
    eager_reason: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class _Run:
    """What ``_prepare`` sets up for the epoch loop."""

    model: nn.Module
    net: nn.Module  # the model as trained (compiled on request)
    data: GroupDataset
    val: GroupDataset | None
    device: torch.device
    objective: Objective
    options: dict
    sampler: object
    opt: torch.optim.Optimizer
    hp: dict  # what the objective's step reads: threat model, the engine's attack, num_classes
    twin: FoldedTwin | None
    n: int  # training examples
    total_steps: int
    warmup: int
    crop_pad: int
    amp: bool
    channels_last: bool
    graphed: bool = False  # the whole step as one CUDA graph (``_graphed_epoch``)
    eager_reason: str = ""  # why a CUDA run with ``cuda_graph`` trains eagerly


def _indices(idx, n: int) -> torch.Tensor:
    if idx is None:
        return torch.arange(n)
    base = torch.as_tensor(idx).cpu()
    if base.dtype == torch.bool:
        base = base.nonzero().flatten()
    return base.long()


def _prepare(model: nn.Module, data: GroupDataset, r: Recipe, options: dict, *, idx, seed: int, device,
             val: GroupDataset | None) -> _Run:
    dev = resolve_device(device)
    on_cuda = dev.type == "cuda"
    amp, layout = bool(r.amp and on_cuda), bool(r.channels_last and on_cuda)
    data = data if data.device == dev else data.to(dev)
    val = val if val is None or val.device == dev else val.to(dev)
    model.to(dev)
    if layout:
        model.to(memory_format=torch.channels_last)
    net = compiled(model, r.compile if on_cuda else False)
    base_idx = _indices(idx, len(data))
    if len(base_idx) == 0:
        raise ValueError("fit: the training index set is empty")
    obj = OBJECTIVES[r.objective]
    sampler = obj.sampler(data, base_idx, batch_size=r.batch_size, seed=seed, oversample=r.oversample, options=options)
    opt = r.optimizer if isinstance(r.optimizer, torch.optim.Optimizer) else make_optimizer(
        model, r.optimizer, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, nesterov=r.nesterov, device=dev)
    graphed, reason = False, ""
    if on_cuda and r.cuda_graph:
        reason = _eager_reason(r, obj, opt)
        graphed = not reason
    # Inside the whole-step graph the attack runs eagerly (a graph cannot be captured inside another one).
    attack, twin = attack_setup(r.objective, options, model, net, eps=r.eps, alpha=r.alpha, steps=r.steps, amp=amp,
                                on_cuda=on_cuda, fold_bn=r.fold_bn, cuda_graph=r.cuda_graph and not graphed,
                                compile=r.compile)
    hp = {"eps": r.eps, "alpha": r.alpha, "steps": r.steps, "beta": r.beta, "attack": attack,
          "num_classes": data.num_classes}
    return _Run(model, net, data, val, dev, obj, options, sampler, opt, hp, twin, len(base_idx),
                total_steps=max(1, r.total_epochs() * sampler.steps_per_epoch),
                warmup=int(round(r.warmup_epochs * sampler.steps_per_epoch)),
                crop_pad=max(1, data.image_size // 8), amp=amp, channels_last=layout, graphed=graphed,
                eager_reason=reason)


def _eager_reason(r: Recipe, obj: Objective, opt: torch.optim.Optimizer) -> str:
    """Why a CUDA run with ``cuda_graph`` trains eagerly; ``""`` when its whole step can be one graph."""
    if not obj.graphable:
        return f"objective {obj.name!r} is not graphable (variable shapes or host reads)"
    if type(opt) is torch.optim.SGD:
        return "differentiable SGD has no fused kernel" if any(g.get("differentiable") for g in opt.param_groups) else ""
    if type(opt) in (torch.optim.Adam, torch.optim.AdamW):
        return "" if all(g.get("fused") for g in opt.param_groups) else f"{type(opt).__name__} is not fused"
    return f"optimizer {type(opt).__name__} has no graph-safe step"


def _update(run: _Run, loss: torch.Tensor, grad_clip: float | None) -> None:
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
    run.opt.step()


def _epoch(run: _Run, r: Recipe, epoch: int, step: int, bar) -> tuple[dict, int]:
    """One epoch of the objective's steps; returns its sums (on the device) and the next global step."""
    dev, data = run.device, run.data
    sums = {"loss": torch.zeros((), device=dev), "correct": torch.zeros((), device=dev)}
    logs = {k: torch.zeros((), device=dev) for k in run.objective.logs}
    seen = batches = 0
    for b in run.sampler.epoch(epoch):
        x = to_layout(augment_batch(to_float(data.x[b]), r.augment, run.crop_pad), run.channels_last)
        y, g = data.y[b], data.g[b]
        cur_lr = lr_at(step, run.total_steps, lr=r.lr, schedule=r.schedule, warmup=run.warmup)
        for group in run.opt.param_groups:
            group["lr"] = cur_lr
        if run.twin is not None:
            run.twin.refresh()
        with autocast(dev, run.amp):
            out = Step(*run.objective.step(run.net, x, y, g, run.hp, run.options))
        _update(run, out.loss, r.grad_clip)
        m = out.labels.shape[0]
        sums["loss"] += out.loss.detach().float() * m
        sums["correct"] += (out.logits.detach().argmax(1) == out.labels).sum()
        for k, v in (out.logs or {}).items():
            logs[k] += v.float()
        seen += m
        batches += 1
        step += 1
        bar.update(1)
    return {"sums": sums, "logs": logs, "seen": seen, "batches": batches}, step


def _accuracy(model: nn.Module, data: GroupDataset, *, amp: bool, channels_last: bool,
              attack: dict | None = None) -> float:
    out = infer(model, data, batch_size=1024, amp=amp, channels_last=channels_last, clean=attack is None, attack=attack)
    logits = out.logits if attack is None else out.adv_logits
    return float((logits.argmax(1) == data.y).sum()) / max(1, len(data))


def _graphed_epoch(run: _Run, r: Recipe, epoch: int, step: int, bar, state: dict) -> tuple[dict, int]:
    """``_epoch`` with the whole step as one CUDA graph (module docstring): the same gather, augmentation, twin
    refresh, objective step and update, reading the batch from a fixed index buffer and the lr from a device
    tensor; the last batch is filled up to the full batch by sampling the epoch's indices with replacement."""
    batches = run.sampler.epoch(epoch)
    if "step" not in state:
        _capture_setup(run, r, len(batches[0]), state)
    size, sums, idx, lr_t = state["size"], state["sums"], state["idx"], state["lr"]
    for v in sums.values():
        v.zero_()
    pool = torch.cat(batches) if len(batches[-1]) < size else None
    for b in batches:
        if len(b) < size:
            b = torch.cat([b, pool[torch.randint(len(pool), (size - len(b),), device=pool.device)]])
        idx.copy_(b)
        lr_t.fill_(lr_at(step, run.total_steps, lr=r.lr, schedule=r.schedule, warmup=run.warmup))
        state["step"]()
        step += 1
        bar.update(1)
    return {"sums": dict(sums), "logs": {}, "seen": size * len(batches), "batches": len(batches)}, step


def _capture_setup(run: _Run, r: Recipe, size: int, state: dict) -> None:
    """The fixed buffers of ``_graphed_epoch`` and its step function (``fralkit.train.fast.CapturedStep``)."""
    dev, data = run.device, run.data
    restore, reason = graph_safe_optimizer(run.opt)
    if restore is None:
        raise ValueError(f"fit: the optimiser cannot run inside a CUDA graph ({reason}); pass cuda_graph=False")
    idx = torch.zeros(size, dtype=torch.long, device=dev)
    sums = {"loss": torch.zeros((), device=dev), "correct": torch.zeros((), device=dev)}

    def one_step() -> None:
        x = to_layout(augment_batch(to_float(data.x[idx]), r.augment, run.crop_pad), run.channels_last)
        y, g = data.y[idx], data.g[idx]
        if run.twin is not None:
            run.twin.refresh()
        with autocast(dev, run.amp, cache=False):  # autocast's weight cache must not outlive a capture
            out = Step(*run.objective.step(run.net, x, y, g, run.hp, run.options))
        _update(run, out.loss, r.grad_clip)
        sums["loss"] += out.loss.detach().float() * out.labels.shape[0]
        sums["correct"] += (out.logits.detach().argmax(1) == out.labels).sum()

    state.update(size=size, sums=sums, idx=idx, lr=run.opt.param_groups[0]["lr"], restore=restore,
                 step=CapturedStep(one_step))


def _new_history(obj: Objective, val: GroupDataset | None, val_robust: bool) -> dict[str, list[float]]:
    history: dict[str, list[float]] = {"loss": [], "acc": [], "lr": [], "seconds": []}
    if val is not None:
        history["val_acc"] = []
        if val_robust:
            history["val_rob_acc"] = []
    history.update({k: [] for k in obj.logs})
    return history


def _log_epoch(history: dict, run: _Run, r: Recipe, stats: dict, val_robust: bool) -> None:
    seen = max(1, stats["seen"])
    history["loss"].append(float(stats["sums"]["loss"]) / seen)
    history["acc"].append(float(stats["sums"]["correct"]) / seen)
    history["lr"].append(float(run.opt.param_groups[0]["lr"]))
    for k, v in stats["logs"].items():
        history[k].append(float(v / max(1, stats["batches"])))
    if run.val is not None:
        history["val_acc"].append(_accuracy(run.model, run.val, amp=run.amp, channels_last=run.channels_last))
        if val_robust:
            history["val_rob_acc"].append(_accuracy(
                run.model, run.val, amp=run.amp, channels_last=run.channels_last,
                attack={"eps": r.eps, "alpha": r.alpha, "steps": r.steps, "loss": "ce"}))


def _resume(checkpoint: Path, key: dict, run: _Run, end: int) -> tuple[dict, int]:
    """History and schedule epoch of a matching checkpoint (the call ends at epoch ``end``), its model and
    optimiser state loaded; refuses another run's."""
    state = load_checkpoint(checkpoint, map_location=run.device)
    saved = state.get("run") or {}
    if saved != key:
        diff = sorted(k for k in set(saved) | set(key) if saved.get(k, "<missing>") != key.get(k, "<missing>"))
        detail = ", ".join(f"{k}: {saved.get(k, '<missing>')!r} -> {key.get(k, '<missing>')!r}" for k in diff)
        raise ValueError(f"checkpoint {checkpoint} belongs to another run (differs in {diff}: {detail}); "
                         "delete it or pass another path")
    start = int(state["epoch"])
    if start < end and not getattr(run.sampler, "resumable", True):
        raise ValueError(f"objective {key['objective']!r} draws its batches from one stream over all epochs and "
                         f"cannot resume from epoch {start}; delete {checkpoint} to start again")
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    return {k: list(v) for k, v in state["history"].items()}, start


def _save_checkpoint(path: Path, run: _Run, epoch: int, history: dict, key: dict) -> None:
    atomic_torch_save({"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "epoch": epoch,
                       "history": history, "run": key}, path)


def fit(model: nn.Module, data: GroupDataset, recipe: Recipe | None = None, *,
        idx: torch.Tensor | Sequence[int] | np.ndarray | None = None, seed: int = 0,
        device: str | torch.device = "auto", checkpoint: str | Path | None = None, val: GroupDataset | None = None,
        val_robust: bool = False, show_progress: bool = True, **overrides) -> FitResult:
    """Train ``model`` in place on ``data`` (or its subset ``idx``) with ``recipe`` (module docstring).

    Args:
        model: classifier on [0, 1] inputs (``fralkit.models``); for ``"grad"`` a ``GRADModel``.
        data: the training set; moved to ``device`` once (keep it there between calls).
        recipe: the hyperparameters (default ``Recipe()``); ``overrides`` replace its fields (``epochs=3``) or set
            the objective's options (``hard_frac=0.1``).
        idx: indices (or a bool mask) of the examples to train on; default all.
        seed: fixes batch order, augmentation and attack noise (the default sampler seeds each epoch from
            ``(seed, epoch)``, so a resumed run continues exactly).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; the model and data are moved there.
        checkpoint: a ``.pt`` file written atomically after every epoch (model, optimiser, history); if it
            exists and belongs to this run (``Recipe.key``, seed, number of examples), training resumes from it
            (a finished one returns at once); another run's is refused, naming the fields that differ.
        val: a held-out set whose clean accuracy is recorded every epoch (``val_acc``); ``val_robust`` adds the
            PGD accuracy under the recipe's threat model (``val_rob_acc``).
        show_progress: one tqdm bar over all batches (``fralkit.utils.progress``).

    On CUDA with ``cuda_graph`` (the default) a graphable objective trains with the whole step as one CUDA graph
    and the last batch of every epoch filled by sampling (module docstring); it trains eagerly, as on CPU, for
    FairAT and FARMUR (not graphable: FairAT's copies, FARMUR's variable parts) and with an optimiser other than SGD or fused Adam / AdamW (``FitResult.eager_reason`` says which).

    Returns:
        ``FitResult`` with per-epoch ``history`` and the wall time.
    """
    r = (recipe or Recipe()).replace(**overrides)
    options = r.check()
    if not isinstance(data, GroupDataset):
        raise ValueError(f"fit expects a fralkit.data.GroupDataset, got {type(data).__name__}")
    run = _prepare(model, data, r, options, idx=idx, seed=seed, device=device, val=val)
    # Epochs are counted on the whole schedule: this call trains its epochs start_epoch .. end - 1.
    end = r.start_epoch + r.epochs
    history, start_epoch = _new_history(run.objective, run.val, val_robust), r.start_epoch
    key = {**r.key(options), "seed": int(seed), "n": run.n}
    if checkpoint is not None and Path(checkpoint).exists():
        history, start_epoch = _resume(Path(checkpoint), key, run, end)
    images, t0 = 0, time.perf_counter()
    bar = progress(total=(end - start_epoch) * run.sampler.steps_per_epoch, desc=f"fit {r.objective}",
                   leave=False, disable=None if show_progress else True)
    model.train()
    benchmark_before = torch.backends.cudnn.benchmark
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(r.cudnn_benchmark)
    graph_state: dict = {}
    try:
        step = start_epoch * run.sampler.steps_per_epoch
        for epoch in range(start_epoch, end):
            t_epoch = time.perf_counter()
            if run.graphed:
                stats, step = _graphed_epoch(run, r, epoch, step, bar, graph_state)
            else:
                stats, step = _epoch(run, r, epoch, step, bar)
            images += stats["seen"]
            _log_epoch(history, run, r, stats, val_robust)
            history["seconds"].append(time.perf_counter() - t_epoch)
            bar.set_postfix(epoch=epoch + 1, loss=f"{history['loss'][-1]:.3f}", acc=f"{history['acc'][-1]:.3f}",
                            refresh=False)
            if checkpoint is not None:
                _save_checkpoint(Path(checkpoint), run, epoch + 1, history, key)
    finally:
        bar.close()
        torch.backends.cudnn.benchmark = benchmark_before
        if "restore" in graph_state:
            graph_state["restore"]()
            # The gradients live in the graph's memory pool: drop them with the graph, not at the next gc pass.
            run.opt.zero_grad(set_to_none=True)
            graph_state.clear()
    sync(run.device)
    return FitResult(history=history, seconds=time.perf_counter() - t0, epochs=r.epochs, objective=r.objective,
                     images=images, graphed=run.graphed, eager_reason=run.eager_reason)
