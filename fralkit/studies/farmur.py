"""FARMUR (Mousavi et al., ADBIS 2023): fair adversarial retraining, and the paper's Table 1 study.

**Algorithm 1.** From an adversarially (TRADES) trained model ``f``: measure ``Rob(P)`` for every
sub-partition ``P`` of the training set (DeepFool distances, Defs. 1-2), call ``P`` vulnerable when
``Rob(P) < Rob(f)`` (Def. 5), split ``D = D^vul u D^rob`` and retrain for ``T`` epochs with

    L_FARMUR = L_TRADES(b^vul) + L_CE(b^rob)        (Eqs. 9-11)

with the adversarial training's hyperparameters. The loss is the ``farmur`` objective of ``fralkit.train``
(``farmur_loss``, with its pairing sampler ``fralkit.train.PairedSampler``); ``farmur_retrain`` runs its epochs
through ``fralkit.train.fit``.

*Pairing.* Algorithm 1 pairs a mini-batch of ``D^vul`` with one of ``D^rob`` but does not say how large
each is or what an epoch is. ``pairing="split"`` (default) draws one mini-batch of ``D`` (the adversarial
training's batch size) and splits it by sub-partition, so an epoch is one pass over ``D`` as in adversarial
training and the two halves keep their proportions; ``pairing="cycle"`` draws ``batch_size`` examples from
each subset, an epoch being one pass over the larger subset with the smaller one reshuffled and cycled.

**The study** (Table 1 and Fig. 2 of the paper): for each row (backbone, data set) of ``ROWS`` and seed,
three models are evaluated on the test split: *natural* (standard training), *trades* (TRADES for
``at_epochs``) and *farmur* (TRADES for ``at_epochs - farmur_epochs``, then ``farmur_epochs`` of the FARMUR
loss: the paper's 100 + 20 of 120). The TRADES and FARMUR models share the first phase, so they differ only in
the loss of the last ``farmur_epochs``. ``protocol="same_budget"`` (default, the paper's): the TRADES model is one
``at_epochs`` run with one learning-rate schedule, and FARMUR forks it at epoch ``at_epochs - farmur_epochs``
(same weights, SGD momentum and schedule position; the vulnerable / robust split measured there) and continues
the schedule with the FARMUR loss. ``protocol="restart"``: the first phase has a schedule of its own, and each
model continues with a fresh SGD optimiser and the schedule restarted at the peak lr. The paper gives lr 0.1 and no
schedule: ``schedule="constant"`` is the paper's reading, ``"cosine"`` converges better in short runs. Each evaluation runs DeepFool on the correctly classified test points and
stores accuracy, ``Rob(P)``, ``Rob(f)``, ``V_f(P)``, the vulnerable sub-partitions and the distances
themselves (so figures can be redrawn) as one ``ResultStore`` record per (row, method, seed); runs already
in the store are skipped.

**Data.** Built-in by default: an MNIST-like set of grey Synbols digits (``synbols-mnist``, 10 classes,
partitions = classes), ``synbols-cinic`` for CIFAR-10 (partitions = classes, its domains ignored) and
``synbols-farmur`` for UTKFace (label = 5 age-like bins, partition = 4 race-like groups of graded
contrast). With ``data_root`` the real MNIST, CIFAR-10 and UTKFace (``task="farmur"``) are read.

**The paper's numbers.** ``PAPER_TABLE1`` holds Table 1. Its text gives ratios that partly disagree with
its own table (FARMUR lowers V_f by "29.17 %" for AlexNet and "15.39 %" for CIFAR-10, while the table gives
1 - 0.034/0.070 = 51 % and 1 - 0.011/0.02 = 45 %); ``paper_ratios`` computes both sides from the tables.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..data import KNOBS, DataSplits, GroupDataset, load_dataset, stratified_split
from ..experiments import ResultStore, format_mean_std, paired_verdict, save_table, summarize
from ..models import make_model
from ..metrics.groups import measure_robustness, stratified_idx
from ..metrics.robustness import curves_from_record, vulnerable_split
from ..plots import farmur as plots_farmur
from ..plots.farmur import METHOD_TITLES, METHODS
from ..runtime import offset_seed, resolve_device, set_seed, sync
from ..train import PAIRINGS, SCHEDULES, Recipe, farmur_loss, fit
from ..train.optim import make_optimizer
from ..utils import atomic_torch_save, config_hash, in_papermill, load_checkpoint, progress
from .protocol import draw

__all__ = [
    "FarmurRow", "ROWS", "natural_sweep", "claims_table", "NATURAL_TOL", "METHODS", "PROTOCOLS", "PAPER_TABLE1", "PAPER_TEXT_RATIOS", "STUDY",
    "load_row_data", "parse_rows",
    "measure_robustness", "farmur_loss", "farmur_retrain",
    "run_farmur_row", "farmur_records", "grid", "keys", "run", "parts", "tables", "figures", "claims", "FIGURES",
    "curves_from_record", "table1", "paper_ratios", "describe_farmur",
]

STUDY = "farmur"
# How the TRADES and FARMUR models share their training (``run_farmur_row``'s ``protocol``).
PROTOCOLS = ("same_budget", "restart")


@dataclass(frozen=True)
class FarmurRow:
    """One row of the paper's Table 1: a backbone on a data set, and what partitions the data."""

    backbone: str
    synthetic: str  # built-in data set (no download)
    real: str  # real data set read from ``data_root``
    partition: str  # "class" (partitions = labels: MNIST, CIFAR-10) or "group" (UTKFace: race)
    model_title: str
    dataset_title: str
    ambiguity: float = 0.0  # built-in data only: share of ambiguous images (``GroupStyle.label_noise``), calibrated


# The built-in rows' ambiguity (``natural_sweep``, natural model of the ``gpu`` profile, seed 0; one H200, 2026-12-01):
# synbols-mnist LeNet-5 99.6 / 99.0 / 98.7 % and AlexNet 99.7 / 99.2 / 98.95 % at 0.004 / 0.008 / 0.012 (paper 99.08 /
# 99.30): 0.008; synbols-farmur 80.55 / 73.25 / 68.5 % at 0.25 / 0.32 / 0.40 (paper 66.70): 0.43 by the slope of the
# last two; synbols-cinic ResNet-18 95.2 % without (paper 93.77): 0.015, about 1.3 points by the label-share rule.
ROWS: dict[str, FarmurRow] = {
    "lenet5-mnist": FarmurRow("lenet5", "synbols-mnist", "mnist", "class", "LeNet-5", "MNIST", 0.008),
    "alexnet-mnist": FarmurRow("alexnet_small", "synbols-mnist", "mnist", "class", "AlexNet", "MNIST", 0.008),
    "resnet18-cifar10": FarmurRow("resnet18", "synbols-cinic", "cifar10", "class", "ResNet-18", "CIFAR-10", 0.015),
    "utkclassifier-utkface": FarmurRow("utkface_cnn", "synbols-farmur", "utkface", "group", "UTKClassifier", "UTKFace",
                                       0.43),
}

