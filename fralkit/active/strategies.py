"""Acquisition strategies of both active-learning studies: JIN (Eq. 2-4 of the JIN paper), its ablations and
baselines (the FRAL loop, notebook 03), and the heuristics of BALD+GRAD (Branchaud-Charron et al., notebook 05).

Every strategy is a plain function ``fn(ctx, budget) -> LongTensor`` of ``budget`` distinct indices into
``ctx.train`` taken from the pool ``ctx.pool`` (D_U), listed in ``STRATEGIES`` and called through
``select(name, ctx, budget)``, which checks the budget, times the call and checks the answer. A new strategy
is one such function and one line in ``STRATEGIES``. Scores that see only probabilities (``entropy``,
``fralkit.active.bald.bald_scores``) are plain functions the strategies share.
A strategy never reads the labels of the pool (``ctx.train.y[ctx.pool]``): only ``labelled`` and ``val``
carry labels, as in Algorithm 1 of the JIN paper.

| name | source | picks |
|---|---|---|
| ``rand`` | RAND | uniformly from the pool |
| ``ent`` | ENT, Wang & Shang 2014 | highest predictive entropy of M_R |
| ``cset`` | CSET, Sener & Savarese 2018 | k-center greedy on penultimate embeddings (labelled points are centres) |
| ``badge`` | BADGE, Ash et al. 2020 | k-means++ seeding on last-layer gradient embeddings |
| ``bald`` | BALD, Gal et al. 2017; BALD+GRAD Eq. 1 | highest MC-dropout mutual information (last-layer dropout in FRAL; the model's own dropout in BALD+GRAD, see ``select_bald``) |
| ``uniform`` | BALD+GRAD "Uniform" | RAND under the BALD+GRAD paper's name |
| ``balanced`` | BALD+GRAD "Balanced uniform" | the group oracle: a random ranking interleaved across groups |
| ``g-rand`` | G-RAND (JIN §4.1) | uniformly from the worst group z* |
| ``g-ent`` | G-ENT (JIN Table 6) | highest entropy within z* |
| ``minmax`` | MinMax, Abernethy et al. 2022 | with prob. p from the pool, else uniformly from the highest-loss group |
| ``opt`` | OPT, Shekhar et al. 2021 | uniformly within groups allocated by an optimistic (UCB) group loss |
| ``fairal`` | FairAL, Anahideh et al. 2022 | entropy + expected minimax-fairness gain by per-candidate look-ahead training |
| ``jin`` | JIN, Eq. 4 | top-B of N(I_per) + N(I_rob) within z* |
| ``jin-p`` / ``jin-r`` | JIN Table 5 | I_per only / I_rob only, within z* |

Inference runs in large batches on ``ctx.device`` (bf16 autocast on CUDA when ``ctx.amp``); scores are
accumulated in float32.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import inference
from ..attacks import pgd
from ..data import GroupDataset
from ..inference import last_linear
from ..runtime import autocast, channels_last, round_seed, std_fit_seed, sync
from ..train import fit, trades_loss
from ..train.fast import CapturedStep, graph_safe_optimizer
from .bald import bald_scores, mc_probs, select_top

__all__ = [
    "SelectionContext",
    "STRATEGIES",
    "STRATEGY_LABELS",
    "GROUP_AWARE",
    "BALD_GRAD_ONLY",
    "select",
    "interleave_groups",
    "entropy",
    "kl_divergence",
    "standardize",
    "inconsistency_per",
    "inconsistency_rob",
    "jin_scores",
    "kcenter_greedy",
    "badge_embeddings",
    "badge_sq_distances",
    "StrategyOptions",
    "kmeans_pp",
    "ucb_allocation",
    "infer",
    "group_losses",
]


# ----------------------------------------------------------------------------------------------- context
@dataclass(kw_only=True)
class StrategyOptions:
    """The strategies' own settings, shared by ``SelectionContext`` and ``fralkit.active.FRALConfig``.

    Attributes:
        jin_attack_loss: objective of the attack A in Eq. 3 on unlabelled data: ``"ce"`` against M_R's own
            prediction (the evaluation attack of §3.1 with the unknown label replaced by the prediction) or
            ``"kl"`` (maximises Eq. 3 directly, as TRADES' inner step). The paper leaves it open.
        minmax_p: MinMax's probability of a draw from the whole pool (Abernethy et al.'s mixing parameter).
        opt_c: OPT's confidence-width factor c in  L_z + c * sqrt(2 log t / N_z).
        fairal_candidates: FairAL's random candidate subsample of the pool (at least ``budget``).
        fairal_labels: hypothetical labels per candidate: None = all classes, k = the k most probable.
        fairal_steps, fairal_lr, fairal_batch: the look-ahead: ``fairal_steps`` TRADES SGD steps from M_R on
            the candidate plus a fixed replay minibatch of ``fairal_batch`` labelled samples.
        fairal_val: validation images (stratified by group) on which each look-ahead's fairness is measured.
        fairal_reattack: re-run PGD against every look-ahead model (exact, slow) instead of reusing the
            adversarial validation images of M_R.
        fairal_a: FairAL's trade-off a in  a * entropy + (1 - a) * expected fairness (both min-max normalised).
        bald_samples: MC-dropout samples T of ``bald``.
        bald_dropout: ``bald``'s dropout rate on the input of the last linear layer; None = the model's own
            Dropout layers (the BALD+GRAD paper, ``fralkit.active.bald.mc_probs``).
    """

    jin_attack_loss: str = "ce"
    minmax_p: float = 0.1
    opt_c: float = 1.0
    fairal_candidates: int = 64
    fairal_labels: int | None = None
    fairal_steps: int = 1
    fairal_lr: float = 0.01
    fairal_batch: int = 32
    fairal_val: int = 256
    fairal_reattack: bool = False
    fairal_a: float = 0.5
    bald_samples: int = 20
    bald_dropout: float | None = 0.2


@dataclass
class SelectionContext(StrategyOptions):
    """Everything a strategy may look at in one FRAL round (Algorithm 1, lines 5-8).

    Attributes:
        model: the robust model M_R (features/head split as in ``fralkit.models``).
        train: the training set D (keep it on ``device``); only ``labelled`` rows' labels may be read.
        pool: int64 indices of D_U into ``train``.
        labelled: int64 indices of D_L into ``train``.
        worst_group: z*, the group estimated worst on validation (required by the group-aware strategies).
        val: the validation set D_V (FairAL, and MinMax / OPT when ``val_group_loss`` is not given).
        seed: fixes every random choice of the round (with ``round``).
        round: the active round k (1-based in the loop).
        eps, alpha, steps: the PGD threat model (JIN §4.1: L-inf 4/255, step 2/255, 5 steps).
        batch_size: inference batch size.
        amp: bf16 autocast on CUDA for scoring.
        std_model: the standard model M_S of JIN (Eq. 2); trained lazily by ``std_trainer`` when None.
        std_trainer: ``fn(ctx) -> nn.Module`` training M_S on D_L (the FRAL loop warm-starts it per round);
            None trains a freshly initialised copy of M_R's architecture for ``std_epochs`` epochs.
        std_epochs, std_lr, std_batch_size: the default M_S training.
        val_group_loss: per-group validation loss ``[G]`` of M_R (mean of clean and PGD cross-entropy),
            the group statistic of MinMax and OPT; computed from ``val`` when None.
        jin_attack_loss, minmax_p, opt_c, fairal_*, bald_*: the strategies' options (``StrategyOptions``).
        query_seed: seeds ``generator(salt)`` as ``query_seed + salt`` instead of (seed, round); the BALD + GRAD
            loop gives ``seed * 100_003 + step``.
        mc_seed: seeds the MC-dropout masks of ``bald`` with the model's own dropout (``bald_dropout=None``);
            None: ``generator(2)``'s seed. The BALD + GRAD loop gives ``seed * 1_000 + step``.
        bald_subset: ``bald`` scores a random subset of this many pool samples (drawn with ``generator()``,
            sorted); None scores the whole pool. The BALD+GRAD paper's ``pool_subset``.
        timings: filled by the strategies (seconds, counts); ``select`` adds ``select_s``.
    """

    model: nn.Module
    train: GroupDataset
    pool: torch.Tensor
    labelled: torch.Tensor
    worst_group: int | None = None
    val: GroupDataset | None = None
    seed: int = 0
    round: int = 0
    eps: float = 4 / 255
    alpha: float = 2 / 255
    steps: int = 5
    beta: float = 6.0
    batch_size: int = 1024
    amp: bool = True
    std_model: nn.Module | None = None
    std_trainer: Callable[["SelectionContext"], nn.Module] | None = None
    std_epochs: int = 10
    std_lr: float = 0.05
    std_batch_size: int = 128
    val_group_loss: torch.Tensor | None = None
    query_seed: int | None = None
    mc_seed: int | None = None
    bald_subset: int | None = None
    timings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool = torch.as_tensor(self.pool, dtype=torch.int64).flatten().cpu()
        self.labelled = torch.as_tensor(self.labelled, dtype=torch.int64).flatten().cpu()
        if self.worst_group is not None:
            self.worst_group = int(self.worst_group)
            if not 0 <= self.worst_group < self.train.num_groups:
                raise ValueError(f"worst_group must be a group id in 0..{self.train.num_groups - 1}, got {self.worst_group}")
        if self.jin_attack_loss not in ("ce", "kl"):
            raise ValueError(f"jin_attack_loss must be 'ce' or 'kl', got {self.jin_attack_loss!r}")
        if not 0.0 <= self.minmax_p <= 1.0:
            raise ValueError(f"minmax_p must lie in [0, 1], got {self.minmax_p}")

    @property
    def device(self) -> torch.device:
        return self.train.device

    def generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator fixed by (seed, round, salt), or by ``query_seed + salt``: same round, same choices, also
        after a resume."""
        if self.query_seed is not None:
            return torch.Generator().manual_seed(int(self.query_seed) + int(salt))
        return torch.Generator().manual_seed(round_seed(self.seed, self.round, salt))

    def group_pool(self, group: int | None = None) -> torch.Tensor:
        """Pool indices whose group is ``group`` (default z*). Group ids are known for D_U (Algorithm 1, line 6)."""
        z = self.worst_group if group is None else group
        if z is None:
            raise ValueError("this strategy samples from the worst group z*: set SelectionContext.worst_group")
        return self.pool[self.train.g[self.pool.to(self.train.device)].cpu() == z]

    def get_std_model(self) -> nn.Module:
        """M_S of Eq. 2: the given one, or trained now (once per context) and timed in ``timings['std_model_s']``."""
        if self.std_model is None:
            t0 = time.perf_counter()
            trainer = self.std_trainer or _default_std_trainer
            self.std_model = trainer(self)
            sync(self.device)
            self.timings["std_model_s"] = self.timings.get("std_model_s", 0.0) + time.perf_counter() - t0
        return self.std_model


