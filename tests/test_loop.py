"""The active loop (fine-tune and reset policies, budgets checked up front) and the FRAL run on it (JIN Algorithm 1):
the shared initial model, result records, exact resumption, and a new strategy in one function."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import fralkit.active.loop as loop
from fralkit.active.loop import (POLICIES, FRALConfig, FRALInterrupted, check_budgets, evaluate_groups, fral_budget,
                                 initial_state, run_active_loop, run_fral)
from fralkit.active.strategies import STRATEGIES
from fralkit.data import DataSplits, GroupDataset, fral_split
from fralkit.experiments import ResultStore


class TinyConv(nn.Module):
    """A few hundred parameters, features/head split as in fralkit.models."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(16, classes)
        self.feature_dim = 16

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setattr(loop, "_make_model", lambda config, train: TinyConv(train.num_classes))


@pytest.fixture
def splits():
    gen = torch.Generator().manual_seed(0)
    n = 60

    def make(n, offset):
        y = (torch.arange(n) + offset) % 3
        g = ((torch.arange(n) + offset) // 3) % 2
        x = torch.randint(0, 256, (n, 3, 8, 8), generator=gen, dtype=torch.int64)
        x[:, 0] = (x[:, 0] // 3 + 60 * y[:, None, None]).clamp(0, 255)  # a learnable class signal
        x = (x // (1 + g[:, None, None, None])).to(torch.uint8)
        return GroupDataset(x, y, g, ["c0", "c1", "c2"], ["g0", "g1"], name="tiny")

    return DataSplits(make(n, 0), make(24, 1), make(24, 2))


def _config(**kw):
    base = dict(dataset="tiny", backbone="tiny", strategy="jin", seed=0, rounds=2, budget_frac=0.1, init_frac=0.25,
                init_epochs=1, finetune_epochs=1, batch_size=16, std_epochs=1, std_finetune_epochs=1,
                eval_batch_size=32, fairal_candidates=6, fairal_labels=2, fairal_val=8, fairal_batch=4, bald_samples=4)
    base.update(kw)
    return FRALConfig(**base)


def test_budget_is_two_percent_of_d():
    assert fral_budget(15_000, 0.02) == 300 and fral_budget(10, 0.02) == 1


def test_config_checks_its_values():
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        FRALConfig(strategy="nope")
    with pytest.raises(ValueError, match="budget_frac"):
        FRALConfig(budget_frac=2.0)


def test_record_key_ignores_other_strategies_options():
    a, b = _config(strategy="jin", fairal_candidates=6), _config(strategy="jin", fairal_candidates=99)
    assert a.record_config() == b.record_config()
    assert _config(strategy="fairal", fairal_candidates=6).record_config() != _config(strategy="fairal", fairal_candidates=99).record_config()
    assert FRALConfig(dataset="synbols-ham").metric_name == "f1" and FRALConfig(dataset="synbols-ham").use_oversampling
    # a speed setting is not part of the key: records made with and without cuDNN's autotuner are the same run
    assert _config(cudnn_benchmark=True).record_config() == _config().record_config()
    assert not _config().cudnn_benchmark


def test_evaluate_groups_worst_disp_avg(splits, tiny_model):
    model = TinyConv()
    rep = evaluate_groups(model, splits.test, metric="acc", steps=1)
    assert rep["std_worst"] == min(rep["std_group"]) and rep["rob_avg"] == pytest.approx(sum(rep["rob_group"]) / 2)
    assert rep["std_disp"] == pytest.approx(max(rep["std_group"]) - min(rep["std_group"]))
    mean = [(a + b) / 2 for a, b in zip(rep["std_group"], rep["rob_group"])]
    assert rep["worst_group"] == mean.index(min(mean))
    assert len(rep["class_f1_std"]) == 2 and len(rep["class_f1_std"][0]) == 3


def test_run_labels_budget_per_round_and_shares_the_initial_model(splits, tiny_model, tmp_path):
    store = ResultStore(tmp_path)
    rec = run_fral(_config(strategy="g-rand"), store=store, splits=splits, device="cpu")
    sel = rec["metrics"]["selected"]
    assert [len(s) for s in sel] == [6, 6] and len({i for s in sel for i in s}) == 12
    assert rec["metrics"]["labelled_n"] == [15, 21, 27]
    g = splits.train.g
    for r, s in enumerate(sel):
        assert (g[torch.tensor(s)] == rec["metrics"]["worst_group_est"][r]).all()
    assert len(rec["metrics"]["std_worst"]) == 3 and rec["timings"]["init_at_s"] > 0
    rec2 = run_fral(_config(strategy="rand"), store=store, splits=splits, device="cpu")
    assert rec2["metrics"]["std_worst"][0] == rec["metrics"]["std_worst"][0], "round 0 is the shared initial model"
    assert len(list((tmp_path / "jin" / "_cache").rglob("*.pt"))) == 1
    assert not list((tmp_path / "jin" / "_state").rglob("*.pt")), "state files are removed once the record exists"
    # a done run is loaded, not repeated
    assert run_fral(_config(strategy="rand"), store=store, splits=splits, device="cpu")["provenance"]["saved_at"] == rec2["provenance"]["saved_at"]


def test_weights_fingerprint_tells_models_apart():
    a = {"w": torch.ones(3, 2), "n": torch.tensor(7), "h": torch.zeros(2, dtype=torch.bfloat16)}
    same = {k: v.clone() for k, v in a.items()}
    other = {**same, "w": torch.ones(3, 2).index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(1.0 + 1e-6))}
    assert loop.weights_fingerprint(a) == loop.weights_fingerprint(same)
    assert loop.weights_fingerprint(a) != loop.weights_fingerprint(other)
    assert loop.weights_fingerprint(a) != loop.weights_fingerprint({"v": a["w"], "n": a["n"], "h": a["h"]})  # names count


def test_a_retrained_initial_model_warns_and_shows_in_the_records(splits, tiny_model, tmp_path, monkeypatch):
    """Weights lost between runs (a store copied without its _cache): the retrain warns, and records made from
    two different initial models of one seed are flagged as not paired."""
    from fralkit.studies import jin as jin_study

    store = ResultStore(tmp_path)
    first = run_fral(_config(strategy="rand"), store=store, splits=splits, device="cpu")
    assert first["init_fingerprint"] == store.records("jin", method="init-at")[0]["init_fingerprint"]
    for pt in (tmp_path / "jin" / "_cache").rglob("*.pt"):
        pt.unlink()
    real_fit = loop._fit
    monkeypatch.setattr(loop, "_fit", lambda model, *a, **kw: (real_fit(model, *a, **kw),
                                                               torch.nn.init.normal_(model.head.bias))[0])
    with pytest.warns(UserWarning, match="retraining it"):
        second = run_fral(_config(strategy="g-rand"), store=store, splits=splits, device="cpu")
    assert second["init_fingerprint"] != first["init_fingerprint"]
    assert jin_study.mixed_initial_models([first, second]) == {
        ("tiny", "tiny", 0): sorted([first["init_fingerprint"], second["init_fingerprint"]])}
    assert jin_study.mixed_initial_models([first]) == {}
    assert "seed(s) [0] started from different initial models" in jin_study.describe_claims([first, second])
    assert list(jin_study.provenance([first, second])["initial model"]) == [first["init_fingerprint"],
                                                                             second["init_fingerprint"]]


@pytest.mark.parametrize("strategy", ["jin", "badge"])
def test_resume_after_a_kill_gives_identical_indices_and_metrics(strategy, splits, tiny_model, tmp_path):
    cfg = _config(strategy=strategy, rounds=3)
    full = run_fral(cfg, store=ResultStore(tmp_path / "a"), splits=splits, device="cpu")

    def kill_after_first_round(k, state):
        if k == 1:
            raise FRALInterrupted("simulated kill")

    store_b = ResultStore(tmp_path / "b")
    with pytest.raises(FRALInterrupted):
        run_fral(cfg, store=store_b, splits=splits, device="cpu", callback=kill_after_first_round)
    saved = list((tmp_path / "b" / "jin" / "_state").rglob("*.pt"))
    assert len(saved) == 1 and torch.load(saved[0], weights_only=True)["round"] == 1
    resumed = run_fral(cfg, store=store_b, splits=splits, device="cpu")
    assert resumed["metrics"]["selected"] == full["metrics"]["selected"]
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(full["metrics"], sort_keys=True)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_policy_decides_what_each_round_trains_from(policy):
    """'reset' loads the starting weights before every training (BALD+GRAD, Branchaud-Charron et al.); 'finetune'
    keeps training (FRAL)."""
    model = TinyConv()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def train(k, state):
        seen.append(float(model.head.bias[0].detach()))
        with torch.no_grad():
            model.head.bias += 1.0

    budgets = [5, 5, 3]
    records = run_active_loop(model, initial_state(torch.arange(10), torch.arange(10, 48)), policy=policy, start=start,
                              budgets=budgets, select=lambda k, state: state["pool"][:budgets[k - 1]], train=train,
                              evaluate=lambda k, state: {"n": len(state["labelled"])})
    b0 = float(start["head.bias"][0])
    assert seen == pytest.approx([b0] * 4 if policy == "reset" else [b0 + k for k in range(4)], abs=1e-6)
    assert [r["round"] for r in records] == [0, 1, 2, 3] and [r["labelled_n"] for r in records] == [10, 15, 20, 23]
    assert [r["n"] for r in records] == [10, 15, 20, 23]
    assert [r["selected"].tolist() for r in records[1:]] == [list(range(10, 15)), list(range(15, 20)), [20, 21, 22]]
    assert all(r["train_s"] >= 0 and r["eval_s"] >= 0 for r in records) and "select_s" in records[1]
    with pytest.raises(ValueError, match=r"unknown policy 'warm'; valid: \['finetune', 'reset'\]"):
        run_active_loop(model, initial_state(torch.arange(2), torch.arange(2, 4)), policy="warm", budgets=[1],
                        select=None, train=None, evaluate=None)


def test_budgets_are_checked_against_every_rounds_pool_before_any_work():
    check_budgets([6, 6, 6], 18)
    with pytest.raises(ValueError, match=r"budget B=6 of round 3 is larger than that round's pool: 2 unlabelled "
                                         r"samples \(14 before round 1\)"):
        check_budgets([6, 6, 6], 14)
    with pytest.raises(ValueError, match="budget of round 2 must be a positive integer"):
        check_budgets([6, 0], 14)

    def never(*a):
        raise AssertionError("the loop worked before checking its budgets")

    with pytest.raises(ValueError, match="round 2 is larger than that round's pool: 3 unlabelled"):
        run_active_loop(TinyConv(), initial_state(torch.arange(5), torch.arange(5, 10)), policy="reset",
                        start=TinyConv().state_dict(), budgets=[2, 4], select=never, train=never, evaluate=never)


def test_a_budget_larger_than_a_rounds_pool_fails_before_the_initial_model(splits, tiny_model, tmp_path, monkeypatch):
    """Issue 18: 60 images, 15 initial labels, B = 18: round 3 would find 9 unlabelled samples."""
    def never(*a, **kw):
        raise AssertionError("trained before the budget check")

    monkeypatch.setattr(loop, "_fit", never)
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match=r"budget B=18 of round 3 is larger than that round's pool: 9 unlabelled "
                                         r"samples \(45 before round 1\)"):
        run_fral(_config(strategy="rand", rounds=3, budget_frac=0.3), store=store, splits=splits, device="cpu")
    assert not list(tmp_path.rglob("*.pt")) and not store.records("jin")


def test_a_new_strategy_is_one_function_and_one_registry_line(splits, tiny_model, tmp_path, monkeypatch):
    def select_lowest(ctx, budget):
        """Toy strategy: the lowest pool indices."""
        return ctx.pool.sort().values[:budget]

    monkeypatch.setitem(STRATEGIES, "lowest", select_lowest)
    rec = run_fral(_config(strategy="lowest"), store=ResultStore(tmp_path), splits=splits, device="cpu")
    _, pool = fral_split(splits.train, init_frac=0.25, seed=0)
    assert rec["metrics"]["selected"] == [pool[:6].tolist(), pool[6:12].tolist()]
    assert rec["config"]["method"] == "lowest" and len(rec["metrics"]["std_worst"]) == 3


def test_a_state_file_of_the_earlier_layout_resumes(splits, tiny_model, tmp_path):
    """State files written before the per-round records (lists of tests, vals, selected, timings) still resume."""
    cfg = _config(strategy="rand", rounds=2)
    full = run_fral(cfg, store=ResultStore(tmp_path / "a"), splits=splits, device="cpu")

    def kill(k, state):
        raise FRALInterrupted("simulated kill")

    store_b = ResultStore(tmp_path / "b")
    with pytest.raises(FRALInterrupted):
        run_fral(cfg, store=store_b, splits=splits, device="cpu", callback=kill)
    path = next((tmp_path / "b" / "jin" / "_state").rglob("*.pt"))
    state = torch.load(path, weights_only=True)
    recs = state.pop("records")
    state.update(selected=[r["selected"] for r in recs[1:]], tests=[r["test"] for r in recs],
                 vals=[r["val"] for r in recs],
                 timings={"select_s": [r["select_s"] for r in recs[1:]], "finetune_s": [r["train_s"] for r in recs[1:]],
                          "eval_s": [r["eval_s"] for r in recs[1:]], "std_model_s": [r["std_model_s"] for r in recs[1:]],
                          "extra": [r["extra"] for r in recs[1:]]})
    torch.save(state, path)
    resumed = run_fral(cfg, store=store_b, splits=splits, device="cpu")
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(full["metrics"], sort_keys=True)


def _record(strategy, seed, final, *, init=(0.5, 0.1, 0.55, 0.3, 0.1, 0.35), select_s=1.0, init_s=10.0, metric="acc"):
    keys = ("std_worst", "std_disp", "std_avg", "rob_worst", "rob_disp", "rob_avg")
    metrics = {k: [a, b] for k, a, b in zip(keys, init, final)}
    metrics.update(labelled_n=[10, 12], val_worst_group=[1, 1], labelled_counts=[[[3, 2], [3, 2]], [[3, 3], [3, 3]]],
                   class_f1_std=[[[0.5, 0.5], [0.4, 0.2]]] * 2, class_f1_rob=[[[0.3, 0.3], [0.2, 0.1]]] * 2)
    return {"config": {"dataset": "toy", "backbone": "tiny", "method": strategy, "seed": seed, "metric": metric},
            "metrics": metrics, "timings": {"select_s": select_s, "init_at_s": init_s}, "classes": ["c0", "c1"]}


def test_tables_and_claims_render_from_records():
    from fralkit.studies import jin as jin_study

    recs = [_record("rand", s, (0.60, 0.1, 0.65, 0.40, 0.1, 0.45), select_s=0.0) for s in (0, 1)]
    recs += [_record("fairal", s, (0.62, 0.1, 0.66, 0.41, 0.1, 0.45), select_s=30.0) for s in (0, 1)]
    recs += [_record("jin", s, (0.70 + 0.02 * s, 0.05, 0.72, 0.50, 0.05, 0.52), select_s=0.5) for s in (0, 1)]
    recs += [_record("jin-p", 0, (0.66, 0.05, 0.7, 0.42, 0.05, 0.5))]
    main = jin_study.table_main(recs)
    assert list(main.index) == ["Init. AT", "RAND", "FairAL", "JIN"]
    assert main.loc["JIN", "Std Acc Worst ↑"] == "71.00 ± 1.41" and main.loc["Init. AT", "Rob Acc Avg ↑"] == "35.00 ± 0.00"
    cost = jin_study.table_cost(recs)
    assert cost.loc["JIN", "share of Init. AT (%)"] == 5.0 and cost.loc["Init. AT", "seconds"] == 10.0
    assert list(jin_study.table_ablation(recs).index) == ["P", "P+R"]
    assert jin_study.table_g_ent(recs) is None  # needs two of ENT / G-ENT / JIN
    with_ent = recs + [_record("ent", 0, (0.68, 0.05, 0.7, 0.45, 0.05, 0.5))]
    assert jin_study.table_g_ent(with_ent) is None  # ENT and JIN without G-ENT: no Table 6 (Table 7's strategies)
    g_ent = jin_study.table_g_ent(with_ent + [_record("g-ent", 0, (0.69, 0.05, 0.7, 0.45, 0.05, 0.5))])
    assert list(g_ent.index) == ["ENT", "G-ENT", "JIN"]
    classes = jin_study.table_classes(recs)
    assert classes.loc["JIN", "c0 freq %"] == 50.0 and classes.loc["Init. AT", "c0 freq %"] == 50.0
    text = jin_study.describe_claims(recs)
    assert "Claim 1, standard accuracy: reproduced" in text and "costliest selection is FairAL" in text
    assert "5.0 % of the initial adversarial training" in text and ": met" in text


def test_missing_lists_unstored_runs_and_provenance_names_each_record(tmp_path):
    """A study split over calls: ``missing`` is what is still to run; the records table says where each came from."""
    from dataclasses import asdict

    from fralkit import studies as fk_studies
    from fralkit.studies import jin as jin_study
    from fralkit.experiments import ResultStore

    store = ResultStore(tmp_path)
    shared = {k: v for k, v in asdict(_config()).items() if k not in ("dataset", "strategy", "seed")}
    configs = jin_study.study_configs("tiny", "rand,jin", [1, 2], **shared)
    # computed in RUN_ORDER (JIN first, so a cut run has tested the headline claims)
    assert [(c.strategy, c.seed) for c in configs] == [("jin", 1), ("rand", 1), ("jin", 2), ("rand", 2)]
    store.save(configs[0].record_config(), {"x": 1}, device="cpu", git_commit="abc123")
    store.save(configs[3].record_config(), {"x": 2}, device="cpu", git_commit="def456")
    assert [(c.strategy, c.seed) for c in fk_studies.missing(jin_study, configs, store)] == [("rand", 1), ("jin", 2)]
    recs = fk_studies.collect(jin_study, configs, store)
    table = jin_study.provenance(recs)
    assert list(table.index) == ["rand", "jin"]  # table order (RAND before JIN), not storage order
    assert list(table["seed"]) == [2, 1] and list(table["git_commit"]) == ["def456", "abc123"]
    order = [c.strategy for c in jin_study.study_configs("tiny", "all,jin+fairat", 1, **shared)]
    assert order[:3] == ["jin", "rand", "ent"] and order[-1] == "jin" and len(order) == 14  # jin+fairat last
    assert jin_study.provenance([]).empty


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["jin", "badge", "bald", "fairal", "opt"])
def test_run_on_cuda(strategy, splits, tiny_model, tmp_path):
    rec = run_fral(_config(strategy=strategy), store=ResultStore(tmp_path), splits=splits, device="cuda")
    sel = rec["metrics"]["selected"]
    assert [len(s) for s in sel] == [6, 6] and len({i for s in sel for i in s}) == 12
    assert "NVIDIA" in rec["provenance"]["device"] or "cuda" in rec["provenance"]["device"].lower()