# Table 1 of the paper: (accuracy %, Rob(f), V_f(P)) per row and method.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "lenet5-mnist": {"natural": (99.08, 0.79, 0.014), "trades": (98.74, 1.26, 0.019), "farmur": (98.91, 1.24, 0.009)},
    "alexnet-mnist": {"natural": (99.30, 1.47, 0.048), "trades": (99.41, 1.96, 0.070), "farmur": (99.38, 1.95, 0.034)},
    "resnet18-cifar10": {"natural": (93.77, 0.18, 0.003), "trades": (93.58, 0.48, 0.02), "farmur": (90.98, 0.45, 0.011)},
    "utkclassifier-utkface": {"natural": (66.70, 0.33, 0.007), "trades": (65.60, 1.34, 0.073), "farmur": (65.66, 1.31, 0.059)},
}
# Ratios as stated in the paper's text (§6.2 and the abstract).
PAPER_TEXT_RATIOS: dict[str, dict[str, float]] = {
    "alexnet-mnist": {"at_factor": 1.46, "farmur_gain": 0.2917},
    "resnet18-cifar10": {"at_factor": 6.67, "farmur_gain": 0.1539},
    "utkclassifier-utkface": {"at_factor": 10.43, "farmur_gain": 0.1918, "rob_lost": 0.0222},
}


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

def _partition_by_class(ds: GroupDataset) -> GroupDataset:
    return GroupDataset(ds.x, ds.y, ds.y.clone(), list(ds.classes), list(ds.classes), ds.name,
                        {**ds.meta, "partition": "class"})


def _subsample(ds: GroupDataset, n: int | None, seed: int) -> GroupDataset:
    """A stratified (by partition) seeded subset of ``n`` examples (all when ``n`` is None, 0 or >= len)."""
    if not n or n >= len(ds):
        return ds
    keep, _ = stratified_split(ds.g.cpu(), [n / len(ds), 1 - n / len(ds)], seed)
    return ds.subset(keep)


def load_row_data(row: str, *, data_root=None, seed: int = 0, n: int | None = None, n_test: int | None = None,
                  size: int | None = None, ambiguity: float | None = None) -> DataSplits:
    """The train / val / test splits of a Table 1 row, with the row's partition as ``g``.

    Args:
        row: a key of ``ROWS``.
        data_root: folder of the real data set (MNIST, CIFAR-10, UTKFace); None = built-in data.
        seed: fixes generation and splits.
        n: training images (built-in: generated; real: a stratified subset; None = the default / all).
        n_test: test images (default n / 5 for built-in data; all for real data).
        size: image side (default: 28 for MNIST, 32 for CIFAR-10 and the built-in sets, 64 for UTKFace).
        ambiguity: built-in data only: the share of ambiguous images (None: the row's calibrated ``ambiguity``).
    """
    if row not in ROWS:
        raise ValueError(f"unknown FARMUR row {row!r}; valid: {sorted(ROWS)}")
    spec = ROWS[row]
    if data_root is not None:
        opts = {"size": int(size)} if size else {}
        if spec.real == "utkface":
            opts["task"] = "farmur"
        splits = load_dataset(spec.real, root=data_root, seed=seed, **opts)
        splits = DataSplits(_subsample(splits.train, n, seed), splits.val,
                            _subsample(splits.test, n_test, offset_seed(seed, 1)))
    else:
        opts = {k: v for k, v in (("n", n), ("n_test", n_test), ("size", size)) if v}
        amb = spec.ambiguity if ambiguity is None else float(ambiguity)
        if amb:
            opts.update(_ambiguity_options(spec.synthetic, amb))
        splits = load_dataset(spec.synthetic, seed=seed, **opts)
    if spec.partition == "class":
        splits = DataSplits(*(_partition_by_class(s) for s in splits))
    return splits


def _ambiguity_options(dataset: str, ambiguity: float) -> dict:
    """The loader options that give every image of built-in ``dataset`` the ambiguity ``ambiguity``."""
    if dataset == "synbols-mnist":
        return {"ambiguity": ambiguity}
    space = KNOBS.get(dataset, {})
    names = ["ambiguity"] if "ambiguity" in space else [k for k in ("easy_ambiguity", "hard_ambiguity") if k in space]
    if not names:
        raise ValueError(f"built-in data set {dataset!r} has no ambiguity knob")
    return {"knobs": {k: ambiguity for k in names}}