def _default_std_trainer(ctx: SelectionContext) -> nn.Module:
    """A freshly initialised copy of M_R's architecture, trained with the standard objective on D_L."""
    model = copy.deepcopy(ctx.model)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(round_seed(ctx.seed, ctx.round, 17))
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    torch.random.set_rng_state(gen_state)
    fit(model, ctx.train, idx=ctx.labelled, objective="standard", epochs=ctx.std_epochs, batch_size=ctx.std_batch_size,
        lr=ctx.std_lr, seed=std_fit_seed(ctx.seed, ctx.round), device=ctx.device)
    model.eval()
    return model


# ----------------------------------------------------------------------------------------------- scores
def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy  H(p) = -sum_c p_c log p_c  of ``probs [N, C]`` (0 log 0 = 0), ``[N]``."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, *, tiny: float = 1e-12) -> torch.Tensor:
    """Row-wise  KL(p || q) = sum_c p_c (log p_c - log q_c)  of ``[N, C]`` probabilities, ``[N]`` (0 log 0 = 0)."""
    if p.shape != q.shape:
        raise ValueError(f"kl_divergence: p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q.clamp_min(tiny))).sum(-1)


def standardize(s: torch.Tensor) -> torch.Tensor:
    """N(.) of Eq. 4: mean 0, standard deviation 1 over the candidates (population std; all-equal scores give 0)."""
    s = s.float()
    std = s.std(unbiased=False) if s.numel() > 1 else s.new_tensor(0.0)
    if not torch.isfinite(std) or float(std) < 1e-12:
        return torch.zeros_like(s)
    return (s - s.mean()) / std


def inconsistency_per(p_std: torch.Tensor, p_rob: torch.Tensor) -> torch.Tensor:
    """Performance inconsistency  I^per_x = KL(p(x, M_S) || p(x, M_R)), Eq. 2 of the JIN paper. ``[N]``."""
    return kl_divergence(p_std, p_rob)


def inconsistency_rob(p_rob: torch.Tensor, p_adv: torch.Tensor) -> torch.Tensor:
    """Robustness inconsistency  I^rob_x = KL(p(x, M_R) || p(A(x, eps), M_R)), Eq. 3 of the JIN paper. ``[N]``."""
    return kl_divergence(p_rob, p_adv)


def jin_scores(p_std: torch.Tensor | None, p_rob: torch.Tensor, p_adv: torch.Tensor | None, *,
               use_per: bool = True, use_rob: bool = True) -> torch.Tensor:
    """Joint inconsistency  I_x = N(I^per_x) + N(I^rob_x), Eq. 4 of the JIN paper, over the candidates.

    Args:
        p_std: ``[N, C]`` probabilities of the standard model M_S on benign x (unused when ``use_per=False``).
        p_rob: ``[N, C]`` probabilities of the robust model M_R on benign x.
        p_adv: ``[N, C]`` probabilities of M_R on A(x, eps) (unused when ``use_rob=False``).
        use_per, use_rob: the ablations of Table 5 (P, R, P+R).

    Returns:
        ``[N]`` scores; a strategy takes the top B.
    """
    if not (use_per or use_rob):
        raise ValueError("jin_scores needs use_per or use_rob (Table 5: P, R or P+R)")
    total = torch.zeros(p_rob.shape[0], dtype=torch.float32, device=p_rob.device)
    if use_per:
        if p_std is None:
            raise ValueError("use_per=True needs p_std, the probabilities of the standard model M_S")
        total = total + standardize(inconsistency_per(p_std.float(), p_rob.float()))
    if use_rob:
        if p_adv is None:
            raise ValueError("use_rob=True needs p_adv, the probabilities of M_R on adversarial inputs")
        total = total + standardize(inconsistency_rob(p_rob.float(), p_adv.float()))
    return total


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.pow(2).sum(1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(1)[None, :]).clamp_min_(0)


def kcenter_greedy(emb: torch.Tensor, centers: torch.Tensor | None, budget: int, *, chunk: int = 4096) -> torch.Tensor:
    """k-center greedy (Sener & Savarese 2018, Alg. 1): repeatedly take the point farthest from every centre.

    Args:
        emb: ``[N, D]`` candidate embeddings.
        centers: ``[M, D]`` embeddings of the labelled set (the initial centres), or None / empty.
        budget: number of points to pick.

    Returns:
        ``[budget]`` row indices into ``emb`` in the order picked (ties: lowest index).
    """
    n = emb.shape[0]
    if budget > n:
        raise ValueError(f"kcenter_greedy: budget {budget} exceeds the {n} candidates")
    emb = emb.float()
    min_d = torch.full((n,), float("inf"), device=emb.device)
    if centers is not None and centers.numel():
        centers = centers.float().to(emb.device)
        for start in range(0, centers.shape[0], chunk):
            min_d = torch.minimum(min_d, _sq_dists(emb, centers[start:start + chunk]).min(1).values)
    picked = []
    for _ in range(budget):
        i = int(torch.argmax(min_d)) if torch.isfinite(min_d).any() else int(torch.argmax(emb.norm(dim=1)))
        picked.append(i)
        min_d = torch.minimum(min_d, (emb - emb[i]).pow(2).sum(1))
        min_d[i] = -1.0
    return torch.tensor(picked, dtype=torch.int64)


def badge_embeddings(probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BADGE gradient embedding (Ash et al. 2020, Eq. 1): d CE(W z, y_hat) / d W for the predicted label y_hat.

    ``g_x = (p - onehot(y_hat)) outer z``, flattened to ``[N, C * D]`` (row c of W first). This materialises the
    embedding; ``kmeans_pp`` uses its factored distances instead (``badge_sq_distances``).
    """
    a = probs.float() - F.one_hot(probs.argmax(1), probs.shape[1]).float()
    return (a[:, :, None] * z.float()[:, None, :]).reshape(probs.shape[0], -1)


def badge_sq_distances(a: torch.Tensor, z: torch.Tensor, j: int) -> torch.Tensor:
    """``||g_i - g_j||^2`` for all i with g = a outer z, without forming g:
    ``|a_i|^2 |z_i|^2 + |a_j|^2 |z_j|^2 - 2 (a_i . a_j)(z_i . z_j)``."""
    na, nz = a.pow(2).sum(1), z.pow(2).sum(1)
    return (na * nz + na[j] * nz[j] - 2 * (a @ a[j]) * (z @ z[j])).clamp_min_(0)


def kmeans_pp(probs: torch.Tensor, z: torch.Tensor, budget: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding on BADGE embeddings (Ash et al. 2020, Alg. 1): first the largest gradient norm, then
    each next point with probability proportional to its squared distance to the nearest chosen one.

    Returns ``[budget]`` row indices into ``probs`` / ``z``.
    """
    n = probs.shape[0]
    if budget > n:
        raise ValueError(f"kmeans_pp: budget {budget} exceeds the {n} candidates")
    a = probs.float() - F.one_hot(probs.argmax(1), probs.shape[1]).float()
    z = z.float()
    first = int(torch.argmax(a.pow(2).sum(1) * z.pow(2).sum(1)))
    picked = [first]
    chosen = torch.zeros(n, dtype=torch.bool, device=z.device)
    chosen[first] = True
    d2 = badge_sq_distances(a, z, first)
    while len(picked) < budget:
        w = torch.where(chosen, torch.zeros_like(d2), d2).double().cpu()
        if float(w.sum()) <= 0:  # every remaining point coincides with a centre: draw uniformly among them
            w = (~chosen).double().cpu()
        j = int(torch.multinomial(w, 1, generator=generator))
        picked.append(j)
        chosen[j] = True
        d2 = torch.minimum(d2, badge_sq_distances(a, z, j))
    return torch.tensor(picked, dtype=torch.int64)


def ucb_allocation(loss: torch.Tensor, counts: torch.Tensor, available: torch.Tensor, budget: int, *, c: float = 1.0) -> torch.Tensor:
    """OPT's allocation (Shekhar et al. 2021): each label goes to  argmax_z L_z + c sqrt(2 log t / N_z).

    Args:
        loss: ``[G]`` estimated loss of each group.
        counts: ``[G]`` labelled samples per group so far (N_z); t is their total.
        available: ``[G]`` pool samples per group (a group runs dry).
        budget: labels to allocate this round (one at a time, counts updated after each).

    Returns:
        ``[G]`` int64 labels per group, summing to ``budget``.
    """
    loss, counts, available = loss.double().cpu(), counts.double().cpu().clone(), available.long().cpu()
    if int(available.sum()) < budget:
        raise ValueError(f"ucb_allocation: budget {budget} exceeds the {int(available.sum())} available samples")
    alloc = torch.zeros_like(available)
    for _ in range(budget):
        t = float(counts.sum()) + 1.0
        bonus = c * torch.sqrt(2.0 * math.log(t) / counts.clamp_min(1.0))
        ucb = torch.where(alloc < available, loss + bonus, torch.full_like(loss, -float("inf")))
        z = int(torch.argmax(ucb))
        alloc[z] += 1
        counts[z] += 1
    return alloc


# ----------------------------------------------------------------------------------------------- inference
def infer(model: nn.Module, ds: GroupDataset, idx: torch.Tensor, *, batch_size: int = 1024, amp: bool = True,
          embed: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``[N, C]`` (float32) of ``model`` on ``ds[idx]`` in eval mode, and optionally the input of the
    head's last linear layer ``[N, D]`` (the penultimate embedding of CSET and BADGE): ``fralkit.inference.infer``
    with CUDA batches padded to a multiple of 128 rows, so candidate sets of every size reuse a few input shapes
    and cuDNN's autotuner, where a caller turned it on, does not re-tune every convolution for each pool size."""
    out = inference.infer(model, ds, idx, batch_size=batch_size, amp=amp, embed=embed, pad=ds.device.type == "cuda")
    return out.logits, out.embeddings


def _adv_probs(model: nn.Module, ds: GroupDataset, idx: torch.Tensor, p_clean: torch.Tensor, ctx: SelectionContext) -> torch.Tensor:
    """Probabilities of M_R on A(x, eps) for ``ds[idx]`` (PGD against M_R's own prediction, labels unknown)."""
    attack = {"eps": ctx.eps, "alpha": ctx.alpha, "steps": ctx.steps, "loss": ctx.jin_attack_loss}
    return inference.attacked_logits(model, ds, idx, attack=attack, targets=p_clean.argmax(1),
                                     batch_size=ctx.batch_size, amp=ctx.amp, pad=ds.device.type == "cuda").softmax(1)


def group_losses(model: nn.Module, val: GroupDataset, *, eps: float = 4 / 255, alpha: float = 2 / 255, steps: int = 5,
                 batch_size: int = 1024, amp: bool = True, robust: bool = True) -> torch.Tensor:
    """Per-group validation loss ``[G]``: mean over the group of (clean CE + PGD CE) / 2 (clean CE only when
    ``robust=False``). The group statistic of MinMax and OPT in the FRAL (clean + robust) setting."""
    attack = {"eps": eps, "alpha": alpha, "steps": steps, "loss": "ce"} if robust else None
    clean, adv, _ = inference.infer(model, val, batch_size=batch_size, amp=amp, attack=attack)
    loss = F.cross_entropy(clean, val.y, reduction="none")
    if robust:
        loss = 0.5 * (loss + F.cross_entropy(adv, val.y, reduction="none"))
    g = val.g.cpu()
    tot = torch.zeros(val.num_groups, dtype=torch.float64).index_add_(0, g, loss.double().cpu())
    cnt = torch.zeros(val.num_groups, dtype=torch.float64).index_add_(0, g, torch.ones(len(g), dtype=torch.float64))
    return (tot / cnt.clamp_min(1)).float()


def _val_group_loss(ctx: SelectionContext) -> torch.Tensor:
    if ctx.val_group_loss is None:
        if ctx.val is None:
            raise ValueError("MinMax and OPT need per-group validation losses: set SelectionContext.val or val_group_loss")
        ctx.val_group_loss = group_losses(ctx.model, ctx.val, eps=ctx.eps, alpha=ctx.alpha, steps=ctx.steps,
                                          batch_size=ctx.batch_size, amp=ctx.amp)
    return torch.as_tensor(ctx.val_group_loss, dtype=torch.float32).cpu()


# ----------------------------------------------------------------------------------------------- helpers
def _top(scores: torch.Tensor, cand: torch.Tensor, budget: int) -> torch.Tensor:
    """The ``budget`` candidates of highest score (ties broken by the lower index, deterministic)."""
    return cand[select_top(scores.float().cpu(), budget)]


def _random(cand: torch.Tensor, budget: int, gen: torch.Generator) -> torch.Tensor:
    return cand[torch.randperm(len(cand), generator=gen)[:budget]]


def _group_candidates(ctx: SelectionContext, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(candidates, bonus): the z* pool when it holds at least ``budget`` samples; otherwise the whole pool with a
    bonus that ranks every z* sample first (Algorithm 1 assumes z* has enough unlabelled samples)."""
    cand = ctx.group_pool()
    if len(cand) >= budget:
        return cand, torch.zeros(len(cand))
    warnings.warn(f"worst group z*={ctx.worst_group} has only {len(cand)} unlabelled samples for a budget of {budget}: "
                  "taking all of them and the rest from the other groups", RuntimeWarning, stacklevel=3)
    in_z = (ctx.train.g[ctx.pool.to(ctx.device)].cpu() == ctx.worst_group)
    return ctx.pool, in_z.float() * 1e6


def _probs(ctx: SelectionContext, idx: torch.Tensor) -> torch.Tensor:
    logits, _ = infer(ctx.model, ctx.train, idx, batch_size=ctx.batch_size, amp=ctx.amp)
    return logits.softmax(1)


# ----------------------------------------------------------------------------------------------- strategies
def select_rand(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """RAND: uniformly at random from the pool."""
    return _random(ctx.pool, budget, ctx.generator())


def select_ent(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """ENT (Wang & Shang 2014): the highest predictive entropy of M_R on benign inputs."""
    return _top(entropy(_probs(ctx, ctx.pool)), ctx.pool, budget)


def select_cset(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """CSET (Sener & Savarese 2018): k-center greedy on M_R's penultimate embeddings, D_L as initial centres."""
    _, e_pool = infer(ctx.model, ctx.train, ctx.pool, batch_size=ctx.batch_size, amp=ctx.amp, embed=True)
    _, e_lab = infer(ctx.model, ctx.train, ctx.labelled, batch_size=ctx.batch_size, amp=ctx.amp, embed=True)
    return ctx.pool[kcenter_greedy(e_pool, e_lab, budget)]


def select_badge(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """BADGE (Ash et al. 2020): k-means++ seeding on last-layer gradient embeddings of M_R."""
    logits, z = infer(ctx.model, ctx.train, ctx.pool, batch_size=ctx.batch_size, amp=ctx.amp, embed=True)
    return ctx.pool[kmeans_pp(logits.softmax(1), z, budget, generator=ctx.generator(1))]


@torch.no_grad()
def _mc_probs_last_layer(ctx: SelectionContext, idx: torch.Tensor) -> torch.Tensor:
    """``[N, C, T]`` MC-dropout probabilities: dropout (rate ``bald_dropout``) on the input of M_R's last linear
    layer, T = ``bald_samples`` draws; the rest of the network runs once in eval mode."""
    _, z = infer(ctx.model, ctx.train, idx, batch_size=ctx.batch_size, amp=ctx.amp, embed=True)
    last = last_linear(ctx.model)
    gen_state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None
    torch.manual_seed(round_seed(ctx.seed, ctx.round, 2))
    try:
        samples = [F.linear(F.dropout(z, ctx.bald_dropout, training=True), last.weight.float(),
                            None if last.bias is None else last.bias.float()).softmax(1) for _ in range(ctx.bald_samples)]
    finally:
        torch.random.set_rng_state(gen_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, ctx.device)
    return torch.stack(samples, dim=2)


def select_bald(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """BALD (Gal et al. 2017; Eq. 1 of the BALD + GRAD paper): the highest mutual information between prediction
    and weights under MC dropout (``fralkit.active.bald.bald_scores`` of ``[N, C, T]`` samples).

    The two studies approximate p(w | D) differently, and both are kept exactly:

    - ``bald_dropout`` a rate (FRAL's baseline, 0.2): dropout on the input of M_R's last linear layer, T =
      ``bald_samples`` draws seeded by (seed, round), the trunk run once in eval mode. The FRAL backbones
      (MobileNetV2, ResNet-18) have no dropout of their own. Not in the JIN paper; it links the two papers.
    - ``bald_dropout=None`` (the BALD+GRAD paper, §4): T passes with the model's own Dropout layers on (``mc_probs``,
      masks seeded by ``mc_seed``), on a random ``bald_subset`` of the pool when one is set.
    """
    cand = ctx.pool
    if ctx.bald_subset is not None and ctx.bald_subset < len(cand):
        cand = cand[torch.randperm(len(cand), generator=ctx.generator())[:ctx.bald_subset]].sort().values
    if ctx.bald_dropout is not None:
        return _top(bald_scores(_mc_probs_last_layer(ctx, cand)), cand, budget)
    seed = ctx.mc_seed if ctx.mc_seed is not None else ctx.generator(2).initial_seed()
    probs = mc_probs(ctx.model, ctx.train, T=ctx.bald_samples, idx=cand, batch_size=ctx.batch_size, seed=seed,
                     amp=ctx.amp and ctx.device.type == "cuda")
    return _top(bald_scores(probs), cand, budget)


def interleave_groups(pool: torch.Tensor, groups: torch.Tensor, k: int, *, generator: torch.Generator | None = None,
                      scores: torch.Tensor | None = None) -> torch.Tensor:
    """The balanced oracle's ranking (BALD+GRAD's "Balanced uniform"): rank the pool (randomly, or by ``scores``,
    highest first) within each group and take the groups' ranked lists in turn, so the ``k`` queries are balanced
    across groups (a group that runs out leaves its turns to the others).

    Args:
        pool: ``[P]`` candidate indices.
        groups: ``[P]`` group id of each candidate (the oracle's knowledge).
        k: number of queries.
        generator: seeds the random ranking (when ``scores`` is None).
        scores: optional ``[P]`` acquisition scores to rank by instead.
    """
    pool, groups = torch.as_tensor(pool).cpu(), torch.as_tensor(groups).cpu()
    if pool.shape != groups.shape:
        raise ValueError(f"pool and groups must have the same shape, got {tuple(pool.shape)} and {tuple(groups.shape)}")
    if scores is None:
        order = torch.randperm(len(pool), generator=generator)
    else:
        order = torch.sort(torch.as_tensor(scores).cpu(), descending=True, stable=True).indices
    ranked = {int(a): order[groups[order] == a].tolist() for a in torch.unique(groups)}
    picked: list[int] = []
    while len(picked) < min(k, len(pool)):
        for a in sorted(ranked):
            if ranked[a] and len(picked) < k:
                picked.append(ranked[a].pop(0))
    return pool[torch.as_tensor(picked, dtype=torch.int64)]


def select_balanced(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """Balanced uniform (BALD+GRAD, Table 1): the oracle that knows every pool sample's group and interleaves a
    random ranking across groups (``interleave_groups``), so the queries are balanced across groups."""
    return interleave_groups(ctx.pool, ctx.train.g.cpu()[ctx.pool], budget, generator=ctx.generator())


def select_g_rand(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """G-RAND (JIN §4.1): uniformly at random from the worst group z*."""
    cand, bonus = _group_candidates(ctx, budget)
    if bonus.any():
        return _top(bonus + torch.rand(len(cand), generator=ctx.generator()), cand, budget)
    return _random(cand, budget, ctx.generator())


def select_g_ent(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """G-ENT (JIN Table 6): the highest entropy of M_R within the worst group z*."""
    cand, bonus = _group_candidates(ctx, budget)
    return _top(entropy(_probs(ctx, cand)).cpu() + bonus, cand, budget)


def select_minmax(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """MinMax (Abernethy et al. 2022, active sampling for min-max fairness): each of the B draws comes with
    probability ``minmax_p`` from the whole pool, otherwise uniformly from the group of highest validation loss
    (here the mean of clean and PGD cross-entropy, the FRAL objective)."""
    gen = ctx.generator()
    worst = int(torch.argmax(_val_group_loss(ctx)))
    n_all = int((torch.rand(budget, generator=gen) < ctx.minmax_p).sum())
    in_worst = ctx.group_pool(worst)
    n_worst = min(budget - n_all, len(in_worst))
    picked = _random(in_worst, n_worst, gen)
    rest = ctx.pool[~torch.isin(ctx.pool, picked)]
    return torch.cat([picked, _random(rest, budget - n_worst, gen)])


def select_opt(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """OPT (Shekhar et al. 2021, adaptive sampling for minimax fair classification): labels are allocated to
    groups one at a time by the optimistic estimate  L_z + c sqrt(2 log t / N_z)  (validation loss L_z,
    labelled count N_z), then drawn uniformly within each group."""
    gen = ctx.generator()
    groups = ctx.train.num_groups
    g_lab = torch.bincount(ctx.train.g[ctx.labelled.to(ctx.device)].cpu(), minlength=groups)
    pools = [ctx.group_pool(z) for z in range(groups)]
    alloc = ucb_allocation(_val_group_loss(ctx), g_lab, torch.tensor([len(p) for p in pools]), budget, c=ctx.opt_c)
    ctx.timings["opt_allocation"] = alloc.tolist()
    return torch.cat([_random(p, int(k), gen) for p, k in zip(pools, alloc)])


def _minmax_norm(s: torch.Tensor) -> torch.Tensor:
    lo, hi = s.min(), s.max()
    return torch.zeros_like(s) if float(hi - lo) < 1e-12 else (s - lo) / (hi - lo)


def _stratified_val(ctx: SelectionContext, n: int, gen: torch.Generator) -> torch.Tensor:
    g = ctx.val.g.cpu()
    per = max(1, n // ctx.val.num_groups)
    parts = []
    for z in range(ctx.val.num_groups):
        idx = (g == z).nonzero().flatten()
        parts.append(idx[torch.randperm(len(idx), generator=gen)[:per]])
    return torch.cat(parts).sort().values


def select_fairal(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """FairAL (Anahideh et al. 2022), adapted to minimax fairness as in the JIN paper (§4.1).

    For each candidate x of a random subsample of the pool and each hypothetical label y, a look-ahead copy of
    M_R takes ``fairal_steps`` TRADES SGD steps on (x, y) plus a fixed replay minibatch of D_L; its minimax
    fairness is  -max_z  mean over val group z of (clean CE + adversarial CE) / 2  (a smooth surrogate of Eq. 1:
    accuracy on a few hundred images barely moves after one step). The expected fairness weights each label by
    M_R's predicted probability; the score  a * entropy + (1 - a) * expected fairness  (both min-max normalised)
    ranks the candidates. Cost: ``candidates x labels`` look-aheads, recorded in ``timings``; this per-candidate
    adversarial retraining is what makes FairAL the costliest strategy (JIN Table 4).
    """
    if ctx.val is None:
        raise ValueError("FairAL measures fairness on validation data: set SelectionContext.val")
    gen = ctx.generator(3)
    model, dev = ctx.model, ctx.device
    m = min(len(ctx.pool), max(budget, int(ctx.fairal_candidates)))
    cand = _random(ctx.pool, m, gen)
    p = _probs(ctx, cand)
    ent = entropy(p).cpu()
    c = p.shape[1]
    k = c if ctx.fairal_labels is None else max(1, min(c, int(ctx.fairal_labels)))
    labels = p.topk(k, dim=1).indices.cpu()
    weights = torch.gather(p.cpu(), 1, labels)
    weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)

    vidx = _stratified_val(ctx, ctx.fairal_val, gen).to(ctx.val.device)
    xv, yv, gv = ctx.val.float_images(vidx).to(dev), ctx.val.y[vidx].to(dev), ctx.val.g[vidx].to(dev)
    model.eval()
    xv = channels_last(xv, xv.is_cuda)
    with autocast(dev, ctx.amp):
        xv_adv = None if ctx.fairal_reattack else pgd(model, xv, yv, eps=ctx.eps, alpha=ctx.alpha, steps=ctx.steps, loss="ce")
    replay = _random(ctx.labelled, min(len(ctx.labelled), ctx.fairal_batch), gen).to(dev)
    xr, yr = ctx.train.float_images(replay).to(dev), ctx.train.y[replay].to(dev)
    xc_all = ctx.train.float_images(cand.to(ctx.train.device)).to(dev)
    one_hot_g = F.one_hot(gv, ctx.val.num_groups).float()
    group_n = one_hot_g.sum(0).clamp_min(1)

    t0 = time.perf_counter()
    expected = _fairal_expected(ctx, xr, yr, xc_all, labels, weights, xv, yv, xv_adv, one_hot_g, group_n,
                                graph=dev.type == "cuda")
    ctx.timings.update(fairal_lookahead_s=time.perf_counter() - t0, fairal_candidates=m, fairal_labels=k,
                       fairal_lookaheads=m * k)
    score = ctx.fairal_a * _minmax_norm(ent) + (1 - ctx.fairal_a) * _minmax_norm(expected)
    return _top(score, cand, budget)


def _fairal_expected(ctx: SelectionContext, xr: torch.Tensor, yr: torch.Tensor, xc: torch.Tensor, labels: torch.Tensor,
                     weights: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, xv_adv: torch.Tensor | None,
                     one_hot_g: torch.Tensor, group_n: torch.Tensor, *, graph: bool) -> torch.Tensor:
    """FairAL's expected minimax fairness of every candidate (``[m]``, on the host): the look-aheads of
    ``select_fairal``, one per (candidate i, hypothetical label ``labels[i, j]``).

    Every look-ahead starts from M_R (its state copied back with one multi-tensor kernel) and reads its batch from
    fixed buffers: the replay minibatch ``(xr, yr)`` with the candidate in the last row. So its shapes never
    change, and with ``graph`` (CUDA) it is one captured CUDA graph (``fralkit.train.fast.CapturedStep``), replayed
    ``m x k`` times: one launch instead of the thousands of small kernels of a MobileNetV2 TRADES step on 33
    images and two evaluations of the validation images, which the host cannot issue as fast as the device runs
    them. The expected fairness accumulates on the device (no host sync per look-ahead), the products in double as
    Python floats had them. Without ``graph`` the same function runs eagerly, as on the CPU.
    """
    dev = xv.device
    m, k = labels.shape
    scratch = copy.deepcopy(ctx.model)
    state = list(scratch.state_dict().values())
    base = [t.detach().clone() for t in state]
    opt = torch.optim.SGD(scratch.parameters(), lr=ctx.fairal_lr)
    if graph and graph_safe_optimizer(opt)[0] is None:  # plain SGD on CUDA always is; anything else runs eagerly
        graph = False
    xb, yb = torch.cat([xr, xc[:1]]), torch.cat([yr, labels[0, :1].to(dev)])
    labels_dev = labels.to(dev)
    fair = torch.zeros((), device=dev)

    def lookahead() -> None:
        with torch.no_grad():
            torch._foreach_copy_(state, base)
        scratch.train()
        for _ in range(ctx.fairal_steps):
            with autocast(dev, ctx.amp, cache=not graph):  # autocast's weight cache must not outlive a capture
                loss, _ = trades_loss(scratch, xb, yb, eps=ctx.eps, alpha=ctx.alpha, steps=ctx.steps, beta=ctx.beta)
            opt.zero_grad(set_to_none=True)
            loss.float().backward()
            opt.step()
        scratch.eval()
        if xv_adv is None:
            with autocast(dev, ctx.amp, cache=not graph):
                xa = pgd(scratch, xv, yv, eps=ctx.eps, alpha=ctx.alpha, steps=ctx.steps, loss="ce")
        else:
            xa = xv_adv
        with torch.no_grad(), autocast(dev, ctx.amp, cache=not graph):
            lv = 0.5 * (F.cross_entropy(scratch(xv).float(), yv, reduction="none")
                        + F.cross_entropy(scratch(xa).float(), yv, reduction="none"))
        fair.copy_(-((lv[:, None] * one_hot_g).sum(0) / group_n).max())

    step = CapturedStep(lookahead) if graph else lookahead
    torch.manual_seed(round_seed(ctx.seed, ctx.round, 4))
    expected = torch.zeros(m, device=dev)
    weights_dev = weights.to(dev, torch.float64)
    for i in range(m):
        xb[-1].copy_(xc[i])
        for j in range(k):
            yb[-1:].copy_(labels_dev[i, j:j + 1])
            step()
            expected[i] += weights_dev[i, j] * fair.double()
    return expected.cpu()  # waits for the last look-ahead


def _jin(ctx: SelectionContext, budget: int, *, use_per: bool, use_rob: bool) -> torch.Tensor:
    cand, bonus = _group_candidates(ctx, budget)
    t0 = time.perf_counter()
    p_std = None
    if use_per:
        m_s = ctx.get_std_model()
        t0 = time.perf_counter()
        p_std = infer(m_s, ctx.train, cand, batch_size=ctx.batch_size, amp=ctx.amp)[0].softmax(1)
    p_rob = _probs(ctx, cand)
    p_adv = _adv_probs(ctx.model, ctx.train, cand, p_rob, ctx) if use_rob else None
    scores = jin_scores(p_std, p_rob, p_adv, use_per=use_per, use_rob=use_rob)
    sync(ctx.device)
    ctx.timings["jin_scores_s"] = time.perf_counter() - t0
    ctx.timings["jin_candidates"] = len(cand)
    return _top(scores.cpu() + bonus, cand, budget)


def select_jin(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """JIN (Algorithm 1, lines 6-8): top-B of  I = N(I^per) + N(I^rob)  (Eq. 2-4) among the z* pool."""
    return _jin(ctx, budget, use_per=True, use_rob=True)


def select_jin_p(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """JIN-P (Table 5, row P): performance inconsistency I^per (Eq. 2) only, within z*."""
    return _jin(ctx, budget, use_per=True, use_rob=False)


def select_jin_r(ctx: SelectionContext, budget: int) -> torch.Tensor:
    """JIN-R (Table 5, row R): robustness inconsistency I^rob (Eq. 3) only, within z*."""
    return _jin(ctx, budget, use_per=False, use_rob=True)


STRATEGIES: dict[str, Callable[[SelectionContext, int], torch.Tensor]] = {
    "rand": select_rand,
    "ent": select_ent,
    "cset": select_cset,
    "badge": select_badge,
    "bald": select_bald,
    "uniform": select_rand,  # the BALD+GRAD paper's name for RAND: the same draw
    "balanced": select_balanced,
    "g-rand": select_g_rand,
    "g-ent": select_g_ent,
    "minmax": select_minmax,
    "opt": select_opt,
    "fairal": select_fairal,
    "jin": select_jin,
    "jin-p": select_jin_p,
    "jin-r": select_jin_r,
}

STRATEGY_LABELS = {"rand": "RAND", "ent": "ENT", "cset": "CSET", "badge": "BADGE", "bald": "BALD", "uniform": "Uniform",
                   "balanced": "Balanced uniform (oracle)", "g-rand": "G-RAND",
                   "g-ent": "G-ENT", "minmax": "MinMax", "opt": "OPT", "fairal": "FairAL", "jin": "JIN",
                   "jin-p": "JIN-P", "jin-r": "JIN-R", "jin+fairat": "JIN + FairAT"}

# Strategies that draw only from the estimated worst group z* (Algorithm 1, line 6).
GROUP_AWARE = frozenset({"g-rand", "g-ent", "jin", "jin-p", "jin-r"})
# Heuristics only the BALD+GRAD study draws on: "uniform" is RAND under that paper's name, "balanced" its group
# oracle. The FRAL study's "all" leaves them out, so its grid stays JIN's comparison.
BALD_GRAD_ONLY = frozenset({"uniform", "balanced"})


def select(name: str, ctx: SelectionContext, budget: int) -> torch.Tensor:
    """Run strategy ``name`` and return ``budget`` distinct pool indices (int64, CPU, in rank order).

    Raises:
        ValueError: unknown strategy, a budget that is not a positive integer or exceeds the pool, or a
            group-aware strategy without ``ctx.worst_group``.
    """
    key = str(getattr(name, "value", name)).lower()
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {sorted(STRATEGIES)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer number of samples, got {budget!r}")
    if budget > len(ctx.pool):
        raise ValueError(f"budget B={budget} is larger than the pool D_U ({len(ctx.pool)} unlabelled samples)")
    if key in GROUP_AWARE and ctx.worst_group is None:
        raise ValueError(f"strategy {key!r} samples from the worst group z*: set SelectionContext.worst_group")
    sync(ctx.device)
    t0 = time.perf_counter()
    picked = STRATEGIES[key](ctx, budget)
    sync(ctx.device)
    ctx.timings["select_s"] = time.perf_counter() - t0
    picked = torch.as_tensor(picked, dtype=torch.int64).cpu().flatten()
    if len(picked) != budget or len(torch.unique(picked)) != budget or not torch.isin(picked, ctx.pool).all():
        raise RuntimeError(f"strategy {key!r} returned {len(picked)} indices ({len(torch.unique(picked))} distinct), "
                           f"not {budget} distinct pool indices")
    return picked