def test_preset_knobs_enter_the_keys_only_when_set(monkeypatch):
    """A calibrated preset (notebook 01's knobs) keys the data, the initial model and the record; without knobs every
    key stays what it was, so existing result stores keep loading."""
    import fralkit.active.loop as loop_mod

    plain = FRALConfig(dataset="synbols-utk", strategy="rand")
    assert "knobs" not in plain.record_config() and "knobs" not in plain.init_key()
    tuned = FRALConfig(dataset="synbols-utk", strategy="rand", knobs={"hard_contrast": 40.0})
    assert tuned.record_config()["knobs"] == {"hard_contrast": 40.0} and tuned.init_key()["knobs"] == {"hard_contrast": 40.0}
    assert tuned.record_config() != plain.record_config()
    monkeypatch.setitem(loop_mod.CALIBRATED, "synbols-utk", {"easy_contrast": 60.0})
    assert FRALConfig(dataset="synbols-utk", knobs="calibrated").knobs == {"easy_contrast": 60.0}
    monkeypatch.delitem(loop_mod.CALIBRATED, "synbols-cinic")
    assert FRALConfig(dataset="synbols-cinic", knobs="calibrated").knobs is None  # none calibrated: as defined
    with pytest.raises(ValueError, match="knobs must be"):
        FRALConfig(knobs=3)
    seen = {}
    monkeypatch.setattr(loop_mod, "load_dataset", lambda name, **kw: seen.update(kw) or None)
    loop_mod.load_fral_data(FRALConfig(dataset="synbols-utk", n=50, knobs={"hard_contrast": 40.0}))
    assert seen["knobs"] == {"hard_contrast": 40.0} and seen["n"] == 50


