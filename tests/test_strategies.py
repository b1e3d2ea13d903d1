"""Acquisition strategies: contract of every strategy, JIN's scores against hand-computed KL sums, the
core-set and BADGE geometry, OPT's allocation, and the error messages."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.active.strategies import (GROUP_AWARE, STRATEGIES, SelectionContext, badge_embeddings, badge_sq_distances,
                                       entropy, jin_scores, kcenter_greedy, kl_divergence, kmeans_pp, select,
                                       standardize, ucb_allocation)


class TinyNet(nn.Module):
    """features / head split as in fralkit.models, small enough for any CPU."""

    def __init__(self, in_dim: int = 3 * 8 * 8, classes: int = 3, width: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, width), nn.ReLU())
        self.head = nn.Linear(width, classes)
        self.feature_dim = width

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture
def ctx_factory(tiny_groups):
    def make(**kw):
        ds = tiny_groups
        args = dict(model=TinyNet(seed=0), train=ds, pool=torch.arange(12, 48), labelled=torch.arange(12),
                    worst_group=1, val=ds.subset(torch.arange(24)), seed=3, round=1, std_model=TinyNet(seed=1),
                    fairal_candidates=6, fairal_labels=2, fairal_val=8, fairal_batch=4, bald_samples=4, std_epochs=1)
        args.update(kw)
        return SelectionContext(**args)

    return make


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_budget_distinct_pool_indices(name, ctx_factory):
    ctx = ctx_factory()
    picked = select(name, ctx, 5)
    assert picked.dtype == torch.int64 and picked.shape == (5,)
    assert len(set(picked.tolist())) == 5
    assert set(picked.tolist()) <= set(ctx.pool.tolist())
    assert not set(picked.tolist()) & set(ctx.labelled.tolist())
    if name in GROUP_AWARE:
        assert (ctx.train.g[picked] == 1).all(), f"{name} must sample only from z*"
    assert ctx.timings["select_s"] >= 0


@pytest.mark.parametrize("name", ["rand", "badge", "g-rand", "minmax", "opt"])
def test_same_seed_and_round_give_the_same_indices(name, ctx_factory):
    a = select(name, ctx_factory(minmax_p=0.5), 6)
    b = select(name, ctx_factory(minmax_p=0.5), 6)
    assert a.tolist() == b.tolist()


def test_budget_larger_than_the_pool_is_refused(ctx_factory):
    ctx = ctx_factory()
    with pytest.raises(ValueError, match=r"budget B=37 is larger than the pool D_U \(36 unlabelled samples\)"):
        select("rand", ctx, 37)
    with pytest.raises(ValueError, match="positive integer"):
        select("rand", ctx, 0)


def test_unknown_strategy_lists_the_valid_ones(ctx_factory):
    with pytest.raises(ValueError, match=r"unknown strategy 'jinn'; valid: .*'jin'.*'rand'"):
        select("jinn", ctx_factory(), 2)


def test_group_aware_strategy_needs_the_worst_group(ctx_factory):
    with pytest.raises(ValueError, match="worst group z\\*"):
        select("g-ent", ctx_factory(worst_group=None), 2)


def test_group_aware_fills_from_other_groups_when_z_star_runs_dry(ctx_factory):
    ctx = ctx_factory()
    in_z = int((ctx.train.g[ctx.pool] == 1).sum())
    with pytest.warns(RuntimeWarning, match="has only"):
        picked = select("g-ent", ctx, in_z + 3)
    assert int((ctx.train.g[picked] == 1).sum()) == in_z


def test_kl_and_entropy_hand_values():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    q = torch.tensor([[0.9, 0.1], [0.25, 0.75]])
    want = [0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), math.log(1.0 / 0.25)]
    assert torch.allclose(kl_divergence(p, q), torch.tensor(want), atol=1e-6)
    assert torch.allclose(entropy(p), torch.tensor([math.log(2.0), 0.0]), atol=1e-6)


def test_jin_scores_equal_hand_computed_standardised_kl_sums():
    logits_std = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0], [-1.0, 0.5, 2.0]])
    logits_rob = torch.tensor([[1.0, 0.5, 0.0], [0.2, -0.3, 0.1], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    logits_adv = torch.tensor([[0.0, 1.5, 0.0], [0.2, -0.2, 0.1], [1.0, 0.0, 0.5], [1.0, 0.0, 0.0]])
    ps, pr, pa = (F.softmax(t, 1) for t in (logits_std, logits_rob, logits_adv))

    def kl(p, q):
        return [sum(pi * math.log(pi / qi) for pi, qi in zip(a, b)) for a, b in zip(p.tolist(), q.tolist())]

    def z(v):
        v = np.asarray(v)
        return (v - v.mean()) / v.std()

    i_per, i_rob = kl(ps, pr), kl(pr, pa)
    assert torch.allclose(jin_scores(ps, pr, pa), torch.tensor(z(i_per) + z(i_rob), dtype=torch.float32), atol=1e-5)
    assert torch.allclose(jin_scores(ps, pr, None, use_rob=False), torch.tensor(z(i_per), dtype=torch.float32), atol=1e-5)
    assert torch.allclose(jin_scores(None, pr, pa, use_per=False), torch.tensor(z(i_rob), dtype=torch.float32), atol=1e-5)
    with pytest.raises(ValueError, match="use_per or use_rob"):
        jin_scores(ps, pr, pa, use_per=False, use_rob=False)


def test_standardize_has_zero_mean_unit_std_and_handles_ties():
    s = standardize(torch.tensor([1.0, 2.0, 4.0, 9.0]))
    assert abs(float(s.mean())) < 1e-6 and abs(float(s.std(unbiased=False)) - 1) < 1e-6
    assert standardize(torch.ones(5)).eq(0).all()


def test_coreset_picks_the_farthest_point_first():
    centers = torch.tensor([[0.0, 0.0]])
    emb = torch.tensor([[1.0, 0.0], [5.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    # farthest from the centre: (5, 0); then farthest from {(0,0), (5,0)}: (0, 3) at distance 3.
    assert kcenter_greedy(emb, centers, 2).tolist() == [1, 3]
    with pytest.raises(ValueError, match="exceeds"):
        kcenter_greedy(emb, centers, 5)


def test_badge_embedding_is_the_last_layer_gradient():
    torch.manual_seed(0)
    head = nn.Linear(4, 3, bias=False)
    z = torch.randn(5, 4)
    probs = head(z).softmax(1).detach()
    emb = badge_embeddings(probs, z)
    for i in range(5):
        head.zero_grad()
        y_hat = head(z[i:i + 1]).argmax(1)
        F.cross_entropy(head(z[i:i + 1]), y_hat).backward()
        assert torch.allclose(emb[i].view(3, 4), head.weight.grad, atol=1e-6)
    # factored distances equal the explicit ones
    for j in range(5):
        assert torch.allclose(badge_sq_distances(probs - F.one_hot(probs.argmax(1), 3), z, j),
                              (emb - emb[j]).pow(2).sum(1), atol=1e-5)


def test_kmeans_pp_starts_at_the_largest_gradient_and_is_seeded():
    torch.manual_seed(1)
    probs, z = torch.randn(20, 3).softmax(1), torch.randn(20, 5)
    norms = badge_embeddings(probs, z).norm(dim=1)
    a = kmeans_pp(probs, z, 6, generator=torch.Generator().manual_seed(0))
    b = kmeans_pp(probs, z, 6, generator=torch.Generator().manual_seed(0))
    assert int(a[0]) == int(norms.argmax()) and a.tolist() == b.tolist() and len(set(a.tolist())) == 6


def test_ucb_allocation_hand_example():
    # t = 11, N = (10, 1): bonuses sqrt(2 ln 11 / 10) = 0.69 and sqrt(2 ln 11) = 2.19; losses 1.0 and 0.5.
    alloc = ucb_allocation(torch.tensor([1.0, 0.5]), torch.tensor([10, 1]), torch.tensor([50, 50]), 1, c=1.0)
    assert alloc.tolist() == [0, 1]
    alloc = ucb_allocation(torch.tensor([1.0, 0.5]), torch.tensor([1000, 1000]), torch.tensor([50, 50]), 4, c=0.0)
    assert alloc.tolist() == [4, 0]
    alloc = ucb_allocation(torch.tensor([1.0, 0.5]), torch.tensor([10, 10]), torch.tensor([2, 50]), 5, c=0.0)
    assert alloc.tolist() == [2, 3]  # a group that runs dry passes its labels on


def test_minmax_without_mixing_samples_the_highest_loss_group(ctx_factory):
    ctx = ctx_factory(minmax_p=0.0, val_group_loss=torch.tensor([0.3, 1.7]), worst_group=0)
    picked = select("minmax", ctx, 6)
    assert (ctx.train.g[picked] == 1).all()


def test_opt_follows_its_allocation(ctx_factory):
    ctx = ctx_factory(val_group_loss=torch.tensor([2.0, 0.1]), opt_c=0.0)
    picked = select("opt", ctx, 4)
    assert (ctx.train.g[picked] == 0).all() and ctx.timings["opt_allocation"] == [4, 0]


def test_jin_needs_a_standard_model_source(ctx_factory, monkeypatch):
    calls = []
    ctx = ctx_factory(std_model=None, std_trainer=lambda c: calls.append(c.round) or TinyNet(seed=5))
    select("jin", ctx, 3)
    select("jin-p", ctx, 3)
    assert calls == [1], "M_S is trained once per round and shared"
    assert "std_model_s" in ctx.timings


def test_default_standard_model_is_a_fresh_copy_trained_on_d_l(ctx_factory):
    ctx = ctx_factory(std_model=None, std_epochs=1)
    m_s = ctx.get_std_model()
    assert m_s is not ctx.model and type(m_s) is type(ctx.model)
    assert not torch.equal(m_s.head.weight, ctx.model.head.weight)
    assert (ctx.train.g[select("jin", ctx, 4)] == 1).all()
