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


def _fairal_inputs(ctx, dev="cpu"):
    """A replay batch, three candidates with two hypothetical labels each, and the validation images of FairAL."""
    ds, val = ctx.train, ctx.val
    vidx = torch.arange(8)
    xv, yv, gv = val.float_images(vidx).to(dev), val.y[vidx].to(dev), val.g[vidx].to(dev)
    one_hot = F.one_hot(gv, val.num_groups).float()
    return dict(xr=ds.float_images(torch.arange(4)).to(dev), yr=ds.y[:4].to(dev),
                xc=ds.float_images(torch.arange(12, 15)).to(dev), labels=torch.tensor([[0, 1], [2, 0], [1, 2]]),
                weights=torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.9, 0.1]]), xv=xv, yv=yv,
                xv_adv=(xv + 0.01).clamp(0, 1), one_hot_g=one_hot, group_n=one_hot.sum(0).clamp_min(1))


def test_fairal_look_aheads_each_start_from_m_r_and_weight_the_labels(ctx_factory):
    """Every look-ahead is one TRADES SGD step of a fresh copy of M_R on the replay batch plus (x_i, y_ij), and the
    expected fairness is sum_j w_ij * (-max_z mean_{val z} (CE clean + CE adv) / 2): computed here with a new
    copy of the model per look-ahead, the same random draws in the same order."""
    import copy

    from fralkit.active.strategies import _fairal_expected
    from fralkit.runtime import round_seed
    from fralkit.train import trades_loss

    ctx = ctx_factory()
    inp = _fairal_inputs(ctx)
    before = [p.detach().clone() for p in ctx.model.parameters()]
    got = _fairal_expected(ctx, **inp, graph=False)
    torch.manual_seed(round_seed(ctx.seed, ctx.round, 4))
    want = []
    for i in range(3):
        total = 0.0
        for j in range(2):
            net = copy.deepcopy(ctx.model)
            opt = torch.optim.SGD(net.parameters(), lr=ctx.fairal_lr)
            net.train()
            loss, _ = trades_loss(net, torch.cat([inp["xr"], inp["xc"][i:i + 1]]),
                                  torch.cat([inp["yr"], inp["labels"][i, j:j + 1]]),
                                  eps=ctx.eps, alpha=ctx.alpha, steps=ctx.steps, beta=ctx.beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.eval()
            with torch.no_grad():
                lv = 0.5 * (F.cross_entropy(net(inp["xv"]), inp["yv"], reduction="none")
                            + F.cross_entropy(net(inp["xv_adv"]), inp["yv"], reduction="none"))
            per_group = (lv[:, None] * inp["one_hot_g"]).sum(0) / inp["group_n"]
            total += float(inp["weights"][i, j]) * float(-per_group.max())
        want.append(total)
    assert got.shape == (3,)
    assert torch.allclose(got.double(), torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters())), "M_R itself must not move"


class _BNNet(nn.Module):
    """Conv, batch norm and a head: the batch-norm state a look-ahead must also start from."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, classes)
        self.feature_dim = 8

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.gpu
def test_fairal_graphed_look_aheads_match_the_eager_ones_on_cuda(ctx_factory):
    """On CUDA each look-ahead is one replay of a captured graph: the expected fairness agrees with the same
    look-aheads run eagerly (bf16 autocast in both), and M_R is left as it was."""
    from fralkit.active.strategies import _fairal_expected

    ctx = ctx_factory(model=_BNNet().cuda())
    inp = _fairal_inputs(ctx, "cuda")
    state = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    eager = _fairal_expected(ctx, **inp, graph=False)
    graphed = _fairal_expected(ctx, **inp, graph=True)
    assert torch.isfinite(graphed).all()
    assert torch.allclose(graphed, eager, rtol=2e-2, atol=2e-2), (graphed, eager)
    assert (graphed.max() - graphed.min()) > 0, "the candidates must be told apart"
    assert all(torch.equal(v, ctx.model.state_dict()[k]) for k, v in state.items())