def test_a_fixed_data_seed_gives_every_seed_one_data_set_and_keys_only_when_set():
    """``data_seed``: the seeds of a run share one data set (as a real data set is one) while the labelled set still
    follows ``seed``; None keeps the data per seed and every earlier key."""
    plain = FRALConfig(dataset="synbols-utk", strategy="rand", seed=1)
    assert "data_seed" not in plain.record_config() and "data_seed" not in plain.init_key()
    fixed = [FRALConfig(dataset="synbols-utk", strategy="rand", seed=s, n=60, size=16, data_seed=0) for s in (0, 1)]
    assert all(c.record_config()["data_seed"] == 0 and c.init_key()["data_seed"] == 0 for c in fixed)
    assert fixed[0].data_key() != fixed[1].data_key()  # the seed still keys the run
    a, b = (loop.load_fral_data(c) for c in fixed)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)  # one data set
    own = loop.load_fral_data(FRALConfig(dataset="synbols-utk", strategy="rand", seed=1, n=60, size=16))
    assert not torch.equal(own.train.x, b.train.x)  # without data_seed, seed 1 renders its own
    same_as_seed0 = loop.load_fral_data(FRALConfig(dataset="synbols-utk", strategy="rand", seed=0, n=60, size=16))
    assert torch.equal(same_as_seed0.train.x, a.train.x)  # data_seed 0 is the data of seed 0
    lab0, _ = fral_split(a.train, init_frac=0.2, seed=fixed[0].seed)
    lab1, _ = fral_split(b.train, init_frac=0.2, seed=fixed[1].seed)
    assert len(lab0) == len(lab1) == 12 and sorted(lab0) != sorted(lab1)  # the labelled set follows the seed
    for bad in (1.5, True, "0"):
        with pytest.raises((ValueError, TypeError)):
            FRALConfig(data_seed=bad)


