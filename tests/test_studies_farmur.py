"""FARMUR: the loss (Eqs. 9-11), Algorithm 1's retraining, the row data, the study records and tables."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.data import load_dataset
from fralkit.studies import farmur
from fralkit.experiments import ResultStore


def _tiny_model(num_classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, num_classes))


TRADES = dict(eps=8 / 255, alpha=2 / 255, steps=2, beta=6.0)


def test_farmur_loss_equals_trades_on_vulnerable_plus_ce_on_robust():
    from fralkit.train import trades_loss

    model = _tiny_model()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(10, 3, 8, 8, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    vul = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
    torch.manual_seed(5)
    loss, parts = farmur.farmur_loss(model, x, y, vul, **TRADES)
    torch.manual_seed(5)
    l_trades = trades_loss(model, x[vul], y[vul], **TRADES)[0]
    l_ce = F.cross_entropy(model(x[~vul]), y[~vul])
    torch.testing.assert_close(loss, l_trades + l_ce)
    assert float(parts["trades"]) == pytest.approx(float(l_trades.detach()))
    assert float(parts["natural"]) == pytest.approx(float(l_ce.detach()))
    assert (parts["n_vul"], parts["n_rob"]) == (4, 6)
    assert model.training  # trades_loss restores train mode after its eval-mode attack


def test_farmur_loss_with_one_empty_side():
    from fralkit.train import trades_loss

    model = _tiny_model()
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 3, (6,))
    loss, parts = farmur.farmur_loss(model, x, y, torch.zeros(6, dtype=torch.bool), **TRADES)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y))
    assert float(parts["trades"]) == 0.0
    torch.manual_seed(2)
    loss, _ = farmur.farmur_loss(model, x, y, torch.ones(6, dtype=torch.bool), **TRADES)
    torch.manual_seed(2)
    torch.testing.assert_close(loss, trades_loss(model, x, y, **TRADES)[0])
    with pytest.raises(ValueError, match="mask"):
        farmur.farmur_loss(model, x, y, torch.ones(5, dtype=torch.bool), **TRADES)


@pytest.mark.parametrize("pairing", ["split", "cycle"])
def test_retrain_updates_the_model_and_records_each_epoch(tiny_groups, pairing):
    model = _tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    hist = farmur.farmur_retrain(model, tiny_groups, vulnerable=[1], epochs=2, batch_size=16, lr=0.05,
                                 pairing=pairing, device="cpu", **TRADES)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    assert all(t > 0 for t in hist["trades"]) and all(c > 0 for c in hist["natural"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_retrain_rejects_bad_ids_and_pairing_and_warns_on_no_vulnerable(tiny_groups):
    with pytest.raises(ValueError, match="out of range"):
        farmur.farmur_retrain(_tiny_model(), tiny_groups, vulnerable=[2], epochs=1, device="cpu")
    with pytest.raises(ValueError, match="pairing"):
        farmur.farmur_retrain(_tiny_model(), tiny_groups, vulnerable=[1], epochs=1, pairing="zip", device="cpu")
    with pytest.warns(UserWarning, match="only the natural loss"):
        hist = farmur.farmur_retrain(_tiny_model(), tiny_groups, vulnerable=[], epochs=1, batch_size=24, device="cpu",
                                     **TRADES)
    assert hist["trades"] == [0.0]


def test_mnist_like_data_is_grey_digits_partitioned_by_class():
    splits = load_dataset("synbols-mnist", n=40, n_test=20, size=12, seed=0)
    tr = splits.train
    assert tuple(tr.x.shape) == (40, 1, 12, 12) and tr.classes == list("0123456789")
    assert torch.equal(tr.g, tr.y) and tr.groups == tr.classes
    assert torch.bincount(tr.y, minlength=10).tolist() == [4] * 10
    again = load_dataset("synbols-mnist", n=40, n_test=20, size=12, seed=0)
    assert torch.equal(again.train.x, tr.x)


def test_row_data_uses_the_rows_partition():
    cifar = farmur.load_row_data("resnet18-cifar10", n=40, n_test=20, size=16)
    assert torch.equal(cifar.test.g, cifar.test.y) and cifar.test.num_groups == 10
    utk = farmur.load_row_data("utkclassifier-utkface", n=60, n_test=30, size=16)
    assert utk.train.num_groups == 4 and utk.train.num_classes == 5 and not torch.equal(utk.train.g, utk.train.y)
    with pytest.raises(ValueError, match="valid"):
        farmur.load_row_data("vgg-svhn")


def test_row_ambiguity_caps_the_built_in_data_and_keys_the_records_only_when_set(tmp_path):
    plain = load_dataset("synbols-mnist", n=400, n_test=20, size=12, seed=0)
    amb = load_dataset("synbols-mnist", n=400, n_test=20, size=12, seed=0, ambiguity=0.3)
    assert torch.equal(amb.train.y, plain.train.y)
    share = (amb.train.x != plain.train.x).flatten(1).any(1).float().mean().item()
    assert share == pytest.approx(0.3 * 0.9, abs=0.07)  # a flipped digit shows one of 10 classes: 9 in 10 differ
    utk = farmur.load_row_data("utkclassifier-utkface", n=60, n_test=30, size=16, ambiguity=0.2)
    assert utk.train.meta["knobs"] == {"ambiguity": 0.2}
    kw = dict(seed=0, backbone="small_cnn", n=60, n_test=30, size=12, keys_only=True)
    assert "ambiguity" not in farmur.run_farmur_row("lenet5-mnist", ambiguity=0.0, **kw)[0]
    assert farmur.run_farmur_row("lenet5-mnist", ambiguity=0.01, **kw)[0]["ambiguity"] == 0.01
    assert farmur.run_farmur_row("lenet5-mnist", data_root=str(tmp_path), **kw)[0].get("ambiguity") is None


def test_natural_sweep_measures_each_value_and_picks_the_nearest(tmp_path):
    store = ResultStore(tmp_path)
    out = farmur.natural_sweep("lenet5-mnist", [0.0, 0.5], store=store, device="cpu", backbone="small_cnn", n=60,
                               n_test=30, size=12, natural_epochs=1, batch_size=32, df_max_iter=5)
    assert [v["ambiguity"] for v in out["values"]] == [0.0, 0.5] and out["target"] == 99.08
    assert out["best"] == min(out["values"], key=lambda v: abs(v["accuracy"] - 99.08))
    with pytest.raises(ValueError, match="at least one"):
        farmur.natural_sweep("lenet5-mnist", [], store=store)


def test_parse_rows():
    assert farmur.parse_rows("lenet5-mnist, resnet18-cifar10:small_cnn") == [("lenet5-mnist", None),
                                                                            ("resnet18-cifar10", "small_cnn")]
    with pytest.raises(ValueError, match="valid"):
        farmur.parse_rows("lenet5-mnist,mnist")
    with pytest.raises(ValueError, match="no FARMUR rows"):
        farmur.parse_rows(" , ")


def _record(row, method, seed, acc, rob, v, d=None):
    d = d if d is not None else [0.2, 0.4, None, 0.6]
    return {"config": {"study": "farmur", "row": row, "dataset": "synbols-x", "backbone": farmur.ROWS[row].backbone,
                       "method": method, "seed": seed},
            "metrics": {"accuracy": acc, "rob_f": rob, "v_f": v, "rob_p": [rob, rob], "vulnerable": [0], "n_eval": 4},
            "distances": {"d": d, "correct": [1, 1, 0, 1], "partition": [0, 1, 0, 1]}, "groups": ["a", "b"]}


def test_table1_and_ratios_from_records():
    recs = []
    for s, jitter in ((0, 0.0), (1, 0.002)):
        recs += [_record("utkclassifier-utkface", "natural", s, 0.70, 0.30, 0.010 + jitter),
                 _record("utkclassifier-utkface", "trades", s, 0.65, 1.20, 0.040 + jitter),
                 _record("utkclassifier-utkface", "farmur", s, 0.66, 1.08, 0.030 + jitter)]
    table = farmur.table1(recs, with_paper=True)
    assert list(table.index)[0] == "UTKClassifier / synbols-x" and table.iloc[0]["n seeds"] == "2"
    assert table.iloc[0]["Accuracy (%) Natural"].startswith("70.00 ±")
    assert table.iloc[1]["V_f(P) Adversarial"] == "0.073"  # the paper's row
    ratios = farmur.paper_ratios(recs).iloc[0]
    assert ratios["AT × V_f (run)"] == pytest.approx(0.041 / 0.011, abs=1e-3)
    assert ratios["FARMUR V_f cut vs AT % (run)"] == pytest.approx(100 * (1 - 0.031 / 0.041), abs=1e-3)
    assert ratios["Rob(f) lost vs AT % (run)"] == pytest.approx(10.0, abs=1e-3)
    assert ratios["AT × V_f (paper table)"] == pytest.approx(10.429, abs=1e-3)
    assert ratios["FARMUR V_f cut % (paper table)"] == pytest.approx(19.178, abs=1e-3)
    text = farmur.describe_farmur(recs)
    assert "raised, as the paper reports" in text and "lowered, as claimed" in text


def test_curves_from_record_match_definition_1():
    rec = _record("lenet5-mnist", "natural", 0, 0.75, 0.3, 0.0)
    curves, mean = farmur.curves_from_record(rec, [0.0, 0.3, 0.5])
    # partition 0: points 0.2 (correct) and None (wrong) -> I = 1/2, 0, 0; partition 1: 0.4 and 0.6 -> 1, 1, 1/2
    np.testing.assert_allclose(curves, [[0.5, 0.0, 0.0], [1.0, 1.0, 0.5]])
    np.testing.assert_allclose(mean, [0.75, 0.5, 0.25])


def test_study_row_end_to_end_saves_records_and_skips_done_runs(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "results")
    kw = dict(seed=0, backbone="small_cnn", n=60, n_test=30, size=12, natural_epochs=1, at_epochs=2, farmur_epochs=1,
              batch_size=32, steps=1, df_max_iter=10, device="cpu", store=store, log=None)
    recs = farmur.run_farmur_row("lenet5-mnist", **kw)
    assert [r["config"]["method"] for r in recs] == list(farmur.METHODS)
    for rec in recs:
        m = rec["metrics"]
        assert 0 <= m["accuracy"] <= 1 and len(m["rob_p"]) == 10 and m["n_eval"] == 30
        assert m["rob_f"] == pytest.approx(np.mean(m["rob_p"]))
        assert len(rec["distances"]["d"]) == 30 and rec["timings"]["fit_s"] >= 0
    assert "split_vulnerable" in recs[2]["metrics"]
    assert len(list((tmp_path / "results" / "farmur" / "checkpoints").glob("*.pt"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(farmur, "_fit", boom)
    again = farmur.run_farmur_row("lenet5-mnist", **kw)
    assert [r["key"] for r in again] == [r["key"] for r in recs]


_ROW_KW = dict(seed=0, backbone="small_cnn", n=60, n_test=30, size=12, natural_epochs=1, at_epochs=3,
               farmur_epochs=1, batch_size=32, steps=1, df_max_iter=10, schedule="cosine", device="cpu", log=None)


def test_same_budget_forks_one_at_run_at_epoch_e_minus_t(tmp_path, monkeypatch):
    calls = []
    real_fit = farmur.fit

    def spy(model, data, recipe, **kw):
        opt = recipe.optimizer
        calls.append({"objective": recipe.objective, "phase": (recipe.start_epoch, recipe.epochs,
                                                               recipe.total_epochs()),
                      "opt": opt, "model_in": {k: v.clone() for k, v in model.state_dict().items()},
                      "momentum_in": [opt.state[p]["momentum_buffer"].clone() if opt.state[p] else None
                                      for p in model.parameters()]})
        res = real_fit(model, data, recipe, **kw)
        calls[-1]["model_out"] = {k: v.clone() for k, v in model.state_dict().items()}
        calls[-1]["momentum_out"] = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
        return res

    monkeypatch.setattr(farmur, "fit", spy)
    recs = farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, methods=("trades", "farmur"),
                                 store=ResultStore(tmp_path / "results"))
    assert all(r["config"]["protocol"] == "same_budget" for r in recs)
    pre, at, fm = calls
    assert [c["objective"] for c in calls] == ["trades", "trades", "farmur"]
    # One schedule of at_epochs = 3: epochs 0-1 shared, then epoch 2 of TRADES or of the FARMUR loss.
    assert (pre["phase"], at["phase"], fm["phase"]) == ((0, 2, 3), (2, 1, 3), (2, 1, 3))
    assert pre["opt"] is at["opt"] is fm["opt"]
    for arm in (at, fm):  # both arms start from the weights and the momentum at epoch E - T
        for k, v in pre["model_out"].items():
            torch.testing.assert_close(arm["model_in"][k], v, rtol=0, atol=0)
        for a, b in zip(arm["momentum_in"], pre["momentum_out"]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_same_budget_resumes_phase_one_with_its_optimizer_and_gives_the_same_records(tmp_path):
    one_go = farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, methods=("trades", "farmur"),
                                   store=ResultStore(tmp_path / "a"))
    store = ResultStore(tmp_path / "b")
    farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, methods=("trades",), store=store)
    later = farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, methods=("trades", "farmur"), store=store)
    for a, b in zip(one_go, later):  # the FARMUR arm of the second call forks the checkpoint of phase 1
        assert a["key"] == b["key"] and a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
        assert a["metrics"]["rob_p"] == b["metrics"]["rob_p"]


def test_the_protocol_enters_the_record_config_and_unknown_ones_are_refused():
    same = farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, keys_only=True)
    restart = farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, protocol="restart", keys_only=True)
    assert [c["protocol"] for c in same] == ["same_budget"] * 3 and [c["protocol"] for c in restart] == ["restart"] * 3
    assert {k: v for k, v in same[0].items() if k != "protocol"} == {k: v for k, v in restart[0].items()
                                                                    if k != "protocol"}
    with pytest.raises(ValueError, match=r"unknown protocol 'paper'.*'same_budget', 'restart'"):
        farmur.run_farmur_row("lenet5-mnist", **_ROW_KW, protocol="paper", keys_only=True)


def _claim_record(row, method, seed, acc, rob_f, v_f):
    return {"config": {"row": row, "method": method, "seed": seed, "dataset": "synbols-mnist", "backbone": "lenet5"},
            "metrics": {"accuracy": acc, "rob_f": rob_f, "v_f": v_f}, "model_title": "LeNet-5",
            "dataset_title": "MNIST"}


def test_verdict_uses_two_seed_standard_deviations_of_paired_differences():
    from fralkit.experiments import paired_verdict

    assert paired_verdict([1.0, 1.1, 0.9], +1) == "agrees"  # mean 1.0, sd 0.1
    assert paired_verdict([1.0, 1.1, 0.9], -1) == "disagrees"
    assert paired_verdict([1.0, -0.5, 0.2], +1) == "inconclusive"  # mean 0.23, sd 0.75
    assert paired_verdict([2.0], +1) == "inconclusive (1 seed)" and paired_verdict([]) == "not run"


def test_claims_table_by_hand():
    recs = []
    for s, (vn, va, vf) in enumerate([(0.010, 0.020, 0.010), (0.012, 0.022, 0.011), (0.011, 0.021, 0.012)]):
        recs += [_claim_record("lenet5-mnist", "natural", s, 0.991, 1.0, vn),
                 _claim_record("lenet5-mnist", "trades", s, 0.990, 2.0, va),
                 _claim_record("lenet5-mnist", "farmur", s, 0.989, 1.96, vf)]
    t = farmur.claims_table(recs).set_index("claim")
    assert t.loc["natural accuracy is the paper's (calibration)", "verdict"] == "agrees"  # 99.10 vs 99.08 +- 0.5
    assert t.loc["AT raises V_f(P)", "verdict"] == "agrees"  # +0.010 per seed, sd 0
    assert t.loc["AT raises V_f(P)", "ours"].startswith("x1.91")  # 0.021 / 0.011
    assert t.loc["FARMUR lowers V_f(P) against AT", "verdict"] == "agrees"  # -0.010 +- 0.001
    assert t.loc["at a small loss of Rob(f)", "ours"].startswith("2.0 +- 0.0")  # 1 - 1.96 / 2
    assert t.loc["FARMUR's accuracy within 3 points of AT's", "verdict"] == "agrees"
    assert list(farmur.claims_table(recs).columns) == ["claim", "row", "n seeds", "paper", "ours", "verdict", "test"]
