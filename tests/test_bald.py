"""BALD by MC dropout, the BALD+GRAD heuristics in the strategy registry, REPAIR and the BALD+GRAD active loop
(Branchaud-Charron et al.), on tiny CPU inputs."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.active.bald import bald_scores, expected_entropy, mc_probs, predictive_entropy, select_top
from fralkit.active.strategies import STRATEGIES, SelectionContext, entropy, interleave_groups, select, select_bald
from fralkit.data import GroupDataset
from fralkit.studies import bald_grad as bs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared CPU, and immune to oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _h(*p):
    return -sum(q * math.log(q) for q in p if q > 0)


# ----------------------------------------------------------------------------------------------- BALD math
def test_bald_equals_hand_computed_mutual_information():
    probs = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0]],   # two confident samples that disagree: I = log 2
        [[0.5, 0.5], [0.5, 0.5]],   # agree (and uncertain): I = 0
        [[0.8, 0.4], [0.2, 0.6]],   # T = 2 samples (0.8, 0.2) and (0.4, 0.6)
    ])  # [N=3, C=2, T=2]
    expected = [math.log(2), 0.0, _h(0.6, 0.4) - (_h(0.8, 0.2) + _h(0.4, 0.6)) / 2]
    assert bald_scores(probs).tolist() == pytest.approx(expected, abs=1e-6)
    assert predictive_entropy(probs)[2] == pytest.approx(_h(0.6, 0.4), abs=1e-6)
    assert expected_entropy(probs)[2] == pytest.approx((_h(0.8, 0.2) + _h(0.4, 0.6)) / 2, abs=1e-6)


def test_bald_is_zero_when_all_samples_agree_and_bounded_by_log_c():
    torch.manual_seed(0)
    p = torch.distributions.Dirichlet(torch.ones(5)).sample((40,))
    same = p[:, :, None].expand(40, 5, 7)
    assert bald_scores(same).abs().max() < 1e-6
    mixed = torch.distributions.Dirichlet(torch.full((5,), 0.3)).sample((40, 7)).permute(0, 2, 1)
    scores = bald_scores(mixed)
    assert (scores >= 0).all() and (scores <= math.log(5) + 1e-6).all()


def test_scores_and_the_strategy_registry():
    probs = torch.tensor([[[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]], [[0.9, 0.7], [0.1, 0.3]]])
    assert select_top(bald_scores(probs), 2).tolist() == [1, 2]
    assert select_top(bald_scores(probs), 5).tolist() == [1, 2, 0]   # k is capped at N
    assert predictive_entropy(probs).argmax() in (0, 1)             # equal mean predictions (0.5, 0.5)
    assert entropy(probs[:, :, 0]).shape == (3,)                     # deterministic [N, C]
    assert STRATEGIES["bald"] is select_bald and {"uniform", "balanced", "bald"} <= set(STRATEGIES)
    with pytest.raises(ValueError, match=r"unknown strategy 'batchbald'; valid: \[.*'bald'.*\]"):
        select("batchbald", None, 2)
    assert select_top(torch.tensor([0.1, 0.3, 0.3, 0.0]), 2).tolist() == [1, 2]  # ties: lower index first


def test_bald_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\[N, C, T\]"):
        bald_scores(torch.rand(4, 2))
    with pytest.raises(ValueError, match="k must be >= 0"):
        select_top(torch.rand(3), -1)


# ----------------------------------------------------------------------------------------------- MC dropout
class HeadDropout(nn.Module):
    """Deterministic trunk (with BatchNorm), all dropout in the head."""

    def __init__(self, c: int = 3, p: float = 0.5):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                   nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(p), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(p), nn.Linear(8, c))

    def features(self, x):
        return self.trunk(x)

    def forward(self, x):
        return self.head(self.features(x))


class TrunkDropout(HeadDropout):
    def __init__(self):
        super().__init__()
        self.trunk.insert(3, nn.Dropout(0.5))


def _images(n=24, seed=0):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_trunk_once_and_full_pass_agree_given_the_same_masks():
    torch.manual_seed(0)
    model = HeadDropout()
    x = _images()
    fast = mc_probs(model, x, T=6, batch_size=10, fast=True, seed=3)
    full = mc_probs(model, x, T=6, batch_size=10, fast=False, seed=3)
    assert fast.shape == (24, 3, 6)
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bald_scores(fast), bald_scores(full), atol=1e-6, rtol=1e-5)
    assert fast.std(dim=2).mean() > 1e-3                   # the samples really differ (dropout is on)
    assert not torch.allclose(fast, mc_probs(model, x, T=6, batch_size=10, seed=4))


def test_mc_probs_leaves_mode_and_rng_alone():
    model = HeadDropout().train()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    bn_mean = model.trunk[1].running_mean.clone()
    mc_probs(model, _images(), T=3, seed=5)
    assert torch.equal(torch.rand(3), expected)            # seeded masks come from a forked RNG
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model.trunk[1].running_mean, bn_mean)  # BatchNorm in eval mode during MC dropout


def test_mc_probs_reads_a_group_dataset_by_index(tiny_groups):
    torch.manual_seed(0)
    model = HeadDropout()
    idx = torch.tensor([5, 0, 7])
    from_ds = mc_probs(model, tiny_groups, T=4, idx=idx, seed=1)
    from_x = mc_probs(model, tiny_groups.x[idx], T=4, seed=1)   # uint8 tensors are scaled to [0, 1] too
    torch.testing.assert_close(from_ds, from_x)


def test_trunk_dropout_falls_back_to_full_passes():
    x = _images(4)
    with pytest.raises(ValueError, match="fast=True needs a features/head split with every Dropout layer in the head"):
        mc_probs(TrunkDropout(), x, T=2, fast=True)
    assert mc_probs(TrunkDropout(), x, T=2).shape == (4, 3, 2)   # auto: falls back to full passes
    no_dropout = nn.Sequential(nn.Flatten(), nn.Linear(192, 3))
    with pytest.raises(ValueError, match="no Dropout layer"):
        mc_probs(no_dropout, x, T=2)


# ----------------------------------------------------------------------------------------------- selection
def test_bald_grad_paper_bald_uses_the_models_own_dropout_on_a_seeded_subset(tiny_groups):
    """``bald`` with ``bald_dropout=None``: the BALD of BALD+GRAD (Branchaud-Charron et al.; full MC-dropout passes,
    masks from ``mc_seed``) on a random subset of the pool drawn with the query generator, as the BALD + GRAD loop
    scored it."""
    torch.manual_seed(0)
    model = HeadDropout()
    pool = torch.arange(8, 48)
    ctx = SelectionContext(model=model, train=tiny_groups, pool=pool, labelled=torch.arange(8), bald_dropout=None,
                           bald_samples=5, bald_subset=20, query_seed=7, mc_seed=3, batch_size=16)
    cand = pool[torch.randperm(40, generator=torch.Generator().manual_seed(7))[:20]].sort().values
    want = cand[select_top(bald_scores(mc_probs(model, tiny_groups, T=5, idx=cand, batch_size=16, seed=3)), 6)]
    assert select("bald", ctx, 6).tolist() == want.tolist()


def test_balanced_uniform_queries_are_balanced_across_groups():
    pool = torch.arange(100, 400)
    groups = (torch.arange(300) % 10 == 0).long()           # group 1 is 10 % of the pool
    picked = interleave_groups(pool, groups, 50, generator=torch.Generator().manual_seed(0))
    g_of = dict(zip(pool.tolist(), groups.tolist()))
    counts = torch.bincount(torch.tensor([g_of[int(i)] for i in picked]), minlength=2)
    assert counts.tolist() == [25, 25] and len(set(picked.tolist())) == 50
    # a group that runs out leaves its turns to the others
    picked = interleave_groups(pool, groups, 80, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(torch.tensor([g_of[int(i)] for i in picked]), minlength=2)
    assert counts.tolist() == [50, 30]
    # same seed, same queries
    again = interleave_groups(pool, groups, 80, generator=torch.Generator().manual_seed(0))
    assert torch.equal(picked, again)


def test_balanced_ranking_by_scores_interleaves_the_best_of_each_group():
    pool = torch.tensor([10, 11, 12, 13, 14, 15])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1, 0.2])
    assert interleave_groups(pool, groups, 4, scores=scores).tolist() == [10, 15, 11, 14]


def test_uniform_and_initial_pool_are_seeded_partitions():
    lab, pool = bs.initial_labelled(100, 20, seed=3)
    assert len(lab) == 20 and len(pool) == 80 and not set(lab.tolist()) & set(pool.tolist())
    assert torch.equal(lab, bs.initial_labelled(100, 20, seed=3)[0])
    n = 100
    train = GroupDataset(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.arange(n) % 2, torch.zeros(n, dtype=torch.int64),
                         ["a", "b"], ["all"])
    ctx = SelectionContext(model=HeadDropout(2), train=train, pool=pool, labelled=lab, query_seed=0)
    pick = select("uniform", ctx, 10)
    assert len(set(pick.tolist())) == 10 and set(pick.tolist()) <= set(pool.tolist())
    with pytest.raises(ValueError, match="0 < init_labels < n_train"):
        bs.initial_labelled(10, 10, seed=0)


# ----------------------------------------------------------------------------------------------- REPAIR
def test_repair_weights_remove_the_class_group_correlation():
    gen = torch.Generator().manual_seed(0)
    cells = torch.multinomial(torch.tensor([0.45, 0.05, 0.05, 0.45]), 1000, replacement=True, generator=gen)
    y, g = cells // 2, cells % 2                              # P(g = y) = 0.9, the 'sensitive attribute' bias
    w = bs.repair_weights(F.one_hot(g, 2).float(), y, steps=250)
    mass = torch.zeros(2, 2).index_put_((y, g), w, accumulate=True)
    p_y1_given_g = mass[1] / mass.sum(0)
    assert abs(float(p_y1_given_g[0] - p_y1_given_g[1])) < 0.1   # was 0.9 - 0.1 = 0.8 before reweighting
    keep = bs.repair_resample(w, generator=torch.Generator().manual_seed(0))
    kept = torch.bincount(cells[keep], minlength=4).float()
    assert kept[0] / (kept[0] + kept[2]) < 0.7                 # P(y = 0 | g = 0) much lower than 0.9


def test_repair_keeps_an_unbiased_set_almost_whole():
    g = torch.arange(400) % 10 == 0                            # a 10 % minority independent of the class
    y = (torch.arange(400) // 2) % 2
    w = bs.repair_weights(F.one_hot(g.long(), 2).float(), y, steps=100)
    assert w.min() > 0.9


# ----------------------------------------------------------------------------------------------- methods
def test_parse_method_covers_table1_and_rejects_unknown_names():
    specs = [bs.parse_method(m) for m in bs.TABLE1_METHODS]
    assert [(s.heuristic, s.lambd, s.repair) for s in specs] == [
        ("uniform", 0.0, False), ("uniform", 0.5, False), ("uniform", 1.0, False), ("bald", 0.0, False),
        ("bald", 0.5, False), ("bald", 1.0, False), ("balanced", 0.0, False), ("balanced", 0.5, False),
        (None, 0.0, True)]
    assert bs.method_label("bald+grad0.5") == "BALD + GRAD λ=0.5"
    with pytest.raises(ValueError, match="unknown method 'coreset'"):
        bs.parse_method("coreset")
    with pytest.raises(ValueError, match="unknown method 'bald\\+gard1'"):
        bs.parse_method("bald+gard1")
    with pytest.raises(ValueError, match=r"unknown protocol option\(s\) \['epoch'\]"):
        bs.grid(datasets="synbols-minority", methods="uniform", seeds=1, epoch=3)
    with pytest.raises(ValueError, match="init must be 'scratch' or 'pretrained'"):
        bs.BaldProtocol(init="imagenet")


# ----------------------------------------------------------------------------------------------- the loop
def _tiny_protocol(**kw):
    base = dict(backbone="small_cnn", dropout=0.5, init_labels=20, query_size=10, max_frac=0.3, mc_samples=3,
                epochs=1, batch_size=16, lr=0.01, grad_hidden=8, repair_epochs=1, repair_steps=20, eval_batch_size=64)
    return bs.BaldProtocol(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_splits():
    from fralkit.data import load_dataset

    return load_dataset("synbols-sensitive", seed=0, n=120, n_test=40, size=16)


@pytest.mark.parametrize("method", ["uniform", "balanced", "bald+grad1"])
def test_active_loop_labels_grow_by_the_query_size_and_never_repeat(tiny_splits, method):
    steps = bs.run_method(tiny_splits, method, seed=0, protocol=_tiny_protocol(), device="cpu")
    assert [s["labelled"] for s in steps] == [20, 30, 36]          # 30 % of 120, the last query trimmed
    assert [len(s["queried"]) for s in steps] == [10, 6, 0]
    initial, _ = bs.initial_labelled(120, 20, seed=0)
    queried = [i for s in steps for i in s["queried"]]
    assert len(set(queried)) == len(queried) and not set(queried) & set(initial.tolist())
    for s in steps:
        assert sum(map(sum, s["counts"])) == s["labelled"] == s["labelled_g0"] + s["labelled_g1"]
        assert s["labelled_rare"] == s["counts"][0][1] + s["counts"][1][0]   # red a and blue d
        assert 0.0 <= s["accuracy"] <= 1.0 and s["parity"] == pytest.approx(abs(s["acc_g0"] - s["acc_g1"]))
        assert s["bald_gap"] == pytest.approx(abs(s["bald_g0"] - s["bald_g1"]))
    if method == "balanced":
        g = tiny_splits.train.g
        for s in steps[:2]:
            counts = torch.bincount(g[torch.tensor(s["queried"])], minlength=2)
            assert counts[0] == counts[1]


def test_every_step_starts_from_the_same_weights(tiny_splits, monkeypatch):
    """The model is reset to one starting state before each retraining (paper §4)."""
    import fralkit.train

    seen = []
    real_fit = fralkit.train.fit

    def spy(model, data, **kw):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(model, data, **kw)

    monkeypatch.setattr(fralkit.train, "fit", spy)
    bs.run_method(tiny_splits, "uniform", seed=1, protocol=_tiny_protocol(), device="cpu")
    assert len(seen) == 3
    for state in seen[1:]:
        assert all(torch.equal(state[k], seen[0][k]) for k in state)
    # GRAD shares the base network's starting weights with standard training of the same seed
    train = tiny_splits.train
    _, plain = bs.make_start_model(train, _tiny_protocol(), seed=1, device="cpu")
    grad_model, wrapped = bs.make_start_model(train, _tiny_protocol(), seed=1, lambd=0.5, device="cpu")
    base_keys = [k for k in wrapped if k.startswith("base.")]
    assert base_keys and all(torch.equal(wrapped[k], plain[k[len("base."):]]) for k in base_keys)


def test_repair_run_trains_once_on_a_resampled_full_set(tiny_splits):
    steps = bs.run_method(tiny_splits, "repair", seed=0, protocol=_tiny_protocol(repair_steps=300), device="cpu")
    assert len(steps) == 1 and steps[0]["queried"] == []
    counts = torch.tensor(steps[0]["counts"]).float()               # rows: class a, d; columns: blue, red
    assert counts.sum() < 120
    assert counts[0, 0] / counts[0].sum() < 0.75                    # was 0.9: the class no longer follows the colour


def test_study_stores_one_record_per_run_and_skips_done_runs(tmp_path, monkeypatch):
    from fralkit.experiments import ResultStore

    store = ResultStore(tmp_path)
    from fralkit import studies

    configs = bs.grid(datasets="synbols-minority", methods="uniform,bald+grad0.5", seeds=[0], n=120, size=16,
                      **vars(_tiny_protocol()))
    records = studies.run(bs, configs, store=store, device="cpu")
    assert [r["config"]["method"] for r in records] == ["uniform", "bald+grad0.5"]
    assert records[0]["metrics"]["labelled"] == [20, 30, 36]
    assert len(store.records(bs.STUDY)) == 2

    def boom(*a, **k):
        raise AssertionError("a stored run was recomputed")

    monkeypatch.setattr(bs, "run_method", boom)
    again = studies.run(bs, configs, store=store, device="cpu")
    assert [r["key"] for r in again] == [r["key"] for r in records]
    frame = bs.steps_frame(again)
    assert len(frame) == 6 and set(frame["method"]) == {"uniform", "bald+grad0.5"}
    assert bs.step_queries(again, dataset="synbols-minority", method="uniform", seed=0, step=0) == \
        records[0]["metrics"]["queried"][0]


def _fake_record(dataset, method, seed, parity, accuracy):
    steps = {"labelled": [10, 20], "accuracy": [0.5, accuracy], "parity": [0.2, parity], "nll": [0.7, 0.5],
             "eq_odds": [0.1, 0.1], "eq_opp": [0.1, 0.1], "bald_gap": [0.01, 0.02], "queried": [[1], []]}
    return {"config": {"dataset": dataset, "method": method, "seed": seed, "backbone": "small_cnn", "size": 16, "n": 200,
                       "init": "scratch", "init_labels": 10, "query_size": 10, "max_frac": 0.1, "mc_samples": 3,
                       "epochs": 1}, "metrics": steps}


def test_table1_and_findings_are_rendered_from_records():
    recs = [_fake_record("synbols-sensitive", m, s, p + 0.01 * s, a)
            for m, p, a in [("uniform", 0.10, 0.85), ("bald", 0.04, 0.90), ("bald+grad1", 0.02, 0.89)] for s in (0, 1)]
    table = bs.table1(recs)
    assert list(table.index) == ["Uniform", "BALD", "BALD + GRAD λ=1"]
    assert table.loc["BALD", "sensitive attribute: predictive parity δ_A (%)"] == "4.50 ± 0.71"
    assert table.loc["Uniform", "sensitive attribute: accuracy (%)"] == "85.00 ± 0.00"
    text = bs.describe_findings(recs)
    assert "Finding 1 (BALD fairer than uniform, group unknown): this run agrees" in text
    assert "Finding 2 (BALD + GRAD fairest of the active-learning rows): this run agrees" in text
    worse = [_fake_record("synbols-sensitive", m, 0, p, 0.9) for m, p in [("uniform", 0.03), ("bald", 0.05), ("bald+grad1", 0.06)]]
    assert "this run does NOT agree" in bs.describe_findings(worse)
    assert bs.paper_table1().loc["BALD + GRAD λ=1", "sensitive attribute: predictive parity δ_A (%)"] == "1.27 ± 0.88"


# ----------------------------------------------------------------------------------------------- GRAD
def test_grad_loss_gives_the_trunk_grad_ly_minus_lambda_grad_la():
    """Eq. 2 as the study trains it: reversal factor 1 in GRADModel, lambda as fit's group_weight."""
    from fralkit.models import GRADModel, make_model
    from fralkit.train import grad_loss

    torch.manual_seed(0)
    model = GRADModel(make_model("small_cnn", 2, image_size=8, dropout=0.5), 2, lambd=1.0, hidden=8).eval()
    x = torch.rand(6, 3, 8, 8)
    y, g = torch.tensor([0, 1, 0, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 0, 1])
    lam = 0.5
    trunk = list(model.base.trunk.parameters())
    group = list(model.group_head.parameters())

    loss, _ = grad_loss(model, x, y, g, group_weight=lam)
    got = torch.autograd.grad(loss, trunk + group)

    z = model.features(x)
    l_y = F.cross_entropy(model.head(z), y)
    l_a = F.cross_entropy(model.group_head(z), g)            # no reversal: the plain group loss
    d_ly = torch.autograd.grad(l_y, trunk, retain_graph=True)
    d_la = torch.autograd.grad(l_a, trunk + group)
    for a, b, c in zip(got[:len(trunk)], d_ly, d_la[:len(trunk)]):
        torch.testing.assert_close(a, b - lam * c, atol=1e-6, rtol=1e-5)
    for a, c in zip(got[len(trunk):], d_la[len(trunk):]):
        torch.testing.assert_close(a, lam * c, atol=1e-6, rtol=1e-5)  # the group head learns the group


