"""The active-learning study of the BALD + GRAD paper (Branchaud-Charron et al.): Table 1, Figs. 1-3.

Protocol (paper §4 and its public code; ``BaldProtocol`` holds every number):

1. An initial labelled pool of ``init_labels`` (500) training examples drawn uniformly at random, the same
   for every method of a seed; the rest is the unlabelled pool.
2. Each labelling step: reset the model to the *same* starting weights, train it on the labelled set
   (standard cross-entropy, or GRAD: ``l_y + lambda * l_a`` with a gradient-reversal layer under a head that
   predicts the group, Eq. 2), evaluate it on the class x group balanced test split, then query
   ``query_size`` (50) labels with the heuristic:

   - ``uniform``: i.i.d. sampling from the pool;
   - ``balanced``: the oracle that knows the group and interleaves a random ranking across groups, so the
     queries are balanced across groups;
   - ``bald``: the highest BALD mutual information (Eq. 1) under T = 20 MC-dropout samples of the class head.

   Steps continue until ``max_frac`` (10 %) of the training set is labelled. The heuristics are entries of
   ``fralkit.active.STRATEGIES`` (FRAL's registry); the loop is ``fralkit.active.run_active_loop`` with the
   ``"reset"`` policy, the one FRAL runs with ``"finetune"``.
3. ``repair``: the fully labelled resampling reference, REPAIR (Li & Vasconcelos 2019) with the group as the
   bias-inducing representation: per-example weights that make the class unpredictable from the group,
   then a resampled training set (each example kept with probability w_i), trained once.

Starting weights: the paper starts every step from ImageNet VGG-16 weights, which are not available
offline. Here ``init="scratch"`` (default) starts every step from one fixed seeded initialisation;
``init="pretrained"`` first trains the network once on a separate Synbols task (eight other characters in
random colours on gradient backgrounds, no groups) and starts every step from that trunk (with the head
initialised from the run's seed). Records carry the choice in their config and ``describe_findings`` states it.

Evaluation per step (``fralkit.metrics.fairness``): accuracy, per-group accuracy, predictive parity
``delta_A``, NLL, equalized odds, equal opportunity, demographic parity (deterministic prediction, dropout
off), and the mean BALD score per group on the test split with its gap (paper Fig. 1).

Results: ``run_method`` returns one plain record (dict) per labelling step; the study's ``run`` saves one
``ResultStore`` record per (dataset, method, seed) whose metrics are per-step lists, and skips runs that are
already stored. Tables and figures are rendered from those records (``steps_frame``, ``table1``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import DataSplits, GroupDataset, dataset_facts, load_dataset
from ..data.synbols import GroupStyle, SynbolsConfig, make_synbols
from ..experiments import ResultStore, format_mean_std, save_table, summarize
from ..metrics.fairness import fairness_report
from ..active.methods import HEURISTIC_NAMES, TABLE1_METHODS, MethodSpec, method_label, parse_method
from ..inference import clean_logits
from ..plots import bald as plots_bald
from ..plots.bald import steps_from_record
from ..runtime import offset_seed, query_seed, resolve_device, set_seed, step_seed, sync
from .. import train as training
from ..models import GRADModel, make_model
from ..train import Recipe
from ..utils import atomic_torch_save, cache_dir, config_hash, load_checkpoint, progress
from .protocol import draw
from ..active.bald import bald_scores, mc_probs
from ..active.loop import initial_state, run_active_loop
from ..active.strategies import SelectionContext, select

__all__ = [
    "STUDY",
    "HEURISTIC_NAMES",
    "TABLE1_METHODS",
    "PAPER_TABLE1",
    "BaldProtocol",
    "MethodSpec",
    "parse_method",
    "method_label",
    "initial_labelled",
    "repair_weights",
    "repair_resample",
    "make_start_model",
    "evaluate_step",
    "run_method",
    "grid", "keys", "run", "parts", "tables", "figures", "claims", "FIGURES", "BaldRun",
    "load_train_sets",
    "steps_from_record",
    "step_queries",
    "steps_frame",
    "final_frame",
    "table1",
    "paper_table1",
    "describe_findings",
]

STUDY = "bald_grad"
# Table 1 of the paper at 10 % labelled: (predictive parity %, std, accuracy %, std); 100k Synbols, VGG-16 ImageNet.
PAPER_TABLE1: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("synbols-sensitive", "uniform"): (10.73, 2.70, 87.23, 1.77),
    ("synbols-sensitive", "uniform+grad0.5"): (7.58, 2.16, 87.37, 0.98),
    ("synbols-sensitive", "uniform+grad1"): (5.50, 1.51, 83.69, 2.79),
    ("synbols-sensitive", "bald"): (3.56, 1.70, 91.66, 0.36),
    ("synbols-sensitive", "bald+grad0.5"): (2.16, 1.13, 92.34, 0.26),
    ("synbols-sensitive", "bald+grad1"): (1.27, 0.88, 90.31, 0.84),
    ("synbols-sensitive", "balanced"): (10.34, 1.97, 86.91, 1.83),
    ("synbols-sensitive", "balanced+grad0.5"): (5.15, 1.39, 88.40, 2.02),
    ("synbols-sensitive", "repair"): (0.54, 0.11, 94.52, 0.19),
    ("synbols-minority", "uniform"): (4.67, 0.76, 88.53, 1.66),
    ("synbols-minority", "uniform+grad0.5"): (2.03, 1.46, 84.98, 0.88),
    ("synbols-minority", "uniform+grad1"): (1.38, 0.00, 86.52, 1.81),
    ("synbols-minority", "bald"): (2.11, 0.19, 94.08, 0.10),
    ("synbols-minority", "bald+grad0.5"): (0.74, 0.15, 93.38, 0.84),
    ("synbols-minority", "bald+grad1"): (0.75, 0.65, 91.72, 0.67),
    ("synbols-minority", "balanced"): (2.40, 0.65, 90.66, 0.41),
    ("synbols-minority", "balanced+grad0.5"): (1.88, 0.01, 90.24, 0.70),
    ("synbols-minority", "repair"): (1.06, 0.44, 92.84, 0.33),
}


# ----------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class BaldProtocol:
    """Every number of the active loop; defaults are the paper's (§4, its public code and demo notebook).

    Attributes:
        backbone: a ``fralkit.models.MODELS`` name; ``vgg_mc`` (VGG-style, dropout in the head) in the paper.
        dropout: dropout rate passed to ``make_model`` (None: the model's default); all dropout is MC dropout.
        init_labels: size of the initial labelled pool (500).
        query_size: labels queried per step (50).
        max_frac: stop once this fraction of the training set is labelled (0.10).
        mc_samples: T, MC-dropout samples for BALD and the uncertainty gap (20).
        epochs: training epochs per step (the public code uses 10-20).
        batch_size: training batch size (32).
        lr, momentum, weight_decay, optimizer, schedule: SGD at a constant rate as in the demo notebook
            (0.001, 0.9, 5e-4); any ``fralkit.train.fit`` optimiser and schedule.
        grad_hidden: width of the GRAD group head's hidden layers (4096 in the public code).
        grad_clip: gradient-norm clipping of GRAD training (5 in the public code).
        init: ``"scratch"`` (one fixed seeded initialisation) or ``"pretrained"`` (trained once on a separate
            Synbols task, see ``make_start_model``).
        pretrain_n, pretrain_epochs, pretrain_lr: size, epochs and SGD learning rate of that pre-training task.
        pool_subset: score only a random subset of this many pool examples per step (None: the whole pool).
        repair_epochs: epochs of the REPAIR reference on its resampled, fully labelled training set.
        repair_steps: optimisation steps of the REPAIR weights.
        eval_batch_size: batch size of evaluation and MC scoring.
    """

    backbone: str = "vgg_mc"
    dropout: float | None = None
    init_labels: int = 500
    query_size: int = 50
    max_frac: float = 0.10
    mc_samples: int = 20
    epochs: int = 20
    batch_size: int = 32
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    schedule: str = "constant"
    grad_hidden: int = 4096
    grad_clip: float = 5.0
    init: str = "scratch"
    pretrain_n: int = 5000
    pretrain_epochs: int = 5
    pretrain_lr: float = 0.05
    pool_subset: int | None = None
    repair_epochs: int = 20
    repair_steps: int = 500
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.init not in ("scratch", "pretrained"):
            raise ValueError(f"init must be 'scratch' or 'pretrained', got {self.init!r}")
        for name in ("init_labels", "query_size", "mc_samples", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.max_frac <= 1.0:
            raise ValueError(f"max_frac must lie in (0, 1], got {self.max_frac}")


# ----------------------------------------------------------------------------------------------- selection
def initial_labelled(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial labelled pool: ``k`` of ``range(n)`` uniformly at random; returns ``(labelled, pool)`` sorted."""
    if not 0 < k < n:
        raise ValueError(f"the initial labelled pool must satisfy 0 < init_labels < n_train, got {k} of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:k].sort().values, perm[k:].sort().values


# ----------------------------------------------------------------------------------------------- REPAIR
def repair_weights(features: torch.Tensor, y: torch.Tensor, *, num_classes: int | None = None, steps: int = 500,
                   lr: float = 0.05, init: float = 3.0) -> torch.Tensor:
    """REPAIR example weights (Li & Vasconcelos 2019): minimise the representation bias of the reweighted set.

    The bias of a representation ``features`` for labels ``y`` is ``B = 1 - L_w / H_w(Y)``: ``L_w`` the
    w-weighted cross-entropy of the best linear classifier on the features, ``H_w(Y)`` the weighted class
    entropy. Alternating gradient steps: the classifier minimises ``L_w``; the weights ``w_i = sigmoid(s_i)``
    maximise ``L_w / H_w(Y)``. With the one-hot group as the features, ``B = 0`` means the class is
    independent of the group under the weights.

    Args:
        features: ``[N, D]`` bias-inducing representation (e.g. one-hot group ids).
        y: ``[N]`` labels.
        num_classes: C (default: ``y.max() + 1``).
        steps: alternating optimisation steps.
        lr: Adam learning rate of both players.
        init: initial logit of every weight (3.0: w = 0.95, so a set without bias keeps almost all examples).

    Returns:
        ``[N]`` weights in (0, 1).
    """
    feats = torch.as_tensor(features).detach().float().cpu()
    yy = torch.as_tensor(y).detach().long().cpu()
    if feats.ndim != 2 or feats.shape[0] != len(yy):
        raise ValueError(f"features must be [N, D] with N = len(y) = {len(yy)}, got shape {tuple(feats.shape)}")
    C = int(num_classes or int(yy.max()) + 1)
    clf = nn.Linear(feats.shape[1], C)
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    s = torch.full((len(yy),), float(init), requires_grad=True)
    opt_c = torch.optim.Adam(clf.parameters(), lr=lr)
    opt_w = torch.optim.Adam([s], lr=lr)
    onehot = F.one_hot(yy, C).float()
    for _ in range(int(steps)):
        w = torch.sigmoid(s).detach()
        loss_c = (w * F.cross_entropy(clf(feats), yy, reduction="none")).sum() / w.sum()
        opt_c.zero_grad()
        loss_c.backward()
        opt_c.step()

        w = torch.sigmoid(s)
        ce = F.cross_entropy(clf(feats), yy, reduction="none").detach()
        p_y = (w[:, None] * onehot).sum(0) / w.sum()
        h_y = torch.special.entr(p_y).sum().clamp_min(1e-8)
        ratio = (w * ce).sum() / w.sum() / h_y
        opt_w.zero_grad()
        (-ratio).backward()
        opt_w.step()
    return torch.sigmoid(s).detach()


def repair_resample(weights: torch.Tensor, *, generator: torch.Generator, mode: str = "sample") -> torch.Tensor:
    """Indices kept by REPAIR: ``"sample"`` keeps example i with probability ``w_i`` (REPAIR-S); ``"threshold"``
    keeps ``w_i >= 0.5`` (REPAIR-T)."""
    w = torch.as_tensor(weights).detach().float().cpu()
    if mode == "sample":
        keep = torch.rand(len(w), generator=generator) < w
    elif mode == "threshold":
        keep = w >= 0.5
    else:
        raise ValueError(f"unknown REPAIR resampling mode {mode!r}; valid: ['sample', 'threshold']")
    return keep.nonzero().flatten()


# ----------------------------------------------------------------------------------------------- models
def _model_kw(protocol: BaldProtocol) -> dict:
    return {} if protocol.dropout is None else {"dropout": float(protocol.dropout)}


def _pretrained_trunk(train: GroupDataset, protocol: BaldProtocol, device: torch.device) -> dict:
    """Trunk weights trained once on a separate Synbols task (8 other characters, random colours, no groups); cached
    in ``$FRALKIT_CACHE/pretrained`` by the task, the model and the optimiser settings."""

    chars = ("b", "c", "e", "f", "g", "h", "k", "m")
    cfg = SynbolsConfig(n=protocol.pretrain_n, chars=chars, joint=tuple((1.0 / len(chars),) for _ in chars),
                        styles=(GroupStyle(contrast=(60.0, 200.0), background="gradient", occlusions=1),),
                        group_names=("all",), size=train.image_size, seed=104_729, name="synbols-pretrain")
    key = config_hash({"cfg": cfg.key(), "backbone": protocol.backbone, "model": _model_kw(protocol),
                       "epochs": protocol.pretrain_epochs, "lr": protocol.pretrain_lr, "batch_size": protocol.batch_size,
                       "momentum": protocol.momentum, "weight_decay": protocol.weight_decay})
    path = cache_dir() / "pretrained" / f"{protocol.backbone}-{key}.pt"
    if path.exists():
        return load_checkpoint(path, map_location="cpu")

    data = make_synbols(cfg).to(device)
    set_seed(0)
    model = make_model(protocol.backbone, len(chars), in_channels=train.channels, image_size=train.image_size,
                       **_model_kw(protocol)).to(device)
    training.fit(model, data, seed=0, device=device, show_progress=False,
        **_recipe(protocol, "standard", epochs=protocol.pretrain_epochs, lr=protocol.pretrain_lr).kwargs())
    trunk = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("head")}
    atomic_torch_save(trunk, path)
    return trunk


def make_start_model(train: GroupDataset, protocol: BaldProtocol, *, seed: int, lambd: float = 0.0,
                     device: str | torch.device = "auto") -> tuple[nn.Module, dict]:
    """The model every step of a run starts from, and its weights (reset before each retraining).

    The base network depends only on ``seed`` (and the pre-trained trunk), so the standard and GRAD runs
    of a seed share it; with ``lambd > 0`` it is wrapped in ``GRADModel`` (reversal factor 1, group head
    seeded separately); ``lambd`` itself is the weight of the group loss, given to ``fit`` by ``run_method``.
    """

    dev = resolve_device(device)
    set_seed(seed)
    base = make_model(protocol.backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size,
                      **_model_kw(protocol))
    if protocol.init == "pretrained":
        trunk = _pretrained_trunk(train, protocol, dev)
        missing = base.load_state_dict(trunk, strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"pre-trained weights do not fit {protocol.backbone}: unexpected {missing.unexpected_keys[:3]}")
    model: nn.Module = base
    if lambd > 0:
        # Eq. 2 as in the paper's code: the reversal layer multiplies by -1 and lambda weights the group loss
        # (passed to fit as group_weight); the trunk then receives grad l_y - lambda grad l_a.
        set_seed(offset_seed(seed, 7_919))
        model = GRADModel(base, train.num_groups, lambd=1.0, hidden=protocol.grad_hidden)
    model = model.to(dev)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model, state


def _recipe(protocol: BaldProtocol, objective: str, *, epochs: int, lr: float | None = None,
            group_weight: float = 0.0) -> Recipe:
    """The protocol's training recipe for ``fralkit.train.fit``; GRAD gets its loss weight lambda and clipping."""
    grad = objective == "grad"
    return Recipe(objective=objective, epochs=epochs, batch_size=protocol.batch_size,
                  lr=protocol.lr if lr is None else lr, optimizer=protocol.optimizer, momentum=protocol.momentum,
                  weight_decay=protocol.weight_decay, schedule=protocol.schedule,
                  grad_clip=protocol.grad_clip if grad else None,
                  options={"group_weight": group_weight} if grad else {})


def evaluate_step(model: nn.Module, test: GroupDataset, *, mc_samples: int = 20, batch_size: int = 512,
                  seed: int = 0) -> dict[str, float]:
    """Paper §2 metrics of one trained model on the held-out set, plus the per-group BALD means (Fig. 1).

    Accuracy, NLL and the fairness gaps use the deterministic prediction (dropout off); the epistemic
    uncertainty is the BALD score under ``mc_samples`` MC-dropout samples (masks seeded by ``seed``).
    """
    probs = clean_logits(model, test, batch_size=batch_size, amp=True, channels_last=False).softmax(-1)
    scores = bald_scores(mc_probs(model, test, T=mc_samples, batch_size=batch_size, seed=seed))
    return fairness_report(probs.cpu(), test.y.cpu(), test.g.cpu(), num_groups=test.num_groups, scores=scores.cpu())


# ----------------------------------------------------------------------------------------------- the loop
def _labelled_counts(train: GroupDataset, idx: torch.Tensor) -> dict:
    """``counts`` (class x group table of the labelled set), ``labelled_g<a>`` per group, and ``labelled_rare``:
    labelled examples in the under-represented cells (training count below the mean cell count: the red glyphs
    of the minority-group set, the red *a* and blue *d* of the sensitive-attribute set)."""
    y, g = train.y.cpu()[idx], train.g.cpu()[idx]
    flat = torch.bincount(y * train.num_groups + g, minlength=train.num_classes * train.num_groups)
    table = flat.view(train.num_classes, train.num_groups)
    full = train.counts().float()
    rare = full < full.mean()
    return {"counts": table.tolist(), **{f"labelled_g{a}": int(table[:, a].sum()) for a in range(train.num_groups)},
            "labelled_rare": int(table[rare].sum())}


def run_method(splits: DataSplits, method: str, *, seed: int = 0, protocol: BaldProtocol | None = None,
               device: str | torch.device = "auto", show_progress: bool = False) -> list[dict]:
    """One (dataset, method, seed) run of the paper's active loop (or the REPAIR reference).

    Args:
        splits: the data set (``train`` is the pool to label, ``test`` the balanced held-out set).
        method: a Table 1 row, see ``parse_method`` (``"bald+grad0.5"``, ``"balanced"``, ``"repair"``, ...).
        seed: fixes the initial pool, the starting weights, training order and the queries.
        protocol: the loop's numbers (default: the paper's).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        show_progress: a progress bar over the labelling steps.

    Returns:
        One plain dict per labelling step: ``step``, ``labelled``, the ``evaluate_step`` metrics, ``queried``
        (train indices queried after that step; empty at the last), ``counts`` (labelled class x group
        counts), ``labelled_g<a>`` (labelled examples of group a), ``labelled_rare`` (in the under-represented
        class x group cells) and ``train_s`` / ``score_s`` / ``eval_s`` seconds.
    """

    protocol = protocol or BaldProtocol()
    spec = parse_method(method)
    dev = resolve_device(device)
    train, test = splits.train.to(dev), splits.test.to(dev)
    n = len(train)
    objective = "grad" if spec.grad else "standard"
    model, start = make_start_model(train, protocol, seed=seed, lambd=spec.lambd, device=dev)
    eval_kw = dict(mc_samples=protocol.mc_samples, batch_size=protocol.eval_batch_size)

    if spec.repair:
        t0 = time.perf_counter()
        w = repair_weights(F.one_hot(train.g.cpu(), train.num_groups).float(), train.y.cpu(),
                           num_classes=train.num_classes, steps=protocol.repair_steps)
        idx = repair_resample(w, generator=torch.Generator().manual_seed(int(seed)))
        score_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        training.fit(model, train, idx=idx, seed=seed, device=dev, show_progress=False,
            **_recipe(protocol, "standard", epochs=protocol.repair_epochs).kwargs())
        sync(dev)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = evaluate_step(model, test, seed=seed, **eval_kw)
        return [{"step": 0, "labelled": int(len(idx)), **metrics, "queried": [], **_labelled_counts(train, idx),
                 "train_s": train_s, "score_s": score_s, "eval_s": time.perf_counter() - t0}]

    labelled, pool = initial_labelled(n, protocol.init_labels, seed)
    target = max(protocol.init_labels, int(math.ceil(protocol.max_frac * n - 1e-9)))
    n_steps = 1 + max(0, math.ceil((target - len(labelled)) / protocol.query_size))
    # Query after step s (s = round - 1); the last query is trimmed to reach the target exactly.
    budgets = [min(protocol.query_size, target - len(labelled) - s * protocol.query_size) for s in range(n_steps - 1)]
    bar = progress(total=n_steps, desc=f"{train.name} {method} s{seed}", disable=None if show_progress else True)

    def query(k: int, state: dict) -> torch.Tensor:
        step = k - 1  # the model trained at that step picks
        ctx = SelectionContext(model=model, train=train, pool=state["pool"], labelled=state["labelled"], seed=seed,
                               round=step, batch_size=protocol.eval_batch_size, bald_samples=protocol.mc_samples,
                               bald_dropout=None, bald_subset=protocol.pool_subset,
                               query_seed=query_seed(seed, step), mc_seed=step_seed(seed, step))
        return select(spec.heuristic, ctx, budgets[step])

    def retrain(k: int, state: dict) -> None:
        # The labelled set in index order, as the paper's code keeps it.
        training.fit(model, train, idx=state["labelled"].sort().values, seed=step_seed(seed, k), device=dev, show_progress=False,
            **_recipe(protocol, objective, epochs=protocol.epochs, group_weight=spec.lambd).kwargs())

    def evaluate(k: int, state: dict) -> dict:
        return {"metrics": evaluate_step(model, test, seed=step_seed(seed, k), **eval_kw),
                "counts": _labelled_counts(train, state["labelled"])}

    rounds = run_active_loop(model, initial_state(labelled, pool), policy="reset", start=start, budgets=budgets,
                             select=query, train=retrain, evaluate=evaluate, on_round=lambda state: bar.update(1))
    bar.close()
    steps = []
    for r, after in zip(rounds, [*rounds[1:], None]):
        steps.append({"step": r["round"], "labelled": int(r["labelled_n"]), **r["metrics"],
                      "queried": [] if after is None else [int(i) for i in after["selected"]], **r["counts"],
                      "train_s": r["train_s"], "score_s": 0.0 if after is None else after["select_s"],
                      "eval_s": r["eval_s"]})
    return steps


def _record_config(dataset: str, method: str, seed: int, protocol: BaldProtocol, data_options: dict) -> dict:
    return {"study": STUDY, "dataset": dataset, "method": parse_method(method).name, "seed": int(seed),
            **data_options, **asdict(protocol)}


def _checked(protocol_kw: dict) -> dict:
    valid = [f.name for f in fields(BaldProtocol)]
    unknown = sorted(set(protocol_kw) - set(valid))
    if unknown:
        raise ValueError(f"unknown protocol option(s) {unknown}; valid: {valid}")
    return protocol_kw


# ----------------------------------------------------------------------------------------------- results
def load_train_sets(records: Sequence[dict]) -> dict[str, GroupDataset]:
    """The training split each record's queries index, per dataset (regenerated from the cache by its config)."""
    out: dict[str, GroupDataset] = {}
    for rec in records:
        cfg = rec["config"]
        if cfg["dataset"] in out:
            continue
        opts = {k: cfg[k] for k in ("n", "size") if cfg.get(k) is not None}
        out[cfg["dataset"]] = load_dataset(cfg["dataset"], seed=cfg.get("data_seed", 0), **opts).train
    return out


def step_queries(records: Sequence[dict], *, dataset: str, method: str, seed: int = 0, step: int = 0) -> list[int]:
    """Training-set indices queried after labelling step ``step`` of one stored run."""
    for rec in records:
        cfg = rec["config"]
        if (cfg["dataset"], cfg["method"], cfg["seed"]) == (dataset, parse_method(method).name, seed):
            steps = steps_from_record(rec)
            if not 0 <= step < len(steps):
                raise ValueError(f"step must lie in 0..{len(steps) - 1} for this run, got {step}")
            return list(steps[step]["queried"])
    raise ValueError(f"no record for dataset={dataset!r}, method={method!r}, seed={seed}")


def steps_frame(records: Sequence[dict]):
    """Long table: one row per (dataset, method, seed, step) with every scalar per-step metric."""
    import pandas as pd

    rows = []
    for rec in records:
        cfg = rec["config"]
        for s in steps_from_record(rec):
            row = {"dataset": cfg["dataset"], "method": cfg["method"], "label": method_label(cfg["method"]),
                   "seed": cfg["seed"]}
            row.update({k: v for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            rows.append(row)
    return pd.DataFrame(rows)


def final_frame(records: Sequence[dict]):
    """One row per run: its last step (10 % labelled; REPAIR's single step), metrics in %, for ``summarize``."""
    frame = steps_frame(records)
    if frame.empty:
        return frame
    last = frame.sort_values("step").groupby(["dataset", "method", "seed"], sort=False).tail(1).copy()
    for col in ("accuracy", "parity", "eq_odds", "eq_opp", "dem_parity"):
        if col in last.columns:
            last[col] = 100.0 * last[col]
    order = {m: i for i, m in enumerate(TABLE1_METHODS)}
    datasets = {d: i for i, d in enumerate(dict.fromkeys(frame["dataset"]))}
    last["_d"] = last["dataset"].map(datasets)
    last["_m"] = last["method"].map(lambda m: order.get(m, len(order)))
    return last.sort_values(["_d", "_m", "seed"]).drop(columns=["_d", "_m"]).reset_index(drop=True)


def _column(dataset: str, metric: str) -> str:
    return f"{dataset_facts(dataset, strict=False).title.lower()}: {_METRIC_NAMES.get(metric, metric)}"


def table1(records: Sequence[dict], *, metrics: Sequence[str] = ("parity", "accuracy"), digits: int = 2):
    """Table 1: one row per method, columns ``<dataset>: <metric>``; mean ± std over seeds at the last step, in %.

    Built with ``fralkit.experiments.summarize`` and ``format_mean_std`` from the stored records.
    """
    import pandas as pd

    last = final_frame(records)
    if last.empty:
        return pd.DataFrame()
    parts = []
    for dataset in dict.fromkeys(last["dataset"]):
        summary = summarize(last[last["dataset"] == dataset], by=["method"], metrics=list(metrics))
        table = format_mean_std(summary, list(metrics), digits=digits)
        table.columns = [_column(dataset, m) for m in metrics]
        parts.append(table)
    out = pd.concat(parts, axis=1).fillna("–")
    out.index = [method_label(m) for m in out.index]
    out.index.name = "method"
    return out


_METRIC_NAMES = {"parity": "predictive parity δ_A (%)", "accuracy": "accuracy (%)", "nll": "NLL",
                 "eq_odds": "equalized odds (%)", "eq_opp": "equal opportunity (%)", "bald_gap": "BALD gap"}


def paper_table1(datasets: Sequence[str] | None = None):
    """The paper's Table 1 numbers (``PAPER_TABLE1``) in the layout of ``table1``."""
    import pandas as pd

    datasets = list(datasets) if datasets else ["synbols-sensitive", "synbols-minority"]
    cols = {}
    for d in datasets:
        cols[_column(d, "parity")] = [f"{PAPER_TABLE1[(d, m)][0]:.2f} ± {PAPER_TABLE1[(d, m)][1]:.2f}" for m in TABLE1_METHODS]
        cols[_column(d, "accuracy")] = [f"{PAPER_TABLE1[(d, m)][2]:.2f} ± {PAPER_TABLE1[(d, m)][3]:.2f}" for m in TABLE1_METHODS]
    out = pd.DataFrame(cols, index=[method_label(m) for m in TABLE1_METHODS])
    out.index.name = "method"
    return out


def describe_findings(records: Sequence[dict]) -> str:
    """The paper's two findings, checked against this run's records, in plain sentences with the numbers.

    1. BALD gives a smaller predictive parity than uniform sampling, without knowing the group.
    2. BALD + GRAD gives the smallest predictive parity of all active-learning rows (REPAIR, which uses every
       label, aside).
    """
    last = final_frame(records)
    if last.empty:
        return "No results yet."
    means = last.groupby(["dataset", "method"])[["parity", "accuracy"]].mean()
    stds = last.groupby(["dataset", "method"])[["parity", "accuracy"]].std()
    n_seeds = last.groupby(["dataset", "method"]).size()
    cfg = records[0]["config"]
    start = ("one fixed seeded initialisation per seed (no pre-training)" if cfg.get("init") == "scratch"
             else f"a trunk pre-trained once on a separate Synbols task ({cfg.get('pretrain_n')} images of 8 other "
                  f"characters, {cfg.get('pretrain_epochs')} epochs, no groups), head seeded per run")
    al_last = last[last["method"] != "repair"]["labelled"]
    lines = [f"Setup: {cfg.get('backbone')} at {cfg.get('size') or 'the preset'} px, {cfg.get('n') or 'preset'} training "
             f"images, {cfg.get('init_labels')} initial labels + {cfg.get('query_size')} per step up to "
             f"{int(al_last.max()) if len(al_last) else 0} labels ({100 * cfg.get('max_frac', 0):.0f} %), "
             f"T = {cfg.get('mc_samples')} MC samples, {cfg.get('epochs')} epochs per step; starting weights: {start}."]
    for dataset in dict.fromkeys(last["dataset"]):
        rank = {m: i for i, m in enumerate(TABLE1_METHODS)}
        have = sorted(means.loc[dataset].index, key=lambda m: rank.get(m, len(rank)))

        def fmt(m: str) -> str:
            p, a = means.loc[(dataset, m)]
            sp = stds.loc[(dataset, m), "parity"]
            spread = "" if n_seeds.loc[(dataset, m)] < 2 or np.isnan(sp) else f" ± {sp:.2f}"
            return f"{method_label(m)}: δ_A {p:.2f}{spread} %, accuracy {a:.2f} %"

        n_runs = int(n_seeds.loc[dataset].max())
        lines.append(f"{dataset} ({n_runs} seed{'s' if n_runs != 1 else ''} per method):")
        if {"bald", "uniform"} <= set(have):
            pb, pu = means.loc[(dataset, "bald"), "parity"], means.loc[(dataset, "uniform"), "parity"]
            ab, au = means.loc[(dataset, "bald"), "accuracy"], means.loc[(dataset, "uniform"), "accuracy"]
            verdict = "agrees" if pb < pu else "ties" if pb == pu else "does NOT agree"
            spread = np.nanmax([stds.loc[(dataset, m), "parity"] for m in ("bald", "uniform")] + [0.0])
            caveat = " (the difference is within one standard deviation over seeds)" if 0 < abs(pb - pu) <= spread else ""
            lines.append(f"  Finding 1 (BALD fairer than uniform, group unknown): this run {verdict}{caveat}. "
                         f"{fmt('bald')} vs {fmt('uniform')} "
                         f"(paper: δ_A {PAPER_TABLE1.get((dataset, 'bald'), (math.nan,))[0]:.2f} vs "
                         f"{PAPER_TABLE1.get((dataset, 'uniform'), (math.nan,))[0]:.2f} %, BALD also more accurate). "
                         f"Here BALD is {'more' if ab > au else 'not more'} accurate ({ab:.2f} vs {au:.2f} %).")
        else:
            lines.append("  Finding 1: needs the 'bald' and 'uniform' rows.")
        al = [m for m in have if m != "repair"]
        bald_grad = [m for m in al if m.startswith("bald+grad")]
        if bald_grad and len(al) > len(bald_grad):
            best = min(al, key=lambda m: means.loc[(dataset, m), "parity"])
            best_bg = min(bald_grad, key=lambda m: means.loc[(dataset, m), "parity"])
            gap = means.loc[(dataset, best_bg), "parity"] - means.loc[(dataset, best), "parity"]
            tied = [m for m in al if not m.startswith("bald+grad")
                    and means.loc[(dataset, m), "parity"] == means.loc[(dataset, best_bg), "parity"]]
            verdict = "does NOT agree" if gap > 0 else f"ties (with {method_label(tied[0])})" if tied else "agrees"
            lines.append(f"  Finding 2 (BALD + GRAD fairest of the active-learning rows): this run {verdict}. "
                         f"Fairest: {fmt(best)}; best BALD + GRAD: {fmt(best_bg)}.")
        else:
            lines.append("  Finding 2: needs 'bald+grad<lambda>' rows and at least one other active-learning row.")
        if "repair" in have:
            lines.append(f"  Reference: {fmt('repair')} (all labels, resampled).")
        al_acc = float(np.mean([means.loc[(dataset, m), "accuracy"] for m in al])) if al else math.nan
        if al_acc < 60.0:
            lines.append(f"  Caution: the active-learning models are near chance here (mean accuracy {al_acc:.1f} %), so "
                         "these numbers cannot confirm or refute the paper; more labels, epochs or the gpu profile are needed.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- the study protocol
NOTEBOOK = "05"


@dataclass(frozen=True)
class BaldRun:
    """One (data set, method, seed) run of Table 1 with its protocol and data options."""

    dataset: str
    method: str
    seed: int
    protocol: BaldProtocol
    n: int | None = None
    size: int | None = None
    data_seed: int = 0
    cpu_threads: int = 0  # torch threads on CPU while it runs (0: leave as is); no effect on results


def grid(*, datasets: Sequence[str] | str = ("synbols-sensitive", "synbols-minority"),
         methods: Sequence[str] | str = TABLE1_METHODS, seeds: Sequence[int] | int = 3, n: int | None = None,
         size: int | None = None, data_seed: int = 0, cpu_threads: int = 0, profile: str | None = None,
         device: str | None = None, **protocol_kw) -> list[BaldRun]:
    """Notebook 05's runs: every data set x method x seed; ``protocol_kw`` are ``BaldProtocol`` fields.

    Args:
        datasets: data-set names (a list or a comma-separated string), e.g. the two Synbols presets.
        methods: Table 1 rows (a list, a comma-separated string, or ``"all"``).
        seeds: a list of seeds, or a count (``3`` -> 0, 1, 2).
        n, size: training-set size and image side passed to the preset (its test set gets n/5).
        data_seed: the seed of the data itself; every run seed sees the same images, as in the paper.
        cpu_threads: torch intra-op threads while a run is on the CPU (0 leaves the current setting). One thread
            suits the tiny CPU profiles on a shared machine, where two threads per process oversubscribe the cores.
    """
    names = [s.strip() for s in datasets.split(",") if s.strip()] if isinstance(datasets, str) else list(datasets)
    if isinstance(methods, str):
        meths = list(TABLE1_METHODS) if methods.strip().lower() == "all" else [s.strip() for s in methods.split(",") if s.strip()]
    else:
        meths = list(methods)
    for m in meths:
        parse_method(m)
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    protocol = replace(BaldProtocol(), **_checked(protocol_kw))
    return [BaldRun(d, m, s, protocol, n, size, int(data_seed), int(cpu_threads))
            for d in names for m in meths for s in seed_list]


def keys(run_: BaldRun) -> list[dict]:
    return [_record_config(run_.dataset, run_.method, run_.seed, run_.protocol,
                           {"n": run_.n, "size": run_.size, "data_seed": run_.data_seed})]


def run(run_: BaldRun, *, store: ResultStore, device, cache: dict) -> list[dict]:
    """One run of the active loop (``run_method``), saved as one record with per-step metric lists."""
    if run_.dataset not in cache:
        opts = {k: v for k, v in (("n", run_.n), ("size", run_.size)) if v is not None}
        cache[run_.dataset] = load_dataset(run_.dataset, seed=run_.data_seed, **opts)
    splits = cache[run_.dataset]
    dev = resolve_device(device)
    threads_before = torch.get_num_threads()
    if run_.cpu_threads > 0 and dev.type == "cpu":
        torch.set_num_threads(run_.cpu_threads)
    try:
        steps = run_method(splits, run_.method, seed=run_.seed, protocol=run_.protocol, device=dev)
    finally:
        torch.set_num_threads(threads_before)
    metrics = {key: [s[key] for s in steps] for key in steps[0] if key != "step"}
    timings = {f"{k}_total": float(sum(s[k] for s in steps)) for k in ("train_s", "score_s", "eval_s")}
    return [store.save(keys(run_)[0], metrics, timings=timings, device=dev, n_steps=len(steps),
                       groups=list(splits.train.groups), classes=list(splits.train.classes))]


def parts(configs: Sequence[BaldRun]) -> list[list[BaldRun]]:
    """One part per data set (its runs share the data and the pretrained trunk cache)."""
    out: dict[str, list] = {}
    for c in configs:
        out.setdefault(c.dataset, []).append(c)
    return list(out.values())


def tables(records: Sequence[dict], *, save: bool = True) -> dict:
    """Table 1 (``table1``) and the other metrics (``more``), saved as ``05_table1*``; the paper's (``paper``)."""
    out = {"table1": table1(records),
           "more": table1(records, metrics=("nll", "eq_odds", "eq_opp", "bald_gap"), digits=3),
           "paper": paper_table1()}
    if save:
        save_table(out["table1"], f"{NOTEBOOK}_table1")
        save_table(out["more"], f"{NOTEBOOK}_table1_more_metrics")
    return out


def _query_grids(records: Sequence[dict]) -> list:
    train_sets = load_train_sets(records)
    return [(f"queries_{dataset}", plots_bald.plot_query_grid(
        train_sets[dataset], step_queries(records, dataset=dataset, method="bald", seed=0, step=0),
        title=f"{dataset}: BALD queries, step 0, seed 0")) for dataset in train_sets]


FIGURES = {
    "fig1_uncertainty_gap": lambda records: [("fig1_uncertainty_gap",
                                              plots_bald.plot_uncertainty_gap(steps_frame(records)))],
    "curves": lambda records: [(f"curves_{d}", plots_bald.plot_learning_curves(frame, d))
                               for frame in [steps_frame(records)] for d in frame["dataset"].unique()],
    "rare_share": lambda records: [("rare_share", plots_bald.plot_rare_share(steps_frame(records)))],
    "queries": _query_grids,
}


def figures(records: Sequence[dict], *names: str) -> list:
    """Draw and save ``05_<figure>`` for each of ``names`` (default all of ``FIGURES``)."""
    return draw(NOTEBOOK, FIGURES, records, names)


def claims(records: Sequence[dict]) -> str:
    return describe_findings(records)


def explorer(records: Sequence[dict]):
    """The query browser (notebook 05's interactive corner)."""
    return plots_bald.query_browser(records, load_train_sets(records))
