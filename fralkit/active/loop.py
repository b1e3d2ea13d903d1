"""One resumable active loop for both studies, and the FRAL run on it (Algorithm 1 of the JIN paper).

``run_active_loop`` is the loop: round 0 trains and evaluates on the initial labels (or comes from the caller),
then every round k = 1..K selects ``budgets[k - 1]`` pool samples, adds them to the labelled set, trains and
evaluates, and returns one plain record (dict) per round. Its ``policy`` says what the model starts each round's
training from: ``"finetune"`` keeps the model of the previous round (FRAL: M_R is adversarially fine-tuned on the
growing D_L), ``"reset"`` loads the same starting weights before every training (BALD+GRAD (Branchaud-Charron et
al.), §4). Every budget is checked against the pool that round will have before any work (``check_budgets``).
The study supplies three functions (select, train, evaluate) and, to make the loop resumable, a hook that saves
the state after each round. ``fralkit.studies.bald_grad.run_method`` runs the BALD+GRAD paper's loop on it;
``run_fral`` runs FRAL's:

1. Init: a robust model M_R by TRADES on D_L (``init_frac`` = 20 % of D, §4.1). It depends only on
   (dataset, backbone, seed, D_L, training settings), so it is trained once, cached in the result folder and
   shared by every strategy; its training time is Table 4's "Init. AT" and its test metrics the "Init. AT" row.
2. For k = 1..K (``rounds``, 5): z* = the validation group with the lowest mean of clean and robust accuracy
   (macro-F1 for HAM-like data) (line 5); the strategy picks B = ``budget_frac`` |D| pool samples (lines 6-8);
   their labels join D_L (lines 9-11); M_R is adversarially fine-tuned with TRADES on the new D_L (line 12);
   validation (for the next z*) and test metrics are logged.
3. After every round the state (labelled indices, round, M_R and optimizer state, JIN's M_S, metrics) is saved
   atomically (``fralkit.utils.atomic_torch_save``; loaded with ``weights_only=True``). A run killed at any
   point restarts from the last finished round; every random choice is re-seeded from (seed, round, stage),
   so on CPU the resumed run ends with exactly the indices and metrics of an uninterrupted one.
4. The finished run is one ``ResultStore`` record (study ``"jin"``), keyed by its config; a done run is
   loaded, not repeated.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import CALIBRATED, DataSplits, GroupDataset, dataset_facts, dataset_root, fral_split, load_dataset
from ..experiments import ResultStore
from ..metrics import group_report, measure_robustness, stratified_idx
from ..models import make_model
from ..runtime import release_cached_memory, resolve_device, set_seed, stage_seed, sync
from ..train import Recipe, fit
from ..utils import atomic_torch_save, config_hash, load_checkpoint
from .strategies import STRATEGIES, SelectionContext, StrategyOptions, select

__all__ = ["POLICIES", "run_active_loop", "initial_state", "check_budgets", "FRALConfig", "run_fral", "initial_model",
           "evaluate_groups", "load_fral_data", "fral_budget", "weights_fingerprint", "STUDY", "FRALInterrupted"]

STUDY = "jin"

# Options of one strategy only: they enter that strategy's record key, not the others'.
_STRATEGY_OPTIONS = {
    "jin": ("std_epochs", "std_finetune_epochs", "std_lr", "jin_attack_loss"),
    "jin-p": ("std_epochs", "std_finetune_epochs", "std_lr"),
    "jin-r": ("jin_attack_loss",),
    "minmax": ("minmax_p",),
    "opt": ("opt_c",),
    "fairal": ("fairal_candidates", "fairal_labels", "fairal_steps", "fairal_lr", "fairal_batch", "fairal_val",
               "fairal_reattack", "fairal_a"),
    "bald": ("bald_samples", "bald_dropout"),
}
_ALL_STRATEGY_OPTIONS = sorted({o for opts in _STRATEGY_OPTIONS.values() for o in opts})
# Settings that change nothing in the results.
_NOT_IN_KEY = ("eval_batch_size", "amp_scores", "cudnn_benchmark", "compile")
FINETUNE_OBJECTIVES = ("trades", "fairat")


# ----------------------------------------------------------------------------------------------- the active loop
POLICIES = ("finetune", "reset")


def check_budgets(budgets: Sequence[int], pool_size: int, *, first_round: int = 1) -> None:
    """Every round's budget B against the pool that round will have (the pool shrinks by each earlier budget).

    Raises:
        ValueError: a budget that is not a positive integer, or larger than its round's pool (the message names
            the round and the pool size), so a run fails before it trains anything.
    """
    left = int(pool_size)
    for k, b in enumerate(budgets, start=first_round):
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"budget of round {k} must be a positive integer number of samples, got {b!r}")
        if b > left:
            raise ValueError(f"budget B={int(b)} of round {k} is larger than that round's pool: {left} unlabelled "
                             f"samples ({int(pool_size)} before round {first_round})")
        left -= int(b)


def initial_state(labelled: torch.Tensor, pool: torch.Tensor, first_record: dict | None = None, **extra) -> dict:
    """The state ``run_active_loop`` starts from: round 0 with D_L = ``labelled`` and D_U = ``pool``.

    ``first_record`` is round 0's record when the caller made it (FRAL's shared initial model); without it the
    loop trains and evaluates round 0 itself. ``extra`` entries travel with the state (what a study saves with it).
    """
    records = [] if first_record is None else [{"round": 0, "labelled_n": len(labelled), **first_record}]
    return {"round": 0, "labelled": labelled, "pool": pool, "records": records, **extra}


def run_active_loop(model: nn.Module, state: dict, *, policy: str, budgets: Sequence[int],
                    select: Callable[[int, dict], torch.Tensor | tuple[torch.Tensor, dict]],
                    train: Callable[[int, dict], dict | None], evaluate: Callable[[int, dict], dict],
                    start: dict | None = None, on_round: Callable[[dict], None] | None = None) -> list[dict]:
    """Run (or resume) an active loop: JIN Algorithm 1 with ``policy="finetune"``, BALD+GRAD §4 with ``"reset"``.

    Round 0 (when ``state`` lacks it): train on the initial labels, evaluate. Round k = 1..len(budgets):
    ``select(k, state)`` picks ``budgets[k - 1]`` pool indices (with the model of round k - 1); they move from
    ``state["pool"]`` to the end of ``state["labelled"]``; the model is reset to ``start`` (``"reset"``) or kept
    (``"finetune"``); ``train(k, state)`` trains it on ``state["labelled"]``; ``evaluate(k, state)`` measures it.
    Every budget is checked against its round's pool before anything runs (``check_budgets``).

    Args:
        model: the model the three functions train and query.
        state: ``initial_state(...)``, or the state a previous run's ``on_round`` saved (resume after its round).
        policy: ``"finetune"`` or ``"reset"``.
        budgets: B of each round 1..K.
        select: ``fn(k, state) -> picked`` or ``(picked, fields)``: int64 pool indices, and extra fields of the
            round's record.
        train: ``fn(k, state) -> fields | None``.
        evaluate: ``fn(k, state) -> fields``.
        start: the weights ``"reset"`` loads before every training (its round 0 included).
        on_round: ``fn(state)`` after every round the loop ran (save the state there to make the run resumable).

    Returns:
        one plain record per round, round 0 first: ``round``, ``labelled_n`` (|D_L| it trained on), ``selected``
        (rounds >= 1: the picked indices, CPU int64), ``select_s`` / ``train_s`` / ``eval_s`` seconds, and the
        fields the three functions returned. They are ``state["records"]``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid: {list(POLICIES)}")
    if policy == "reset" and start is None:
        raise ValueError("policy 'reset' needs start, the weights every round's training starts from")
    done = int(state["round"])
    check_budgets(list(budgets)[done:], len(state["pool"]), first_round=done + 1)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")

    def train_and_evaluate(k: int) -> dict:
        if policy == "reset":
            model.load_state_dict(start)
        sync(device)
        t0 = time.perf_counter()
        record = dict(train(k, state) or {})
        sync(device)
        record["train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        record.update(evaluate(k, state))
        sync(device)
        record["eval_s"] = time.perf_counter() - t0
        return record

    if not state["records"]:
        state["records"].append({"round": 0, "labelled_n": len(state["labelled"]), **train_and_evaluate(0)})
        if on_round is not None:
            on_round(state)
    for k in range(int(state["round"]) + 1, len(budgets) + 1):
        sync(device)
        t0 = time.perf_counter()
        out = select(k, state)
        picked, fields_ = out if isinstance(out, tuple) else (out, {})
        sync(device)
        select_s = time.perf_counter() - t0
        picked = torch.as_tensor(picked, dtype=torch.int64).cpu()
        state["labelled"] = torch.cat([state["labelled"], picked])
        state["pool"] = state["pool"][~torch.isin(state["pool"], picked)]
        record = {"round": k, "labelled_n": len(state["labelled"]), "selected": picked, "select_s": select_s,
                  **fields_, **train_and_evaluate(k)}
        state["records"].append(record)
        state["round"] = k
        if on_round is not None:
            on_round(state)
    return state["records"]


class FRALInterrupted(RuntimeError):
    """Raised by a callback to stop a run after a finished round (tests use it to simulate a kill)."""


@dataclass
class FRALConfig(StrategyOptions):
    """Everything that determines one FRAL run (JIN §4.1 defaults where the paper gives them).

    Attributes:
        dataset: a ``fralkit.load_dataset`` name (``synbols-utk``, ``synbols-cinic``, ``synbols-ham``, ``utkface``,
            ``cinic10``, ``ham10000``).
        backbone: a ``fralkit.models`` name (``mobilenetv2`` in the paper, ``resnet18`` for Table 7).
        strategy: a key of ``STRATEGIES``.
        seed: fixes the D_L / D_U split, initialisation, training order and selection, and data generation unless
            ``data_seed`` is set.
        data_seed: the seed of the data set itself (a Synbols preset's rendering, a real set's split); None = ``seed``.
            A fixed value gives every seed one data set, as a real data set is one: the seeds then vary what the
            paper's seeds vary (labelled set, initialisation, selection), and the seed spread of a group's accuracy
            no longer carries the test set's own sampling noise. Keyed only when set.
        split_seed: the seed of the initial split into D_L and D_U alone; None = ``seed``. A fixed value keeps one
            labelled set while ``seed`` varies the initialisation, training order and selection: it separates the
            two sources of a seed spread (``fralkit.studies.calibration.seed_spread``). Keyed only when set.
        n: training images of a Synbols preset (val and test get n/5); None = the loader's default.
        n_val, n_test: validation / test images of a Synbols preset (None = n/5).
        size: image side in pixels; None = the loader's default.
        data_root: folder of a real data set's download.
        rounds: K active rounds (5).
        budget_frac: B as a share of |D| per round (2 %).
        init_frac: D_L at the start as a share of |D| (20 %).
        init_epochs, finetune_epochs: TRADES epochs of the initial model and of each round's fine-tuning
            (the paper does not give them).
        init_min_steps: at least this many optimiser steps for the initial model (0: off): its epochs are
            ``init_epochs_for(|D_L|)``, so a small initial set trains as long in steps as a larger one does in epochs.
            The rule counts the batches of D_L itself: with ``oversample`` (HAM) an epoch is the class-balanced set,
            so the steps made are more (synbols-ham: 1,040 labels oversample to 5,061 images, 20 batches of 256, so
            the 78 epochs of 390 steps make 1,560 steps; its 30 epochs made 600). Keyed only when set.
        batch_size, lr, finetune_lr, momentum, weight_decay: SGD settings of TRADES training.
        warmup_epochs: linear lr warm-up of the initial TRADES model; grad_clip: global gradient-norm clip of
            every training run (0: none). TRADES from scratch at lr 0.1 on a few hundred images can diverge
            without them.
        eps, alpha, steps, beta: threat model PGD-5, L-inf 4/255, step 2/255; TRADES beta.
        metric: ``"acc"`` or ``"f1"`` (macro-F1 per group, HAM10000 in the paper); ``"auto"``: the data set's
            registry entry (``fralkit.data.DATASETS``; F1 for the HAM-like sets).
        oversample: random oversampling of rare classes when training (HAM10000 in the paper); None = the data
            set's registry entry.
        std_epochs, std_finetune_epochs, std_lr: JIN's standard model M_S: trained from scratch on D_L in
            round 1, then warm-started from the previous round and trained ``std_finetune_epochs`` epochs.
        jin_attack_loss, minmax_p, opt_c, fairal_*, bald_*: strategy options (``StrategyOptions``).
        eval_batch_size: inference batch size (no effect on results).
        cudnn_benchmark: cuDNN's autotuner during training (``fit``). Off by default here: the last batch's shape
            changes every round, and on one H100 with it on, each process's first run spent 119-162 s fine-tuning
            over 5 rounds against 5-7 s for later runs (most likely tuning; ``benchmarks/fral_round_cost.py``
            measures it). No effect on results beyond GPU non-determinism, so not part of the record key.
        compile: ``torch.compile`` of every model the loop trains (``fit(compile=...)``: True or a mode of
            ``fralkit.train.fast.COMPILE_MODES``; CUDA only, inside the graphed step; ignored on CPU). On by
            default: the code compiled for the process's first model serves every later model of the same
            architecture (no new frame: ``tests/test_train_fast.py``), and on one H200 (2026-12-03, commit 6742c7c,
            ``benchmarks/fral_study_cost.py``, synbols-utk seed 0) it took a round's fine-tuning from 1.57-2.14 s to
            1.15-1.66 s, for an initial model of 28.8 s against 24.0 s when the compiler's on-disk cache is warm
            (78.5 s in a machine's first process). Not part of the record key, as ``cudnn_benchmark``.
        finetune_objective: the objective of every round's adversarial fine-tuning (``FINETUNE_OBJECTIVES``):
            ``"trades"`` (the paper's) or ``"fairat"`` (FairAT, Mou et al.: TRADES plus augmented copies of the
            highest-loss examples), the cross-paper row "JIN + FairAT". The initial model is TRADES either way.
        vf_n: test points (stratified by group) on which the final model's DeepFool distances give FARMUR's
            fairness in robustness over the groups (``fralkit.metrics.measure_robustness``: V_f(P), Rob(f), Rob(P));
            0 leaves it out. Not part of any key when 0.
        knobs: difficulty knobs of a Synbols preset (``fralkit.data.KNOBS``; from notebook 01's calibration to the
            paper's Init. AT row), ``"calibrated"`` (``calibrated_knobs``: the knobs notebook 01's search found for
            this very protocol in the result store, else ``fralkit.data.CALIBRATED[dataset]``; resolved at once, so
            the record key names the values), or None for the preset as defined (then not part of any key).
    """

    dataset: str = "synbols-utk"
    backbone: str = "mobilenetv2"
    strategy: str = "jin"
    seed: int = 0
    data_seed: int | None = None
    split_seed: int | None = None
    n: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    size: int | None = None
    data_root: str | None = None
    rounds: int = 5
    budget_frac: float = 0.02
    init_frac: float = 0.2
    init_epochs: int = 30
    init_min_steps: int = 0
    finetune_epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: float = 0.0
    finetune_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eps: float = 4 / 255
    alpha: float = 2 / 255
    steps: int = 5
    beta: float = 6.0
    metric: str = "auto"
    oversample: bool | None = None
    std_epochs: int = 10
    std_finetune_epochs: int = 2
    std_lr: float = 0.05
    eval_batch_size: int = 1024
    cudnn_benchmark: bool = False
    compile: bool | str = True
    knobs: dict | str | None = None
    finetune_objective: str = "trades"
    vf_n: int = 0

    def __post_init__(self) -> None:
        self.strategy = str(getattr(self.strategy, "value", self.strategy)).lower()
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; valid: {sorted(STRATEGIES)}")
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if not 0.0 < self.budget_frac < 1.0:
            raise ValueError(f"budget_frac must lie in (0, 1), got {self.budget_frac}")
        if not 0.0 < self.init_frac < 1.0:
            raise ValueError(f"init_frac must lie in (0, 1), got {self.init_frac}")
        if self.metric not in ("auto", "acc", "f1"):
            raise ValueError(f"metric must be 'auto', 'acc' or 'f1', got {self.metric!r}")
        if self.finetune_objective not in FINETUNE_OBJECTIVES:
            raise ValueError(f"finetune_objective must be one of {FINETUNE_OBJECTIVES}, got {self.finetune_objective!r}")
        for name in ("data_seed", "split_seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value):
                raise ValueError(f"{name} must be an integer or None, got {value!r}")
        if self.vf_n < 0:
            raise ValueError(f"vf_n must be >= 0 test points, got {self.vf_n}")
        if self.init_min_steps < 0:
            raise ValueError(f"init_min_steps must be >= 0, got {self.init_min_steps}")
        if self.knobs == "calibrated":  # resolved here, so the record key names the knobs actually used
            self.knobs = calibrated_knobs(self)
        elif self.knobs is not None and not isinstance(self.knobs, dict):
            raise ValueError(f"knobs must be a dict of knob values, 'calibrated' or None, got {self.knobs!r}")
        self.knobs = self.knobs or None

    @property
    def split_seed_value(self) -> int:
        """The seed of the initial D_L / D_U split: ``split_seed``, or ``seed`` when it is None."""
        return self.seed if self.split_seed is None else int(self.split_seed)

    @property
    def metric_name(self) -> str:
        if self.metric != "auto":
            return self.metric
        return dataset_facts(self.dataset, strict=False).metric

    @property
    def use_oversampling(self) -> bool:
        return dataset_facts(self.dataset, strict=False).oversample if self.oversample is None else bool(self.oversample)

    def data_key(self) -> dict:
        key = {"dataset": self.dataset, "n": self.n, "n_val": self.n_val, "n_test": self.n_test, "size": self.size,
               "data_root": self.data_root, "seed": self.seed}
        if self.data_seed is not None:  # keyed only when set, so every earlier record keeps its key
            key["data_seed"] = int(self.data_seed)
        if self.split_seed is not None:  # the same
            key["split_seed"] = int(self.split_seed)
        if self.knobs:  # keyed only when set, so every earlier record keeps its key
            key["knobs"] = dict(self.knobs)
        return key

    def init_key(self) -> dict:
        """What the initial TRADES model depends on (shared by every strategy)."""
        keep = ("backbone", "init_frac", "init_epochs", "batch_size", "lr", "warmup_epochs", "grad_clip", "momentum", "weight_decay", "eps", "alpha",
                "steps", "beta", "metric", "oversample")
        key = {"study": STUDY, "method": "init-at", **self.data_key(), **{k: getattr(self, k) for k in keep},
               "metric": self.metric_name, "oversample": self.use_oversampling}
        if self.init_min_steps:  # keyed only when set, so every earlier record keeps its key
            key["init_min_steps"] = int(self.init_min_steps)
        return key

    def init_epochs_for(self, n_labelled: int) -> int:
        """Epochs of the initial model on ``n_labelled`` images: ``init_epochs``, or with ``init_min_steps`` the
        ``max(init_epochs, ceil(init_min_steps / ceil(n_labelled / batch_size)))`` that reach that many steps
        (of batches of the labelled set before any oversampling: ``init_min_steps``)."""
        if not self.init_min_steps:
            return int(self.init_epochs)
        per_epoch = max(1, math.ceil(int(n_labelled) / int(self.batch_size)))
        return max(int(self.init_epochs), math.ceil(int(self.init_min_steps) / per_epoch))

    def record_config(self) -> dict:
        """The result-store config of this run: shared settings plus this strategy's own options."""
        own = set(_STRATEGY_OPTIONS.get(self.strategy, ()))
        cfg = {k: v for k, v in asdict(self).items()
               if k not in _NOT_IN_KEY and (k not in _ALL_STRATEGY_OPTIONS or k in own)}
        cfg.update(study=STUDY, method=self.label, metric=self.metric_name, oversample=self.use_oversampling)
        for name in ("data_seed", "split_seed"):
            if cfg[name] is None:
                cfg.pop(name)
        for name, off in (("knobs", None), ("finetune_objective", "trades"), ("vf_n", 0), ("init_min_steps", 0)):
            if not cfg[name] or cfg[name] == off:  # keyed only when set, so every earlier record keeps its key
                cfg.pop(name)
        return cfg

    @property
    def label(self) -> str:
        """The run's name in tables and figures: the strategy, with ``+<objective>`` when it fine-tunes otherwise."""
        return self.strategy if self.finetune_objective == "trades" else f"{self.strategy}+{self.finetune_objective}"

    @classmethod
    def from_dict(cls, d: dict) -> "FRALConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------------------------- data
def _protocol(key: dict) -> dict:
    """An initial model's key without what a calibration search varies or repeats (seed, knobs, study, method)."""
    return {k: v for k, v in key.items() if k not in ("seed", "knobs", "study", "method")}


def calibrated_knobs(config: "FRALConfig", root=None) -> dict | None:
    """The calibrated knobs of ``config.dataset`` for ``config``'s initial-model protocol.

    First the best trial of the newest calibration search in the result store (``root``, default
    ``$FRALKIT_RESULTS``: notebook 01's ``calib_target`` run) whose protocol (data sizes, backbone, epochs, batch,
    rates, threat model, metric) is ``config``'s, so notebook 03 trains on the data notebook 01 calibrated under
    the same protocol; else the committed ``fralkit.data.CALIBRATED`` table; else None (the preset as defined).
    A search under another protocol (a smoke run, other sizes) is never used.
    """
    import json

    from ..experiments import default_results_dir

    folder = Path(root) if root is not None else default_results_dir()
    folder = folder / "calibration" / config.dataset.replace("/", "_")
    want = _protocol(replace(config, knobs=None).init_key())
    found = []
    for path in folder.glob("search-*.json") if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cfg = rec.get("config", {})
        if {k: v for k, v in cfg.items() if k in want} == want and (rec.get("metrics") or {}).get("best"):
            found.append((path.stat().st_mtime, rec["metrics"]["best"]["knobs"]))
    if found:
        return dict(max(found, key=lambda t: t[0])[1]) or None
    return dict(CALIBRATED[config.dataset]) if config.dataset in CALIBRATED else None


def load_fral_data(config: FRALConfig) -> DataSplits:
    """The train / val / test splits of ``config.dataset``: Synbols presets take ``n``; real sets read ``data_root``,
    the folder of the download or a parent holding a folder named after the data set (``utkface/``, ...)."""
    opts = {}
    root = dataset_root(config.dataset, config.data_root)
    if dataset_facts(config.dataset).synthetic:
        opts.update({k: int(getattr(config, k)) for k in ("n", "n_val", "n_test") if getattr(config, k) is not None})
    if config.size is not None:
        opts["size"] = int(config.size)
    if config.knobs:
        opts["knobs"] = dict(config.knobs)
    seed = config.seed if config.data_seed is None else config.data_seed
    return load_dataset(config.dataset, root=root, seed=seed, **opts)


def fral_budget(n_train: int, budget_frac: float) -> int:
    """B = ``budget_frac`` |D| (2 % in §4.1), at least one sample."""
    return max(1, int(round(budget_frac * n_train)))


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_groups(model: nn.Module, ds: GroupDataset, *, metric: str = "acc", eps: float = 4 / 255,
                    alpha: float = 2 / 255, steps: int = 5, batch_size: int = 1024, amp: bool = True,
                    seed: int | None = 0) -> dict:
    """Clean and PGD-robust performance of each group: Eq. 1 of the JIN paper and the Worst / Disp / Avg of
    Tables 1-2 (``fralkit.metrics.group_report``, white-box PGD with the true labels).

    Args:
        model: M_R.
        ds: validation or test set.
        metric: ``"acc"`` or ``"f1"`` (macro-F1 within each group).
        eps, alpha, steps: the L-inf PGD threat model.
        seed: seeds the attack's random start.

    Returns:
        plain-Python dict: ``std_group`` / ``rob_group`` (per group), ``std_worst``, ``std_disp``, ``std_avg``,
        ``rob_worst``, ``rob_disp``, ``rob_avg``, ``worst_group`` (argmin of the mean of clean and robust: z*),
        ``group_loss`` (mean of clean and robust CE per group, for MinMax / OPT), ``class_f1_std`` /
        ``class_f1_rob`` (``[G][C]``, per-class F1 within each group; Table 3) and ``std_acc`` / ``rob_acc`` overall.
    """
    rep = group_report(model, ds, metric=metric, robust=True, eps=eps, alpha=alpha, steps=steps,
                       batch_size=batch_size, amp=amp, seed=seed, return_logits=True)
    lc, la = rep["logits"]["clean"].float(), rep["logits"]["adv"].float()
    y, g = ds.y.cpu(), ds.g.cpu()
    loss = 0.5 * (F.cross_entropy(lc, y, reduction="none") + F.cross_entropy(la, y, reduction="none"))
    groups, classes = range(ds.num_groups), range(ds.num_classes)
    out = {f"{kind}_{stat}": rep[f"{kind}_{stat}"] for kind in ("std", "rob") for stat in ("worst", "disp", "avg")}
    out.update({
        "std_group": [rep[f"std_group_{z}"] for z in groups],
        "rob_group": [rep[f"rob_group_{z}"] for z in groups],
        "group_n": [rep[f"n_group_{z}"] for z in groups],
        "group_loss": [float(loss[g == z].mean()) if bool((g == z).any()) else float("nan") for z in groups],
        "class_f1_std": [[rep[f"std_f1_g{z}_c{c}"] for c in classes] for z in groups],
        "class_f1_rob": [[rep[f"rob_f1_g{z}_c{c}"] for c in classes] for z in groups],
        "worst_group": int(rep["worst_group"]),
        "std_acc": rep["std_acc"],
        "rob_acc": rep["rob_acc"],
    })
    return out


# ----------------------------------------------------------------------------------------------- training
def _make_model(config: FRALConfig, train: GroupDataset) -> nn.Module:
    return make_model(config.backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size)


def _fit(model: nn.Module, train: GroupDataset, idx: torch.Tensor, *, objective: str, epochs: int, lr: float,
         config: FRALConfig, seed: int, device: torch.device, optimizer: torch.optim.Optimizer | str = "sgd",
         warmup_epochs: float = 0.0) -> float:
    """``fralkit.train.fit`` with the run's recipe (random oversampling for HAM-like data); returns seconds."""
    set_seed(seed)
    sync(device)
    t0 = time.perf_counter()
    if epochs > 0:
        recipe = Recipe(objective=objective, epochs=epochs, batch_size=config.batch_size, lr=lr, optimizer=optimizer,
                        momentum=config.momentum, weight_decay=config.weight_decay, warmup_epochs=warmup_epochs,
                        eps=config.eps, alpha=config.alpha, steps=config.steps, beta=config.beta,
                        grad_clip=config.grad_clip or None, oversample=config.use_oversampling,
                        cudnn_benchmark=config.cudnn_benchmark, compile=config.compile)
        fit(model, train, recipe, idx=idx, seed=seed, device=device, show_progress=False)
    sync(device)
    return time.perf_counter() - t0


def _new_optimizer(model: nn.Module, config: FRALConfig) -> torch.optim.Optimizer:
    """The fine-tuning optimiser of M_R, kept across rounds (its momentum is part of the saved state)."""
    return torch.optim.SGD(model.parameters(), lr=config.finetune_lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _evaluate(model: nn.Module, ds: GroupDataset, config: FRALConfig, seed: int) -> dict:
    return evaluate_groups(model, ds, metric=config.metric_name, eps=config.eps, alpha=config.alpha, steps=config.steps,
                           batch_size=config.eval_batch_size, seed=seed)


def _cache_path(store: ResultStore, config: FRALConfig) -> Path:
    return store.root / STUDY / "_cache" / config.dataset.replace("/", "_") / \
        f"init-{config.backbone}-s{config.seed}-{config_hash(config.init_key())}.pt"


def _state_path(store: ResultStore, config: FRALConfig) -> Path:
    return store.root / STUDY / "_state" / config.dataset.replace("/", "_") / \
        f"{config.strategy}-s{config.seed}-{config_hash(config.record_config())}.pt"


def weights_fingerprint(state: dict) -> str:
    """A short hash of a state dict's tensors (names and bytes): which initial model a run started from. GPU
    training is not bit-reproducible, so an initial model retrained on another machine gets another fingerprint."""
    h = hashlib.sha1()
    for name in sorted(state):
        t = state[name]
        if torch.is_tensor(t):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def initial_model(config: FRALConfig, splits: DataSplits, *, store: ResultStore, device: torch.device,
                  verbose: bool = False) -> dict:
    """The initial robust model (Algorithm 1, line 3): TRADES on D_L, trained once and shared by every strategy.

    Returns a dict with ``model`` (CPU state dict), ``labelled`` / ``pool`` (the FRAL split), ``val`` / ``test``
    (``evaluate_groups`` reports of the initial model) and ``seconds`` (training time, Table 4's "Init. AT").
    The weights are cached at ``<results>/jin/_cache/`` and the metrics saved as a result record (method ``init-at``).
    """
    path = _cache_path(store, config)
    key = config.init_key()
    train = splits.train
    if path.exists():
        init = load_checkpoint(path, map_location="cpu")
        init.setdefault("fingerprint", weights_fingerprint(init["model"]))  # cache files written before it existed
        if not store.has(key):  # cut between the two writes: the weights are there, write the record
            store.save(key, _round_metrics([init["test"]], [init["val"]]), timings={"init_at_s": init["seconds"]},
                       device=device, groups=list(train.groups), classes=list(train.classes),
                       init_fingerprint=init["fingerprint"])
        return init
    if store.has(key):
        warnings.warn(f"the initial model of {config.dataset} seed {config.seed} is in the store but its weights are not "
                      f"({path}): retraining it. Off the CPU training is not bit-reproducible, so runs of this seed "
                      "already in the store may have started from another model (their records' init_fingerprint says); "
                      "copy the store's _cache folder along with its records to avoid this", stacklevel=2)
    train, val, test = splits.train.to(device), splits.val.to(device), splits.test.to(device)
    labelled, pool = fral_split(splits.train, init_frac=config.init_frac, seed=config.split_seed_value)
    seed0 = stage_seed(config.seed, 0, 0)
    set_seed(seed0)
    model = _make_model(config, train).to(device)
    epochs = config.init_epochs_for(len(labelled))
    if verbose:
        print(f"[init] TRADES on D_L = {len(labelled)} labels, {epochs} epochs ({config.backbone})", flush=True)
    seconds = _fit(model, train, labelled, objective="trades", epochs=epochs,
                   lr=config.lr, config=config, seed=seed0, device=device, warmup_epochs=config.warmup_epochs)
    if verbose:
        print(f"[init] trained in {seconds:.1f} s", flush=True)
    rep_val = _evaluate(model, val, config, stage_seed(config.seed, 0, 1))
    rep_test = _evaluate(model, test, config, stage_seed(config.seed, 0, 2))
    state = _cpu_state(model)
    init = {"model": state, "fingerprint": weights_fingerprint(state), "labelled": labelled.clone(),
            "pool": pool.clone(), "val": rep_val, "test": rep_test, "seconds": float(seconds)}
    atomic_torch_save(init, path)
    store.save(key, _round_metrics([rep_test], [rep_val]), timings={"init_at_s": float(seconds)}, device=device,
               groups=list(train.groups), classes=list(train.classes), init_fingerprint=init["fingerprint"])
    return init


# ----------------------------------------------------------------------------------------------- the loop
_SCALARS = ("std_worst", "std_disp", "std_avg", "rob_worst", "rob_disp", "rob_avg", "std_acc", "rob_acc")


def _round_metrics(tests: list[dict], vals: list[dict]) -> dict:
    """Per-round lists (round 0 = the initial model) in the record's ``metrics``."""
    m = {k: [t[k] for t in tests] for k in _SCALARS}
    m["std_group"] = [t["std_group"] for t in tests]
    m["rob_group"] = [t["rob_group"] for t in tests]
    m["class_f1_std"] = [t["class_f1_std"] for t in tests]
    m["class_f1_rob"] = [t["class_f1_rob"] for t in tests]
    m["test_worst_group"] = [t["worst_group"] for t in tests]
    m["val_worst_group"] = [v["worst_group"] for v in vals]
    m["val_std_group"] = [v["std_group"] for v in vals]
    m["val_rob_group"] = [v["rob_group"] for v in vals]
    return m


def _context(config: FRALConfig, model: nn.Module, train: GroupDataset, val: GroupDataset, labelled, pool, round_: int,
             val_rep: dict, std_trainer) -> SelectionContext:
    opts = {f.name: getattr(config, f.name) for f in fields(StrategyOptions)}
    opts.update(std_epochs=config.std_epochs, std_lr=config.std_lr)
    return SelectionContext(model=model, train=train, pool=pool, labelled=labelled, worst_group=val_rep["worst_group"],
                            val=val, seed=config.seed, round=round_, eps=config.eps, alpha=config.alpha, steps=config.steps,
                            beta=config.beta, batch_size=config.eval_batch_size, std_trainer=std_trainer,
                            val_group_loss=torch.tensor(val_rep["group_loss"]), std_batch_size=config.batch_size, **opts)


def run_fral(config: FRALConfig, *, store: ResultStore | None = None, device: str | torch.device = "auto",
             splits: DataSplits | None = None, callback: Callable[[int, dict], None] | None = None,
             verbose: bool = False, keep_state: bool = False) -> dict:
    """Run (or resume, or load) one FRAL run: Algorithm 1 of the JIN paper with ``config.strategy``, on
    ``run_active_loop`` with the ``"finetune"`` policy.

    Args:
        config: the run.
        store: the result store (default ``ResultStore()``: ``$FRALKIT_RESULTS`` or ``results/``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        splits: the data (default ``load_fral_data(config)``).
        callback: ``fn(round, state)`` after each saved round (raise ``FRALInterrupted`` to stop there).
        verbose: one line per round.
        keep_state: keep the resumable state file after the record is written (default: delete it).

    Returns:
        the result record: ``config``, ``metrics`` (per-round lists, round 0 = the initial model; ``selected``
        indices per round; labelled counts per class x group), ``timings`` (``init_at_s``, ``select_s`` total and
        per round, ``finetune_s``, ``eval_s``, ``std_model_s``, FairAL's look-ahead count) and provenance.

    Raises:
        ValueError: the budget B of some round exceeds the pool that round would have (before any training).
    """
    store = store if store is not None else ResultStore()
    rec_cfg = config.record_config()
    if store.has(rec_cfg):
        return store.load(rec_cfg)
    dev = resolve_device(device)
    splits = splits if splits is not None else load_fral_data(config)
    budget = fral_budget(len(splits.train), config.budget_frac)
    budgets = [budget] * config.rounds
    check_budgets(budgets, len(fral_split(splits.train, init_frac=config.init_frac, seed=config.split_seed_value)[1]))
    train, val, test = splits.train.to(dev), splits.val.to(dev), splits.test.to(dev)
    init = initial_model(config, splits, store=store, device=dev, verbose=verbose)
    path = _state_path(store, config)

    model = _make_model(config, train).to(dev)
    optimizer = _new_optimizer(model, config)
    if path.exists():
        state = _upgrade_state(load_checkpoint(path, map_location="cpu"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if verbose:
            print(f"[{config.strategy} s{config.seed}] resuming after round {state['round']}", flush=True)
    else:
        model.load_state_dict(init["model"])
        state = initial_state(init["labelled"], init["pool"], {"val": init["val"], "test": init["test"]},
                              init_fingerprint=init["fingerprint"], model=None, optimizer=None, std_model=None)

    def select_round(k: int, state: dict):
        def std_trainer(ctx: SelectionContext) -> nn.Module:
            seed_s = stage_seed(config.seed, k, 3)
            set_seed(seed_s)
            m_s = _make_model(config, train).to(dev)
            epochs = config.std_epochs
            if state["std_model"] is not None:  # maintained across rounds: warm start, a few epochs
                m_s.load_state_dict(state["std_model"])
                epochs = config.std_finetune_epochs
            _fit(m_s, train, ctx.labelled, objective="standard", epochs=epochs,
                 lr=config.std_lr, config=config, seed=seed_s, device=dev)
            m_s.eval()
            state["std_model"] = _cpu_state(m_s)
            return m_s

        set_seed(stage_seed(config.seed, k, 4))
        ctx = _context(config, model, train, val, state["labelled"], state["pool"], k, state["records"][-1]["val"],
                       std_trainer)
        picked = select(config.strategy, ctx, budgets[k - 1])
        ctx.timings.pop("select_s")
        std_s = ctx.timings.pop("std_model_s", 0.0)
        return picked, {"std_model_s": float(std_s),
                        "extra": {k2: v for k2, v in ctx.timings.items() if isinstance(v, (int, float))}}

    def finetune_round(k: int, state: dict) -> None:
        model.train()
        _fit(model, train, state["labelled"], objective=config.finetune_objective, epochs=config.finetune_epochs, lr=config.finetune_lr,
             config=config, seed=stage_seed(config.seed, k, 5), device=dev, optimizer=optimizer)

    def evaluate_round(k: int, state: dict) -> dict:
        return {"val": _evaluate(model, val, config, stage_seed(config.seed, k, 6)),
                "test": _evaluate(model, test, config, stage_seed(config.seed, k, 7))}

    def save_round(state: dict) -> None:
        k, rec = state["round"], state["records"][-1]
        state.update(model=_cpu_state(model), optimizer=optimizer.state_dict())
        atomic_torch_save(state, path)
        if verbose:
            print(f"[{config.strategy} s{config.seed}] round {k}/{config.rounds}: "
                  f"z*={train.groups[state['records'][-2]['val']['worst_group']]} |D_L|={rec['labelled_n']} "
                  f"test std worst {rec['test']['std_worst']:.3f} rob worst {rec['test']['rob_worst']:.3f} "
                  f"(select {rec['select_s']:.2f} s, fine-tune {rec['train_s']:.2f} s)", flush=True)
        if callback is not None:
            callback(k, state)

    run_active_loop(model, state, policy="finetune", budgets=budgets, select=select_round, train=finetune_round,
                    evaluate=evaluate_round, on_round=save_round)
    extra = fairness_in_robustness(model, test, config.vf_n, seed=stage_seed(config.seed, config.rounds, 8)) \
        if config.vf_n else {}
    if verbose and extra:
        print(f"[{config.strategy} s{config.seed}] V_f over groups: DeepFool on {extra['vf_n']} test points in "
              f"{extra['vf_deepfool_s']:.2f} s (mean {extra['vf_mean_iters']:.2f} / max {extra['vf_max_iters']} "
              f"iterations)", flush=True)
    return _finish(config, store, state, init, train, dev, path, keep_state, extra)


# DeepFool's chunk on CUDA for the cross-paper columns: it keeps the forward graph of a chunk for its k - 1 backward
# passes, and MobileNetV2 at 32 px in fp32 needs about 15 MB per image for it, so chunks of 1024 peaked near 16 GB
# per process and ran a GPU shared by six parts out of memory (one H200, 2026-12-01, notebook 03's gpu profile).
# The distances do not depend on the chunk (each image's iteration is its own). The CPU keeps 1024. On CUDA the
# shrinking active batch is padded to recurring sizes (DeepFool's ``pad``): in a part of notebook 03's gpu profile
# (synbols-utk, one H200 alone, 2026-12-01, benchmarks/fral_study_cost.py) JIN's whole run took 274 s, of which
# about 200 s came after its fifth round, where only this DeepFool runs, and in the earlier shared runs this stage
# took 27-94 s after every strategy but the first of a process (3.8-5.2 s). Each new batch shape costs cuDNN its
# plans, compiled kernels for MobileNetV2's depthwise convolutions among them (``fralkit.inference.BUCKET``), and
# the unpadded batch takes a new size nearly every iteration. Padded (commit 5fc9436, the same benchmark, one H200
# alone, 2026-12-02): 23.2 and 27.3 s in the first run of a process (JIN; it sets up the recurring sizes), 4.1-6.2 s
# in every later one (RAND, ENT, G-RAND), mean 3.8-4.0 iterations; JIN's whole run 97.7-103.0 s.
VF_CUDA_BATCH = 256


def fairness_in_robustness(model: nn.Module, test: GroupDataset, n: int, *, seed: int,
                           batch_size: int | None = None) -> dict:
    """FARMUR's fairness in robustness of ``model`` over the groups of ``test`` (Defs. 1-5: DeepFool distances of
    the correctly classified points of ``n`` test points stratified by group): ``v_f`` (V_f(P)), ``rob_f``,
    ``rob_p`` per group, ``vf_accuracy`` and ``vf_n``, the cross-paper columns of notebook 03. ``batch_size``:
    DeepFool's chunk (default ``VF_CUDA_BATCH`` on CUDA, 1024 on CPU); the allocator's cache is released after."""
    idx = stratified_idx(test, n, seed)
    if batch_size is None:
        batch_size = VF_CUDA_BATCH if test.device.type == "cuda" else 1024
    metrics, _dist = measure_robustness(model.eval(), test, idx=idx, batch_size=batch_size,
                                        pad=test.device.type == "cuda")
    release_cached_memory(test.device)
    return {"v_f": float(metrics["v_f"]), "rob_f": float(metrics["rob_f"]),
            "rob_p": [float(v) for v in metrics["rob_p"]], "vf_accuracy": float(metrics["accuracy"]),
            "vf_n": int(len(idx)), "vf_deepfool_s": float(metrics["deepfool_s"]),
            "vf_mean_iters": float(metrics["mean_iters"]), "vf_max_iters": int(metrics["max_iters"])}


def _upgrade_state(state: dict) -> dict:
    """A state file written before the per-round records (lists of tests, vals, selected and timings) as records."""
    if "records" in state:
        return state
    t = state.pop("timings")
    tests, vals, selected = state.pop("tests"), state.pop("vals"), state.pop("selected")
    n0 = len(state["labelled"]) - sum(len(p) for p in selected)
    state["records"] = [{"round": 0, "labelled_n": n0, "val": vals[0], "test": tests[0]}]
    for r, picked in enumerate(selected, start=1):
        state["records"].append({"round": r, "labelled_n": n0 + sum(len(p) for p in selected[:r]), "selected": picked,
                                 "select_s": t["select_s"][r - 1], "std_model_s": t["std_model_s"][r - 1],
                                 "extra": t["extra"][r - 1], "val": vals[r], "test": tests[r],
                                 "train_s": t["finetune_s"][r - 1], "eval_s": t["eval_s"][r - 1]})
    return state


def _finish(config, store, state, init, train, dev, path, keep_state, extra: dict | None = None) -> dict:
    records = state["records"]
    rounds = records[1:]
    vals = [r["val"] for r in records]
    selected = [r["selected"] for r in rounds]
    metrics = _round_metrics([r["test"] for r in records], vals)
    metrics.update(extra or {})
    metrics["selected"] = [p.tolist() for p in selected]
    metrics["worst_group_est"] = [v["worst_group"] for v in vals[:-1]]
    metrics["labelled_n"] = [len(init["labelled"]) + sum(len(p) for p in selected[:r]) for r in range(len(selected) + 1)]
    metrics["labelled_counts"] = []
    lab = init["labelled"]
    y, g = train.y.cpu(), train.g.cpu()
    for r in range(len(selected) + 1):
        if r:
            lab = torch.cat([lab, selected[r - 1]])
        flat = y[lab] * train.num_groups + g[lab]
        metrics["labelled_counts"].append(
            torch.bincount(flat, minlength=train.num_classes * train.num_groups).view(train.num_classes, train.num_groups).tolist())
    per_round = {name: [float(r[key]) for r in rounds] for name, key in
                 (("select_s", "select_s"), ("finetune_s", "train_s"), ("eval_s", "eval_s"), ("std_model_s", "std_model_s"))}
    extras = [r["extra"] for r in rounds]
    extra_keys = sorted({k for e in extras for k in e})
    timings = {"init_at_s": float(init["seconds"]), **{name: float(sum(v)) for name, v in per_round.items()},
               "select_s_rounds": per_round["select_s"], "finetune_s_rounds": per_round["finetune_s"],
               **{f"{k}_rounds": [e.get(k) for e in extras] for k in extra_keys}}
    record = store.save(config.record_config(), metrics, timings=timings, device=dev,
                        groups=list(train.groups), classes=list(train.classes), budget=fral_budget(len(train), config.budget_frac),
                        init_fingerprint=state.get("init_fingerprint") or init["fingerprint"])
    if not keep_state and path.exists():
        path.unlink()
    return record