def parse_rows(rows: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """``"lenet5-mnist, resnet18-cifar10:small_cnn"`` -> ``[(row, backbone override or None), ...]``."""
    items = [s.strip() for s in rows.split(",")] if isinstance(rows, str) else [str(s).strip() for s in rows]
    out = []
    for item in filter(None, items):
        row, _, backbone = item.partition(":")
        if row not in ROWS:
            raise ValueError(f"unknown FARMUR row {row!r}; valid: {sorted(ROWS)} (optionally 'row:backbone')")
        out.append((row, backbone.strip() or None))
    if not out:
        raise ValueError(f"no FARMUR rows given; valid: {sorted(ROWS)}")
    return out


# ----------------------------------------------------------------------------------------------------------
# Measuring fairness in robustness
# ----------------------------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------------------------
# Algorithm 1
# ----------------------------------------------------------------------------------------------------------

def farmur_retrain(model: nn.Module, train: GroupDataset, *, vulnerable: Sequence[int], idx: torch.Tensor | None = None,
                   epochs: int = 20, batch_size: int = 64, lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 5e-4, schedule: str = "constant", eps: float = 0.031, alpha: float = 0.007,
                   steps: int = 10, beta: float = 6.0, pairing: str = "split", grad_clip: float | None = None,
                   seed: int = 0, device: str | torch.device = "auto", amp: bool = True,
                   start_epoch: int = 0, schedule_epochs: int | None = None, warmup_epochs: float = 0.0,
                   optimizer: torch.optim.Optimizer | None = None, show_progress: bool = False) -> dict:
    """Retrain an adversarially trained ``model`` with the FARMUR loss, Algorithm 1 (loop part) of the paper.

    The retraining is ``fralkit.train.fit`` with the ``farmur`` objective and the adversarial training's
    hyperparameters: SGD with momentum and weight decay, the learning rate from ``fralkit.train.lr_at(schedule)``
    over the ``epochs`` of this call (or, with ``start_epoch`` / ``schedule_epochs``, continuing the adversarial
    training's schedule from its epoch ``start_epoch``), bf16 autocast and channels_last on CUDA (fp32 on CPU); its sampler
    (``fralkit.train.PairedSampler``) skips a part of a mini-batch with a single example (batch norm cannot train
    on one example, as ``fit`` drops a last batch of one).

    Args:
        model: the adversarially trained classifier (modified in place).
        train: the training set ``D``; ``train.g`` is the partition.
        vulnerable: ids of the vulnerable sub-partitions (``fralkit.metrics.vulnerable_split`` of the training
            Rob(P) under ``model``); the others are robust.
        idx: the training examples to use (default: all).
        epochs: T, the retraining epochs (the paper: 20).
        batch_size, lr, momentum, weight_decay, schedule: the optimiser, as in the adversarial training (the
            paper: 64, 0.1; its schedule is not stated, so constant by default).
        eps, alpha, steps, beta: TRADES on the vulnerable part (the paper: 0.031, 0.007; steps and beta as TRADES).
        pairing: ``"split"`` or ``"cycle"`` (module docstring).
        grad_clip: clip the gradient's global L2 norm, as the adversarial training did (None or 0: no clipping).
        seed: fixes the batch order and the attacks' random starts.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        amp: bf16 autocast on CUDA, as ``fit``.
        start_epoch, schedule_epochs, warmup_epochs: this call as the last phase of a longer schedule
            (``fralkit.train.Recipe``): the same-budget protocol retrains the epochs ``E - T .. E`` of the
            adversarial training's ``E``-epoch schedule. Defaults: a schedule of its own over ``epochs``.
        optimizer: an existing optimiser over ``model``'s parameters (its momentum state is kept); None: a new SGD.

    Returns:
        ``{"loss": [...], "trades": [...], "natural": [...], "seconds": float}``, per-epoch means.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; valid: {list(PAIRINGS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size > 0, got {epochs}, {batch_size}")
    vul_ids = sorted({int(v) for v in vulnerable})
    if any(v < 0 or v >= train.num_groups for v in vul_ids):
        raise ValueError(f"vulnerable ids {vul_ids} out of range for {train.num_groups} sub-partitions")
    if not vul_ids or len(vul_ids) == train.num_groups:
        # Def. 5 leaves no vulnerable sub-partition only when every Rob(P) equals Rob(f): Algorithm 1 then
        # retrains with one of the two losses only. Said out loud rather than hidden.
        warnings.warn(f"FARMUR: vulnerable sub-partitions {vul_ids} of {train.num_groups}: the retraining uses "
                      f"{'only the natural loss' if not vul_ids else 'only the TRADES loss'}", stacklevel=2)
    # The vulnerable parts' sizes change from batch to batch: cuDNN's autotuner would re-tune for each of them.
    recipe = Recipe(objective="farmur", epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                    weight_decay=weight_decay, schedule=schedule, eps=eps, alpha=alpha, steps=steps, beta=beta,
                    grad_clip=grad_clip or None, amp=amp, cudnn_benchmark=False, start_epoch=start_epoch,
                    schedule_epochs=schedule_epochs, warmup_epochs=warmup_epochs,
                    optimizer="sgd" if optimizer is None else optimizer,
                    options={"vulnerable": tuple(vul_ids), "pairing": pairing})
    res = fit(model, train, recipe, idx=idx, seed=seed, device=device, show_progress=show_progress)
    h = res.history
    return {"loss": h["farmur_loss"], "trades": h["trades"], "natural": h["natural"], "seconds": res.seconds}


# ----------------------------------------------------------------------------------------------------------
# The study: natural vs TRADES vs FARMUR per Table 1 row
# ----------------------------------------------------------------------------------------------------------

def _fit(model, train, objective: str, epochs: int, hp: dict, seed: int, dev, warmup_epochs: float = 0.0, *,
         start_epoch: int = 0, schedule_epochs: int | None = None,
         optimizer: str | torch.optim.Optimizer = "sgd") -> float:
    """``fralkit.train.fit`` with the study's recipe (a phase of a longer schedule with ``start_epoch``,
    ``schedule_epochs`` and the previous phase's ``optimizer``); returns seconds."""
    recipe = Recipe(objective=objective, epochs=epochs, batch_size=hp["batch_size"], lr=hp["lr"],
                    momentum=hp["momentum"], weight_decay=hp["weight_decay"], schedule=hp["schedule"],
                    warmup_epochs=warmup_epochs, eps=hp["eps"], alpha=hp["alpha"], steps=hp["steps"],
                    beta=hp["beta"], grad_clip=hp["grad_clip"] or None, start_epoch=start_epoch,
                    schedule_epochs=schedule_epochs, optimizer=optimizer)
    sync(dev)
    t0 = time.time()
    if epochs > 0:
        fit(model, train, recipe, seed=seed, device=dev, show_progress=False)
    sync(dev)
    return time.time() - t0


def _sgd(model: nn.Module, hp: dict, dev) -> torch.optim.Optimizer:
    """The SGD that ``fit`` would make for the study's recipe, made here so that phases can share it."""
    return make_optimizer(model, "sgd", lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                          nesterov=False, device=dev)


def _make(backbone: str, train: GroupDataset, dev):

    return make_model(backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size).to(dev)


def _base_config(row, spec, backbone, dataset, seed, n, n_test, size, data_root, natural_epochs, at_epochs,
                 farmur_epochs, hp, warmup_epochs, pairing, eval_n, split_n, df_max_iter, df_overshoot, df_candidates,
                 df_clamp, protocol, ambiguity=0.0) -> dict:
    """The result-store config shared by a row's three records (each adds its ``method``)."""
    extra = {"ambiguity": float(ambiguity)} if ambiguity else {}  # keyed only when set: earlier records keep their keys
    return {**extra, "study": STUDY, "dataset": dataset, "row": row, "backbone": backbone, "partition": spec.partition,
            "seed": seed, "n": n, "n_test": n_test, "size": size, "real": data_root is not None,
            "natural_epochs": natural_epochs, "at_epochs": at_epochs, "farmur_epochs": farmur_epochs,
            "protocol": protocol, **hp,
            "warmup_epochs": warmup_epochs,
            "pairing": pairing, "eval_n": eval_n, "split_n": split_n, "df_max_iter": df_max_iter,
            "df_overshoot": df_overshoot, "df_candidates": df_candidates, "df_clamp": df_clamp}


def run_farmur_row(row: str, *, seed: int = 0, backbone: str | None = None, data_root=None, n: int | None = None,
                   n_test: int | None = None, size: int | None = None, natural_epochs: int = 120, at_epochs: int = 120,
                   farmur_epochs: int = 20, batch_size: int = 64, lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 5e-4, schedule: str = "constant", warmup_epochs: float = 0.0,
                   grad_clip: float = 0.0, eps: float = 0.031, alpha: float = 0.007, steps: int = 10,
                   beta: float = 6.0, pairing: str = "split", eval_n: int | None = None, split_n: int | None = None, df_max_iter: int = 50,
                   df_overshoot: float = 0.02, df_candidates: int | None = None, df_clamp: bool = False,
                   df_batch: int = 1024, protocol: str = "same_budget", methods: Sequence[str] = METHODS,
                   ambiguity: float | None = None, device: str | torch.device = "auto",
                   store: ResultStore | None = None, force: bool = False,
                   log: Callable[[str], None] | None = print, keys_only: bool = False) -> list[dict]:
    """Natural, TRADES and FARMUR models for one Table 1 row and seed; one result record per method.

    Defaults are the paper's protocol (§6.1): 120 epochs, batch 64, lr 0.1, eps 0.031, step 0.007, FARMUR =
    100 TRADES epochs + 20 FARMUR epochs; DeepFool with overshoot 0.02 and at most 50 iterations.

    Args:
        row: a key of ``ROWS``; ``backbone`` overrides its model (e.g. ``"small_cnn"`` for quick runs).
        warmup_epochs: linear lr warm-up of the natural model and of the first TRADES phase (the later
            phases continue a trained model); grad_clip: global gradient-norm clip of every phase (0: none).
            TRADES from scratch at eps 0.031 can otherwise diverge to a constant classifier.
        data_root: real data (``ROWS[row].real``); None = built-in data.
        n, n_test, size: data sizes (``load_row_data``).
        eval_n: test points measured with DeepFool (stratified subset; None = all).
        split_n: training points used to find the vulnerable sub-partitions (stratified; None = all).
        df_*: DeepFool options (``fralkit.attacks.deepfool``).
        protocol: a key of ``PROTOCOLS`` (module docstring). ``"same_budget"`` (the paper's): one ``at_epochs``
            TRADES run; FARMUR forks it at epoch ``at_epochs - farmur_epochs`` (weights, SGD momentum, schedule
            position; Algorithm 1's split measured there) and continues the schedule with the FARMUR loss.
            ``"restart"`` (the former runs): both arms' last ``farmur_epochs`` with a fresh SGD and the schedule
            restarted at the peak lr. Measured on CPU (small_cnn, synbols-cinic at 16 px, 2000 training / 200
            test images, at_epochs 20, farmur_epochs 3, lr 0.05 cosine, warm-up 1, clip 5, PGD-2, seed 0): restart,
            AT 52.0 % vs FARMUR 42.0 %; same_budget, AT 52.0 % vs FARMUR 48.5 %. The TRADES arm kept its accuracy
            through the restart, so the drop came from the FARMUR loss trained at the restarted peak lr with fresh
            momentum, not from the restart alone; continuing the schedule cut it from 10.0 to 3.5 points (one
            seed; 200 test images give a standard error of about 3.5 points). With ``schedule="constant"`` the
            two protocols differ only in the optimiser's momentum.
        methods: which of ``METHODS`` to run.
        ambiguity: built-in data only: the share of ambiguous images; None: the row's calibrated value
            (``FarmurRow.ambiguity``, chosen by ``natural_sweep`` so the natural model's accuracy is the paper's).
        store: where records go (default ``ResultStore()``); ``force`` re-runs done runs.
        log: one line per stage (None: silent). With a log, an interactive run also shows a bar over the
            stages of this row and seed (natural, TRADES phase 1, TRADES, Algorithm 1's split, FARMUR).
        keys_only: return the records' configs (their store keys) without computing anything.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; valid: {list(METHODS)}")
    if row not in ROWS:
        raise ValueError(f"unknown FARMUR row {row!r}; valid: {sorted(ROWS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {list(PROTOCOLS)}")
    if not 0 <= farmur_epochs <= at_epochs:
        raise ValueError(f"farmur_epochs must lie in 0..at_epochs ({at_epochs}), got {farmur_epochs}")
    say = log or (lambda _msg: None)
    store = store or ResultStore()
    # 0 means "the default / all" for the sizes (notebook parameters are flat literals)
    n, n_test, size, eval_n, split_n, df_candidates = (v or None for v in (n, n_test, size, eval_n, split_n, df_candidates))
    spec = ROWS[row]
    backbone = backbone or spec.backbone
    dataset = spec.real if data_root is not None else spec.synthetic
    ambiguity = 0.0 if data_root is not None else float(spec.ambiguity if ambiguity is None else ambiguity)
    hp = dict(batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule, eps=eps,
              alpha=alpha, steps=steps, beta=beta, grad_clip=grad_clip)
    base = _base_config(row, spec, backbone, dataset, seed, n, n_test, size, data_root, natural_epochs, at_epochs,
                        farmur_epochs, hp, warmup_epochs, pairing, eval_n, split_n, df_max_iter, df_overshoot,
                        df_candidates, df_clamp, protocol, ambiguity)
    configs = {m: {**base, "method": m} for m in methods}
    if keys_only:  # the record keys of this row, nothing computed (``keys``)
        return [configs[m] for m in methods]
    todo = [m for m in methods if force or not store.has(configs[m])]
    if not todo:
        say(f"[farmur] {row} seed {seed}: all {len(methods)} methods already in {store.root}")
        return [store.load(configs[m]) for m in methods]

    dev = resolve_device(device)
    splits = load_row_data(row, data_root=data_root, seed=seed, n=n, n_test=n_test, size=size, ambiguity=ambiguity)
    train, test = splits.train.to(dev), splits.test.to(dev)
    eval_idx = stratified_idx(test, eval_n, offset_seed(seed, 11))
    df_kw = dict(overshoot=df_overshoot, max_iter=df_max_iter, candidates=df_candidates, clamp=df_clamp, batch_size=df_batch)
    say(f"[farmur] {row} seed {seed}: {backbone} on {dataset} (train {len(train)}, test {len(test)}, "
        f"{train.num_groups} partitions by {spec.partition}); running {todo} on {dev}")

    def evaluate_and_save(method: str, model, timings: dict, extra_metrics: dict | None = None) -> None:
        metrics, dist = measure_robustness(model, test, idx=eval_idx, **df_kw)
        timings["deepfool_s"] = metrics["deepfool_s"]
        metrics.update(extra_metrics or {})
        store.save(configs[method], metrics, timings=timings, device=dev, distances=dist,
                   groups=list(test.groups), classes=list(test.classes), model_title=spec.model_title,
                   dataset_title=spec.dataset_title)
        say(f"[farmur]   {method:8s} acc {100 * metrics['accuracy']:.1f} %  Rob(f) {metrics['rob_f']:.4f}  "
            f"V_f {metrics['v_f']:.3g}  vulnerable {[test.groups[v] for v in metrics['vulnerable']]}  "
            f"(DeepFool {metrics['deepfool_s']:.1f} s, {metrics['n_unflipped']} unflipped)")

    n_stages = ("natural" in todo) + bool({"trades", "farmur"} & set(todo)) + ("trades" in todo) \
        + 2 * ("farmur" in todo)
    # A second text bar below the study's would write cursor moves into a batch-run notebook; there the log's
    # lines are the stages' progress.
    with progress(total=n_stages, desc=f"{row} seed {seed}", leave=False,
                  disable=True if log is None or in_papermill() else None) as bar:
        if "natural" in todo:
            bar.set_postfix_str("natural")
            set_seed(seed)
            model = _make(backbone, train, dev)
            fit_s = _fit(model, train, "standard", natural_epochs, hp, seed, dev, warmup_epochs)
            evaluate_and_save("natural", model, {"fit_s": fit_s})
            del model
            bar.update()

        if "trades" in todo or "farmur" in todo:
            bar.set_postfix_str("TRADES phase 1")
            pre_epochs = at_epochs - farmur_epochs
            same = protocol == "same_budget"
            ckpt = store.root / STUDY / "checkpoints" / f"{row}-{backbone}-s{seed}-{config_hash({**base, 'phase': 'pre'})}.pt"
            set_seed(seed)
            pre = _make(backbone, train, dev)
            # same_budget: phase 1 is the first E - T epochs of the one E-epoch schedule, and its optimiser (with
            # its momentum) is what both arms continue; restart: a schedule of its own, a new SGD per arm.
            opt = _sgd(pre, hp, dev) if same else None
            phase = dict(schedule_epochs=at_epochs, optimizer=opt) if same else {}
            if ckpt.exists() and not force:
                saved = load_checkpoint(ckpt, map_location=dev)
                if same:
                    pre.load_state_dict(saved["model"])
                    opt.load_state_dict(saved["optimizer"])
                else:
                    pre.load_state_dict(saved)
                pre_s = 0.0
                say(f"[farmur]   TRADES phase 1 ({pre_epochs} epochs) loaded from {ckpt.name}")
            else:
                pre_s = _fit(pre, train, "trades", pre_epochs, hp, seed, dev, warmup_epochs, **phase)
                atomic_torch_save({"model": pre.state_dict(), "optimizer": opt.state_dict()} if same
                                  else pre.state_dict(), ckpt)
            state = {k: v.detach().clone() for k, v in pre.state_dict().items()}
            opt_state = copy.deepcopy(opt.state_dict()) if same else None
            bar.update()

            if "trades" in todo:
                bar.set_postfix_str("TRADES")
                if same:  # the rest of the one E-epoch run: same seed, schedule position and optimiser
                    fit_s = _fit(pre, train, "trades", farmur_epochs, hp, seed, dev, warmup_epochs,
                                 start_epoch=pre_epochs, **phase)
                else:
                    fit_s = _fit(pre, train, "trades", farmur_epochs, hp, offset_seed(seed, 1), dev)
                evaluate_and_save("trades", pre, {"fit_s": pre_s + fit_s, "phase1_s": pre_s})
                bar.update()
            if "farmur" in todo:
                bar.set_postfix_str("Algorithm 1")
                pre.load_state_dict(state)
                if same:
                    opt.load_state_dict(opt_state)
                split_idx = stratified_idx(train, split_n, offset_seed(seed, 12))
                split_metrics, _ = measure_robustness(pre, train, idx=split_idx, **df_kw)
                vul, _rob = vulnerable_split(split_metrics["rob_p"])
                say(f"[farmur]   Algorithm 1 on {len(split_idx)} training points: Rob(P) "
                    f"{[round(r, 4) for r in split_metrics['rob_p']]} -> vulnerable {[train.groups[v] for v in vul]}")
                bar.update()
                bar.set_postfix_str("FARMUR")
                fork = dict(start_epoch=pre_epochs, warmup_epochs=warmup_epochs, **phase) if same else {}
                hist = farmur_retrain(pre, train, vulnerable=vul.tolist(), epochs=farmur_epochs, pairing=pairing,
                                      seed=offset_seed(seed, 1), device=dev, **fork, **hp)
                extra = {"split_rob_p": split_metrics["rob_p"], "split_rob_f": split_metrics["rob_f"],
                         "split_vulnerable": vul.tolist(), "split_n": len(split_idx), "farmur_loss": hist["loss"]}
                evaluate_and_save("farmur", pre, {"fit_s": pre_s + hist["seconds"], "phase1_s": pre_s,
                                                  "split_deepfool_s": split_metrics["deepfool_s"]}, extra)
                bar.update()
            del pre
    return [store.load(configs[m]) for m in methods]


def natural_sweep(row: str, values: Sequence[float], *, seeds: int | Sequence[int] = 1, store: ResultStore | None = None,
                  device: str | torch.device = "auto", log: Callable[[str], None] | None = None, **settings) -> dict:
    """Calibrate a built-in row's ``ambiguity`` to the paper's Natural accuracy (Table 1): the natural model of
    ``run_farmur_row`` (``methods=("natural",)``, the other ``settings`` as the study's) at each value and seed.

    Returns ``{"row", "target", "values": [{"ambiguity", "accuracy" (mean %), "std", "seeds"}], "best"}``, best =
    the value whose mean accuracy lies nearest the paper's. Each measurement is the study's own natural record
    (keyed by its ambiguity), so the chosen value's records are reused by the run that follows.
    """
    if row not in ROWS:
        raise ValueError(f"unknown FARMUR row {row!r}; valid: {sorted(ROWS)}")
    if not values:
        raise ValueError("natural_sweep needs at least one ambiguity value")
    target = PAPER_TABLE1[row]["natural"][0]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    out = []
    for v in values:
        accs = [100 * run_farmur_row(row, seed=s, ambiguity=float(v), methods=("natural",), store=store, device=device,
                                     log=log, **settings)[0]["metrics"]["accuracy"] for s in seed_list]
        out.append({"ambiguity": float(v), "accuracy": float(np.mean(accs)),
                    "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "seeds": seed_list})
    best = min(out, key=lambda r: abs(r["accuracy"] - target))
    return {"row": row, "target": target, "values": out, "best": best}


def farmur_records(store: ResultStore | None = None, **match) -> list[dict]:
    """The study's records in ``store`` (default ``ResultStore()``), filtered by config fields."""
    return (store or ResultStore()).records(STUDY, **match)


# ----------------------------------------------------------------------------------------------------------
# Results: curves, Table 1, ratios, claims
# ----------------------------------------------------------------------------------------------------------

def _row_label(rec: dict) -> str:
    c = rec["config"]
    spec = ROWS.get(c["row"])
    model = spec.model_title if spec and c["backbone"] == spec.backbone else c["backbone"]
    return f"{model} / {c['dataset']}"


def _summary(records: list[dict]):
    import pandas as pd


    rows = []
    for rec in records:
        c, m = rec["config"], rec["metrics"]
        rows.append({"row": c["row"], "label": _row_label(rec), "method": c["method"], "seed": c["seed"],
                     "accuracy": 100 * m["accuracy"], "rob_f": m["rob_f"], "v_f": m["v_f"]})
    if not rows:
        raise ValueError("no FARMUR records to summarise")
    df = pd.DataFrame(rows)
    return summarize(df, by=["row", "label", "method"], metrics=["accuracy", "rob_f", "v_f"])


def table1(records: list[dict], *, with_paper: bool = False):
    """The paper's Table 1 layout from result records: accuracy (%), Rob(f), V_f(P) for Natural / Adversarial /
    FARMUR, ``mean ± std`` over seeds; ``with_paper`` adds the paper's values below each row."""
    import pandas as pd


    summ = _summary(records)
    parts = {"Accuracy (%)": format_mean_std(summ, ["accuracy"], digits=2),
             "Rob(f)": format_mean_std(summ, ["rob_f"], digits=3),
             "V_f(P)": format_mean_std(summ, ["v_f"], digits=4)}
    out_rows = []
    for (row, label) in dict.fromkeys((r, l) for r, l, _ in summ.index):
        line = {"Model (f) / data": label, "n seeds": str(int(summ.loc[(row, label)]["n"].max()))}
        for title, frame in parts.items():
            col = frame.columns[0]
            for m in METHODS:
                key = (row, label, m)
                line[f"{title} {METHOD_TITLES[m]}"] = frame.loc[key, col] if key in frame.index else "-"
        out_rows.append(line)
        if with_paper and row in PAPER_TABLE1:
            paper = {"Model (f) / data": f"  paper: {ROWS[row].model_title} / {ROWS[row].dataset_title}", "n seeds": ""}
            for j, title in enumerate(parts):
                digits = (2, 2, 3)[j]
                for m in METHODS:
                    paper[f"{title} {METHOD_TITLES[m]}"] = f"{PAPER_TABLE1[row][m][j]:.{digits}f}"
            out_rows.append(paper)
    return pd.DataFrame(out_rows).set_index("Model (f) / data")


def _ratios(acc_rob_v: dict) -> dict:
    nat, at, fm = (acc_rob_v.get(m) for m in METHODS)
    out = {}
    if nat and at:
        out["at_factor"] = at[2] / nat[2] if nat[2] > 0 else float("inf")
        out["at_rob_gain"] = at[1] / nat[1] if nat[1] > 0 else float("inf")
    if at and fm:
        out["farmur_gain"] = 1 - fm[2] / at[2] if at[2] > 0 else float("nan")
        out["rob_lost"] = 1 - fm[1] / at[1] if at[1] > 0 else float("nan")
        out["acc_change"] = fm[0] - at[0]
    return out


def paper_ratios(records: list[dict]):
    """The paper's ratios, this run vs the paper (§6.2): how much AT multiplies V_f (V_f(AT) / V_f(natural)),
    how much FARMUR lowers it (1 - V_f(FARMUR) / V_f(AT)), the robustness it costs
    (1 - Rob_f(FARMUR) / Rob_f(AT)), and how much AT raises Rob(f). Means over seeds."""
    import pandas as pd

    summ = _summary(records)
    rows, notes = [], []
    for (row, label) in dict.fromkeys((r, l) for r, l, _ in summ.index):
        ours = {m: tuple(summ.loc[(row, label, m)][f"{k}_mean"] for k in ("accuracy", "rob_f", "v_f"))
                for m in METHODS if (row, label, m) in summ.index}
        r_ours = _ratios(ours)
        r_paper = _ratios(PAPER_TABLE1.get(row, {}))
        text = PAPER_TEXT_RATIOS.get(row, {})
        rows.append({
            "Model (f) / data": label,
            "AT × V_f (run)": r_ours.get("at_factor"), "AT × V_f (paper table)": r_paper.get("at_factor"),
            "AT × V_f (paper text)": text.get("at_factor"),
            "FARMUR V_f cut vs AT % (run)": _pct(r_ours.get("farmur_gain")),
            "FARMUR V_f cut % (paper table)": _pct(r_paper.get("farmur_gain")),
            "FARMUR V_f cut % (paper text)": _pct(text.get("farmur_gain")),
            "Rob(f) lost vs AT % (run)": _pct(r_ours.get("rob_lost")),
            "Rob(f) lost % (paper table)": _pct(r_paper.get("rob_lost")),
            "AT × Rob(f) (run)": r_ours.get("at_rob_gain"), "AT × Rob(f) (paper)": r_paper.get("at_rob_gain"),
        })
        notes.append(_ratio_note(ours))
    table = pd.DataFrame(rows).set_index("Model (f) / data").astype(float).round(3)
    table["note"] = notes
    return table


def _ratio_note(ours: dict) -> str:
    """Which of the run's ratios divide by a value near zero: a model that classifies almost nothing correctly, or
    whose sub-partitions are equally robust, has V_f (or Rob(f)) near 0 on small runs (the smoke profile), and a
    ratio over it is meaningless there."""
    v = {m: ours[m][2] for m in METHODS if m in ours}
    rob = {m: ours[m][1] for m in METHODS if m in ours}
    scale_v, scale_rob = max(v.values(), default=0.0), max(rob.values(), default=0.0)
    tiny = [f"V_f({m}) = {v[m]:.2g}" for m in ("natural", "trades") if m in v and v[m] <= 1e-3 * scale_v]
    tiny += [f"Rob(f)(trades) = {rob['trades']:.2g}"] if "trades" in rob and rob["trades"] <= 1e-3 * scale_rob else []
    return ("near zero at this size: " + ", ".join(tiny) + "; the run's ratios over it are meaningless") if tiny else ""


def _pct(v):
    return None if v is None else 100 * v


def describe_farmur(records: list[dict]) -> str:
    """'What the paper claims / what this run shows', sentence by sentence, from the records."""
    summ = _summary(records)
    lines = ["Paper (Table 1, §6.2): (1) adversarial training raises Rob(f) but also V_f(P) (x1.46 to x10.43); "
             "(2) FARMUR lowers V_f(P) relative to adversarial training (by 19-51 % in Table 1); "
             "(3) at a small cost in robustness (Rob(f) within ~6 %, 2.2 % on UTKFace).", ""]
    checks = {"at_raises_v": 0, "farmur_lowers_v": 0, "rows": 0}
    for (row, label) in dict.fromkeys((r, l) for r, l, _ in summ.index):
        ours = {m: tuple(summ.loc[(row, label, m)][f"{k}_mean"] for k in ("accuracy", "rob_f", "v_f"))
                for m in METHODS if (row, label, m) in summ.index}
        n = int(summ.loc[(row, label)]["n"].max())
        r = _ratios(ours)
        parts = [f"{label} ({n} seed{'s' if n > 1 else ''}):"]
        if "at_factor" in r:
            nat, at = ours["natural"], ours["trades"]
            raised = at[2] > nat[2]
            checks["at_raises_v"] += raised
            parts.append(f"AT changes Rob(f) {nat[1]:.3f} -> {at[1]:.3f} and V_f {nat[2]:.3g} -> {at[2]:.3g} "
                         f"(x{r['at_factor']:.2f}: {'raised, as the paper reports' if raised else 'NOT raised, unlike the paper'});")
        if "farmur_gain" in r:
            at, fm = ours["trades"], ours["farmur"]
            lowered = fm[2] < at[2]
            checks["farmur_lowers_v"] += lowered
            parts.append(f"FARMUR vs AT: V_f {at[2]:.3g} -> {fm[2]:.3g} ({100 * r['farmur_gain']:+.1f} % cut: "
                         f"{'lowered, as claimed' if lowered else 'NOT lowered, unlike the claim'}), Rob(f) "
                         f"{at[1]:.3f} -> {fm[1]:.3f} ({100 * r['rob_lost']:.1f} % lost), accuracy "
                         f"{at[0]:.1f} -> {fm[0]:.1f} %.")
        classes = len(next(rec for rec in records if _row_label(rec) == label).get("classes") or []) or 2
        weak = [METHOD_TITLES[m] for m, v in ours.items() if v[0] < 150.0 / classes]
        if weak:
            parts.append(f"Caveat: accuracy of {', '.join(weak)} is below 1.5x chance ({100 / classes:.0f} %): "
                         "not trained enough for its V_f to mean much (more epochs or data).")
        checks["rows"] += 1
        lines.append(" ".join(parts))
    lines += ["", f"Summary: AT raised V_f in {checks['at_raises_v']} of {checks['rows']} rows; FARMUR lowered it "
                  f"(vs AT) in {checks['farmur_lowers_v']} of {checks['rows']} rows."]
    unflipped = sum(int(rec["metrics"].get("n_unflipped", 0)) for rec in records)
    if unflipped:
        lines.append(f"Note: {unflipped} correctly classified test point(s) over all runs never changed label within "
                     f"{records[0]['config'].get('df_max_iter', 50)} DeepFool steps; their last-iterate distance is "
                     "used (counted as n_unflipped in the records).")
    beyond = sum(int(rec["metrics"].get("n_beyond_box", 0)) for rec in records)
    if beyond:
        lines.append(f"Note: {beyond} distance(s) exceed the diameter of the image box [0, 1]^D (DeepFool left the "
                     "pixel range on a nearly flat model); they weigh heavily in Rob(P). df_clamp=True measures "
                     "inside [0, 1] instead.")
    tiny = [rec for rec in records if rec["metrics"].get("n_eval", 0) < 500]
    if tiny:
        lines.append("Caveat: some rows were measured on fewer than 500 test points (a smoke/quick profile); "
                     "V_f differences of this size are within noise there.")
    return "\n".join(lines)


# The paper's natural accuracy tolerances for the built-in rows (FARMUR issue: +-0.5 on MNIST-like rows, else +-2).
NATURAL_TOL = {"lenet5-mnist": 0.5, "alexnet-mnist": 0.5, "resnet18-cifar10": 2.0, "utkclassifier-utkface": 2.0}


def claims_table(records: Sequence[dict]):
    """The paper's claims beside this run's, one row per (claim, Table 1 row), with a verdict on paired seeds
    (``fralkit.experiments.paired_verdict``: two seed standard deviations): the natural model's accuracy is the
    paper's (the calibration); adversarial training raises V_f(P) (x1.46 / x6.67 / x10.43 in the text); FARMUR lowers
    V_f(P) against it (29 / 15 / 19 %) at a small loss of Rob(f) (about 2 %) and of accuracy (within 3 points here)."""
    import pandas as pd

    by: dict = {}
    for rec in records:
        c = rec["config"]
        by.setdefault((c["row"], _row_label(rec)), {}).setdefault(c["method"], {})[c["seed"]] = rec["metrics"]
    out = []
    for (row, label), meth in by.items():
        paper = PAPER_TABLE1.get(row, {})
        seeds = sorted(set.intersection(*(set(v) for v in meth.values()))) if meth else []
        if not seeds or not paper:
            continue
        get = lambda m, k: np.array([meth[m][s][k] for s in seeds], float)  # noqa: E731
        n = len(seeds)
        if "natural" in meth:
            acc = 100 * get("natural", "accuracy")
            tol = NATURAL_TOL.get(row, 2.0)
            out.append({"claim": "natural accuracy is the paper's (calibration)", "row": label, "n seeds": n,
                        "paper": f"{paper['natural'][0]:.2f} %", "ours": f"{acc.mean():.2f} +- {_sd(acc):.2f} %",
                        "verdict": "agrees" if abs(acc.mean() - paper["natural"][0]) <= tol else "disagrees",
                        "test": f"|mean - paper| <= {tol:g} points"})
        if {"natural", "trades"} <= set(meth):
            nat, at = get("natural", "v_f"), get("trades", "v_f")
            text = PAPER_TEXT_RATIOS.get(row, {}).get("at_factor", paper["trades"][2] / paper["natural"][2])
            out.append({"claim": "AT raises V_f(P)", "row": label, "n seeds": n, "paper": f"x{text:.2f}",
                        "ours": f"x{at.mean() / nat.mean():.2f} ({nat.mean():.3g} -> {at.mean():.3g})",
                        "verdict": paired_verdict(at - nat, +1), "test": "V_f(AT) - V_f(natural) per seed"})
        if {"trades", "farmur"} <= set(meth):
            at, fm = get("trades", "v_f"), get("farmur", "v_f")
            gain = PAPER_TEXT_RATIOS.get(row, {}).get("farmur_gain", 1 - paper["farmur"][2] / paper["trades"][2])
            out.append({"claim": "FARMUR lowers V_f(P) against AT", "row": label, "n seeds": n,
                        "paper": f"-{100 * gain:.1f} %", "ours": f"{100 * (fm.mean() / at.mean() - 1):+.1f} % "
                                                              f"({at.mean():.3g} -> {fm.mean():.3g})",
                        "verdict": paired_verdict(fm - at, -1), "test": "V_f(FARMUR) - V_f(AT) per seed"})
            ra, rf = get("trades", "rob_f"), get("farmur", "rob_f")
            lost_paper = 100 * (1 - paper["farmur"][1] / paper["trades"][1])
            lost = 100 * (1 - rf / ra)
            out.append({"claim": "at a small loss of Rob(f)", "row": label, "n seeds": n,
                        "paper": f"{lost_paper:.1f} % lost", "ours": f"{lost.mean():.1f} +- {_sd(lost):.1f} % lost",
                        "verdict": paired_verdict(lost - lost_paper, -1) if lost.mean() > lost_paper else "agrees",
                        "test": "loss no larger than the paper's, or within two seed std of it"})
            aa, af = 100 * get("trades", "accuracy"), 100 * get("farmur", "accuracy")
            out.append({"claim": "FARMUR's accuracy within 3 points of AT's", "row": label, "n seeds": n,
                        "paper": f"{paper['farmur'][0] - paper['trades'][0]:+.2f} points",
                        "ours": f"{(af - aa).mean():+.2f} +- {_sd(af - aa):.2f} points",
                        "verdict": "agrees" if abs((af - aa).mean()) <= 3 else "disagrees",
                        "test": "|mean(FARMUR - AT)| <= 3 points"})
    cols = ["claim", "row", "n seeds", "paper", "ours", "verdict", "test"]
    return pd.DataFrame(out, columns=cols)


def _sd(v) -> float:
    v = np.asarray(v, float)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


# ----------------------------------------------------------------------------------------------- the study protocol
NOTEBOOK = "04"
_NOTEBOOK_ONLY = ("profile", "device", "rows", "seeds", "run")


def grid(*, rows: str | Sequence[str] = "lenet5-mnist", seeds: int | Sequence[int] = 1, **params) -> list[dict]:
    """Notebook 04's runs: one config per Table 1 row (``"row[:backbone]"``) and seed; each gives three records
    (natural, TRADES, FARMUR). The other ``params`` are ``run_farmur_row``'s keyword arguments."""
    settings = {k: v for k, v in params.items() if k not in _NOTEBOOK_ONLY}
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    configs = [{"row": row, "seed": s, "backbone": backbone, **settings}
               for row, backbone in parse_rows(rows) for s in seed_list]
    for cfg in configs[:1]:
        run_farmur_row(**cfg, keys_only=True)  # unknown settings fail here, before any work
    return configs


def keys(config: dict) -> list[dict]:
    return run_farmur_row(**config, keys_only=True)


def run(config: dict, *, store: ResultStore, device, cache: dict) -> list[dict]:
    """The three models of one row and seed (``run_farmur_row``; methods already stored are loaded)."""
    return run_farmur_row(**config, store=store, device=device)


def parts(configs: Sequence[dict]) -> list[list[dict]]:
    """One part per (row, seed)."""
    return [[c] for c in configs]


# The notebook parameters one part of ``reproduce --jobs`` overrides: one part per (row, seed).
PART_PARAMETERS = ("rows", "seeds")


def part_parameters(params: dict) -> list[dict]:
    """The override dicts of the notebook's parts: one per Table 1 row (``"row[:backbone]"`` as given) and seed."""
    items = [s.strip() for s in params["rows"].split(",")] if isinstance(params["rows"], str) else list(params["rows"])
    seeds = params.get("seeds", 1)
    seed_ids = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    parse_rows(items)  # unknown rows fail here, before any part starts
    return [{"rows": item, "seeds": [s]} for item in filter(None, items) for s in seed_ids]


def tables(records: Sequence[dict], *, save: bool = True) -> dict:
    """Table 1 beside the paper's (``table1``) and the paper's ratios (``ratios``), saved as ``04_*``."""
    out = {"table1": table1(records, with_paper=True), "ratios": paper_ratios(records), "claims": claims_table(records)}
    if save:
        for name, table in out.items():
            save_table(table, f"{NOTEBOOK}_{name}", index=name != "claims")
    return out


FIGURES = {"rob_p": lambda records: [("rob_p", plots_farmur.plot_rob_p(labelled(records)))],
           "fig2_i_p": lambda records: [("fig2_i_p", plots_farmur.plot_i_p_grid(labelled(records)))]}


def labelled(records: Sequence[dict]) -> list[dict]:
    """The records with their Table 1 row label (``"LeNet-5 / synbols-mnist"``) as ``row_label``, for the plots."""
    return [{**r, "row_label": _row_label(r)} for r in records]


def figures(records: Sequence[dict], *names: str) -> list:
    """Draw and save ``04_<name>`` for each of ``names`` (default all of ``FIGURES``)."""
    return draw(NOTEBOOK, FIGURES, records, names)


def claims(records: Sequence[dict]) -> str:
    return describe_farmur(records)


def explorer(records: Sequence[dict]):
    """The tau slider (notebook 04's interactive corner)."""
    return plots_farmur.tau_explorer(labelled(records))