def test_grad_methods_train_with_the_group_loss_weight(tiny_splits, monkeypatch):
    import fralkit.train
    from fralkit.models import GRADModel

    calls = []
    real_fit = fralkit.train.fit

    def spy(model, data, **kw):
        calls.append((type(model), getattr(model, "lambd", None), kw["objective"], kw.get("group_weight"), kw.get("grad_clip")))
        return real_fit(model, data, **kw)

    monkeypatch.setattr(fralkit.train, "fit", spy)
    bs.run_method(tiny_splits, "uniform+grad0.5", seed=0, protocol=_tiny_protocol(max_frac=0.2), device="cpu")
    assert calls and all(c == (GRADModel, 1.0, "grad", 0.5, 5.0) for c in calls)
    calls.clear()
    bs.run_method(tiny_splits, "uniform", seed=0, protocol=_tiny_protocol(max_frac=0.2), device="cpu")
    assert calls and all(c[2] == "standard" and c[3] is None for c in calls)


@pytest.mark.gpu
def test_trunk_once_and_full_pass_agree_on_cuda_with_vgg_mc():
    from fralkit.models import make_model

    torch.manual_seed(0)
    model = make_model("vgg_mc", 2, image_size=64).cuda().eval().to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (96, 3, 64, 64), dtype=torch.uint8, device="cuda")
    fast = mc_probs(model, x, T=8, batch_size=32, fast=True, seed=0)
    full = mc_probs(model, x, T=8, batch_size=32, fast=False, seed=0)
    torch.testing.assert_close(fast, full, atol=2e-2, rtol=0)      # bf16 autocast on both paths
    assert fast.std(dim=2).mean() > 0