def test_init_min_steps_sets_the_initial_models_epochs_and_keys_only_when_set(splits, tiny_model, tmp_path, monkeypatch):
    """``init_min_steps``: epochs = max(init_epochs, ceil(steps / ceil(|D_L| / batch))), by hand for the gpu profile's
    390 steps at batch 256: 1,040 labels (5 batches) -> 78 epochs, 3,080 (13) -> 30, 6,000 (24) -> 30."""
    cfg = FRALConfig(dataset="synbols-ham", init_epochs=30, batch_size=256, init_min_steps=390)
    assert [cfg.init_epochs_for(n) for n in (1040, 3080, 6000, 1)] == [78, 30, 30, 390]
    assert FRALConfig(init_epochs=30, batch_size=256).init_epochs_for(1040) == 30  # off: the epochs as given
    plain = FRALConfig(dataset="synbols-ham")
    assert "init_min_steps" not in plain.init_key() and "init_min_steps" not in plain.record_config()
    assert cfg.init_key()["init_min_steps"] == 390 and cfg.record_config()["init_min_steps"] == 390
    with pytest.raises(ValueError, match="init_min_steps"):
        FRALConfig(init_min_steps=-1)
    seen = []
    real_fit = loop._fit
    monkeypatch.setattr(loop, "_fit", lambda model, train, idx, **kw: (seen.append((len(idx), kw["epochs"])),
                                                                       real_fit(model, train, idx, **kw))[1])
    config = _config(strategy="rand", init_epochs=1, batch_size=16, init_min_steps=9)
    loop.initial_model(config, splits, store=ResultStore(tmp_path), device="cpu")
    n_lab = seen[0][0]
    assert seen[0][1] == max(1, -(-9 // -(-n_lab // 16)))  # the epochs that reach 9 steps at batch 16


def test_claims_table_pairs_seeds_and_reads_the_papers_numbers():
    from fralkit.studies import jin as jin_study

    def rec(strategy, seed, std, rob, select_s=1.0):
        r = _record(strategy, seed, (std, 0.05, std, rob, 0.05, rob), select_s=select_s, init_s=100.0)
        r["config"]["dataset"] = "synbols-utk"
        return r

    recs = []
    for s, base in enumerate((0.60, 0.64, 0.62)):  # seeds differ by a lot; paired differences do not
        recs += [rec("rand", s, base, 0.40), rec("jin", s, base + 0.05, 0.41 + 0.01 * s, select_s=20.0),
                 rec("g-rand", s, base + 0.01, 0.40), rec("fairal", s, base + 0.04, 0.42, select_s=300.0)]
    t = jin_study.claims_table(recs).set_index("claim")
    best = t.loc["JIN has the best standard Worst (vs the best other, FairAL)"]
    assert best["verdict"] == "agrees" and best["ours (points)"] == "+1.00 +- 0.00"  # 5 - 4 points on every seed
    assert best["paper (points)"] == "+0.33"  # 75.07 - 74.74 (Table 1, UTKFace)
    assert t.loc["JIN beats G-RAND on standard Worst by > 2 std", "paper (points)"] == "+2.70"
    rob = t.loc["JIN has the best robust Worst (vs the best other, FairAL)"]
    assert rob["verdict"] == "inconclusive" and rob["ours (points)"] == "+0.00 +- 1.00"  # -1, 0, +1 points
    assert t.loc["FairAL is the costliest selection", "verdict"] == "agrees"
    share = t.loc["JIN's selection below 30 % of the initial adversarial training (target <= 10 %)"]
    assert share["ours (points)"] == "20.0 %" and share["verdict"] == "agrees, target NOT met"
    assert "MinMax" not in " ".join(t.index)  # a strategy that did not run gives no row
    one = jin_study.claims_table([r for r in recs if r["config"]["seed"] == 0]).set_index("claim")
    assert one.loc["JIN beats FairAL on standard Worst", "verdict"] == "inconclusive (1 seed)"


def test_fairat_fine_tuning_and_fairness_in_robustness_are_keyed_only_when_set(tiny_model, splits, tmp_path, monkeypatch):
    from fralkit.studies import jin as jin_study

    store = ResultStore(tmp_path)
    plain = _config(strategy="rand")
    assert "finetune_objective" not in plain.record_config() and "vf_n" not in plain.record_config()
    seen = []
    real_fit = loop._fit
    monkeypatch.setattr(loop, "_fit", lambda *a, **kw: seen.append(kw["objective"]) or real_fit(*a, **kw))
    cross = _config(strategy="rand", finetune_objective="fairat", vf_n=12)
    rec = run_fral(cross, store=store, splits=splits, device="cpu")
    assert rec["config"]["method"] == "rand+fairat" and rec["config"]["finetune_objective"] == "fairat"
    assert seen == ["trades", "fairat", "fairat"]  # the shared initial model, then every round's fine-tuning
    m = rec["metrics"]
    assert m["vf_n"] == 12 and len(m["rob_p"]) == 2 and m["v_f"] == pytest.approx(np.var(m["rob_p"]))
    assert m["rob_f"] == pytest.approx(np.mean(m["rob_p"]))
    assert 1 <= m["vf_mean_iters"] <= m["vf_max_iters"] <= 50  # DeepFool's iterations beside its seconds
    with pytest.raises(ValueError, match="finetune_objective"):
        _config(finetune_objective="pgd")
    with pytest.raises(ValueError, match="vf_n"):
        _config(vf_n=-1)
    configs = jin_study.study_configs("tiny", "rand,jin+fairat", 1)
    assert [(c.strategy, c.finetune_objective, c.label) for c in configs] == [("rand", "trades", "rand"),
                                                                              ("jin", "fairat", "jin+fairat")]
    with pytest.raises(ValueError, match="fine-tuning objective"):
        jin_study.study_configs("tiny", "jin+madry", 1)
    table = jin_study.cross_table([rec])
    assert table.iloc[0]["strategy"] == "rand+fairat" and table.iloc[0]["best Rob Worst"] == "*"
    assert "the same strategy" in jin_study.describe_cross([rec])
    assert jin_study.cross_table([{**rec, "metrics": {k: v for k, v in m.items() if k != "v_f"}}]) is None


def test_table7_runs_resnet18_on_the_utkface_like_data_set_in_parts_and_tables_of_their_own():
    """JIN Table 7: the strategies of ``table7`` again with ResNet-18 on the UTKFace-like data set, in parts of
    their own (their initial model differs), and tables, claims and figures that never mix them with MobileNetV2's."""
    from fralkit.studies import jin as jin_study

    configs = jin_study.grid(dataset="synbols-utk,synbols-ham", strategies="rand,jin", seeds=2, table7="rand,fairal",
                             backbone="mobilenetv2")
    main = [(c.dataset, c.strategy, c.seed) for c in configs if c.backbone == "mobilenetv2"]
    extra = [(c.dataset, c.strategy, c.seed) for c in configs if c.backbone == "resnet18"]
    assert len(main) == 8 and extra == [("synbols-utk", s, seed) for seed in (0, 1) for s in ("rand", "fairal")]
    parts = jin_study.parts(configs)
    assert len(parts) == 6 and all(len({(c.dataset, c.backbone, c.seed) for c in p}) == 1 for p in parts)
    assert jin_study.grid(dataset="synbols-ham", strategies="rand", seeds=1, table7="jin")[-1].backbone != "resnet18"
    params = {"dataset": "synbols-utk,synbols-ham", "seeds": 2, "strategies": "rand,jin", "table7": "rand,fairal"}
    overrides = jin_study.part_parameters(params)
    assert overrides[0] == {"dataset": "synbols-utk", "seeds": [0], "table7": ""}
    assert overrides[-1] == {"dataset": "synbols-utk", "seeds": [1], "strategies": "", "table7": "rand,fairal"}
    # each part's own grid is exactly that part
    for ov in overrides:
        sub = jin_study.grid(**{**params, "backbone": "mobilenetv2", **ov})
        assert len(jin_study.parts(sub)) == 1 and all(c in configs for c in sub)
    assert len(jin_study.part_parameters({**params, "table7": ""})) == 4
    assert jin_study.part_parameters({**params, "table7": ""})[0] == {"dataset": "synbols-utk", "seeds": [0]}
    from fralkit.reproduce import part_name
    names = [part_name(ov) for ov in overrides]  # every part its own log folder
    assert len(set(names)) == len(names) and names[0] == "synbols-utk-s0"

    def rec(strategy, seed, std, backbone):
        r = _record(strategy, seed, (std, 0.05, std, std - 0.2, 0.05, std - 0.2))
        r["config"].update(dataset="synbols-utk", backbone=backbone)
        return r

    recs = [rec(s, seed, v + 0.01 * seed, b) for seed in (0, 1) for s, v, b in
            (("rand", 0.6, "mobilenetv2"), ("jin", 0.7, "mobilenetv2"), ("rand", 0.5, "resnet18"), ("jin", 0.55, "resnet18"))]
    assert list(jin_study.by_dataset(recs)) == ["synbols-utk", "synbols-utk-resnet18"]
    tabs = jin_study.tables(recs, save=False)
    assert "table1" in tabs["synbols-utk"] and "table7" in tabs["synbols-utk-resnet18"]
    assert tabs["synbols-utk-resnet18"]["table7"].loc["JIN", "Std Acc Worst ↑"] == "55.50 ± 0.71"
    t = jin_study.claims_table(recs)
    best = t[t["claim"].str.startswith("JIN has the best standard")].set_index("backbone")
    assert best.loc["mobilenetv2", "ours (points)"] == "+10.00 +- 0.00" and best.loc["mobilenetv2", "paper (points)"] == "+4.50"
    assert best.loc["resnet18", "ours (points)"] == "+5.00 +- 0.00" and best.loc["resnet18", "paper (points)"] == "+4.52"
    for r in recs:  # the cross-paper sentence: one per backbone; RAND has the lower V_f with MobileNetV2 only
        r["metrics"].update(v_f=0.01 if (r["config"]["method"] == "rand") == (r["config"]["backbone"] == "mobilenetv2")
                            else 0.02, rob_f=1.0)
    lines = jin_study.describe_cross(recs).splitlines()
    assert lines == ["- synbols-utk (mobilenetv2): the best robust Worst is JIN's; the lowest V_f(P) is RAND's: "
                     "not the same strategy.",
                     "- synbols-utk (resnet18): the best robust Worst is JIN's; the lowest V_f(P) is JIN's: the same strategy."]


def test_fairness_in_robustness_does_not_depend_on_deepfools_chunk(splits):
    """The cross-paper columns' DeepFool runs in chunks (smaller on CUDA, for memory): each image's iteration is its
    own, so any chunk gives the same V_f(P), Rob(f) and per-group Rob(P)."""
    from fralkit.active.loop import fairness_in_robustness

    torch.manual_seed(0)
    model = TinyConv(3)
    test = splits.test
    whole = fairness_in_robustness(model, test, 24, seed=3)
    chunked = fairness_in_robustness(model, test, 24, seed=3, batch_size=5)
    assert whole["vf_n"] == chunked["vf_n"] == 24 and whole["vf_accuracy"] > 0  # DeepFool ran on some points
    for key in ("v_f", "rob_f", "vf_accuracy"):
        assert chunked[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-7)
    assert chunked["rob_p"] == pytest.approx(whole["rob_p"], rel=1e-5, abs=1e-7)
