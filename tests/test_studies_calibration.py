"""Calibration table and verdicts on hand-made records (no training)."""
import numpy as np
import pytest
import torch

from fralkit.studies.calibration import calibration_table, describe_calibration, calibrate_preset


def _record(dataset, groups, clean, rob, bad):
    m = {"std_acc": 0.95, "labels_trades": 600, "disadvantaged_group": groups[bad],
         "clean_gap": clean[1 - bad] - clean[bad], "robust_gap": rob[1 - bad] - rob[bad]}
    for gname, c, r in zip(groups, clean, rob):
        m[f"std_acc_{gname}"] = 0.95
        m[f"trades_clean_{gname}"] = c
        m[f"trades_rob_{gname}"] = r
    m["learnable"] = m["std_acc"] >= 0.85
    m["disadvantaged_both"] = m["clean_gap"] >= 0.03 and m["robust_gap"] >= 0.03
    return {"config": {"dataset": dataset, "method": "small_cnn", "n": 3000, "seed": 0}, "metrics": m, "device": "cpu"}


def test_table_has_fixed_columns_across_presets():
    recs = [_record("synbols-utk", ("high-contrast", "low-contrast"), (0.99, 0.64), (0.99, 0.30), 1),
            _record("synbols-ham", ("male", "female"), (0.946, 0.736), (0.92, 0.61), 1)]
    table = calibration_table(recs)
    assert not table.isna().any().any()  # no per-group-name columns left empty
    assert table.loc["synbols-ham", "TRADES 20% clean [disadvantaged]"] == pytest.approx(73.6)
    assert table.loc["synbols-ham", "TRADES 20% rob [other]"] == pytest.approx(92.0)
    assert table.loc["synbols-utk", "robust gap"] == pytest.approx(69.0)
    assert table.loc["synbols-utk", "disadvantaged in both (>=3 pts)"] == "yes"


def test_small_gap_fails_the_target():
    rec = _record("synbols-cinic", ("plain", "textured"), (0.99, 0.98), (0.90, 0.80), 1)  # clean gap 1 point
    table = calibration_table([rec])
    assert table.loc["synbols-cinic", "disadvantaged in both (>=3 pts)"] == "no"
    assert "synbols-cinic" in describe_calibration([rec])


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown Synbols preset"):
        calibrate_preset("synbols-nope")


# ----------------------------------------------------------------------------------------------- calibration to a row
import dataclasses

from fralkit.data import CALIBRATED, KNOBS, PRESETS, apply_knobs, knob_values, preset_configs
from fralkit.experiments import ResultStore
from fralkit.studies import calibration
from fralkit.studies.calibration import (PAPER_INIT_AT, ROW_KEYS, calibrate_to_target, describe_search,
                                         init_at_config, measure_init_at, search_table, target_table)


def _fake_row(knobs):
    """A made-up Init. AT row, monotone in the two contrasts: group 0 follows the easy, group 1 the hard contrast."""
    std = [40 + 0.4 * knobs.get("easy_contrast", 90.0), 30 + 0.5 * knobs["hard_contrast"]]
    rob = [0.8 * v - 10 for v in std]
    row = {"std_group": std, "rob_group": rob, "groups": ["high-contrast", "low-contrast"]}
    for kind, vals in (("std", std), ("rob", rob)):
        row.update({f"{kind}_worst": min(vals), f"{kind}_disp": abs(vals[0] - vals[1]), f"{kind}_avg": sum(vals) / 2})
    return row


class _Counter:
    def __init__(self):
        self.calls = []

    def __call__(self, knobs, seed):
        self.calls.append((dict(knobs), seed))
        return _fake_row(knobs)


def test_search_finds_a_known_target_in_few_trials_and_records_each():
    goal = {"easy_contrast": 60.0, "hard_contrast": 40.0}
    target = {k: v for k, v in _fake_row(goal).items() if k in ROW_KEYS}
    fake = _Counter()
    out = calibrate_to_target("synbols-utk", target, knobs=["easy_contrast", "hard_contrast"], trials=20, seeds=2,
                              tol=0.5, measure=fake)
    assert out["within_tol"] and out["stopped"] == "within tol"
    assert out["best"]["knobs"] == goal
    assert len(out["trials"]) <= 12
    assert len(fake.calls) == 2 * len(out["trials"])  # every trial measured every seed, none twice
    assert len({tuple(sorted(t["knobs"].items())) for t in out["trials"]}) == len(out["trials"])
    assert out["trials"][0]["knobs"] == {"easy_contrast": 90.0, "hard_contrast": 30.0}  # the preset's own values
    again = calibrate_to_target("synbols-utk", target, knobs=["easy_contrast", "hard_contrast"], trials=20, seeds=2,
                                tol=0.5, measure=_Counter())
    assert [t["knobs"] for t in again["trials"]] == [t["knobs"] for t in out["trials"]]  # deterministic


def test_unreachable_target_ends_with_the_best_trial_and_says_so():
    target = {"std_worst": 99.0, "std_disp": 0.0, "std_avg": 99.0, "rob_worst": 99.0, "rob_disp": 0.0, "rob_avg": 99.0}
    out = calibrate_to_target("synbols-utk", target, knobs=["easy_contrast", "hard_contrast"], trials=6, measure=_Counter())
    assert not out["within_tol"]
    assert out["stopped"] in ("trial budget", "converged (no better neighbour)")
    assert len(out["trials"]) <= 6
    assert out["distance"] == min(t["distance"] for t in out["trials"])
    assert "NOT within tol" in describe_search(out)
    assert target_table([out]).iloc[0]["within +-3"] == "NOT within tol"


def test_search_and_target_tables_layout():
    out = calibrate_to_target("synbols-utk", knobs=["hard_contrast"], trials=3, measure=_Counter())
    search = search_table(out)
    assert len(search) == len(out["trials"])
    for col in ("trial", "hard_contrast", "Std Worst", "Rob Avg", "seed std Rob Worst", "worst group (clean)",
                "max deviation (points)", "within 3", "best"):
        assert col in search.columns
    assert (search["best"] == "*").sum() == 1
    table = target_table([out])
    assert list(table.index) == ["model / synbols-utk (calibrated)", "paper: MobileNetV2 / UTKFace"]
    assert list(table.columns[:8]) == ["n seeds", "metric", "Std Worst (%)", "Std Disp (%)", "Std Avg (%)",
                                       "Rob Worst (%)", "Rob Disp (%)", "Rob Avg (%)"]
    assert table.loc["paper: MobileNetV2 / UTKFace", "Rob Avg (%)"] == pytest.approx(56.61)
    assert table.loc["paper: MobileNetV2 / UTKFace", "n seeds"] == ""


def test_paper_targets_cover_the_jin_presets_with_their_metric():
    assert set(PAPER_INIT_AT) == {"synbols-utk", "synbols-cinic", "synbols-ham"}
    assert PAPER_INIT_AT["synbols-ham"]["metric"] == "f1" and PAPER_INIT_AT["synbols-cinic"]["metric"] == "acc"
    assert PAPER_INIT_AT["synbols-cinic"]["std_worst"] == pytest.approx(52.53)
    assert set(PAPER_INIT_AT) <= set(KNOBS)


def test_knobs_at_the_presets_own_values_leave_it_unchanged():
    for name in KNOBS:
        assert apply_knobs(name, knob_values(name)) == PRESETS[name]["styles"]
        assert [c.key() for c in preset_configs(name, n=50, knobs=None)] == [c.key() for c in preset_configs(name, n=50)]
    styles = apply_knobs("synbols-utk", {"hard_contrast": 45.0, "hard_occlusion": 0.0, "glyph_scale": 0.3})
    assert styles[1] == dataclasses.replace(PRESETS["synbols-utk"]["styles"][1], contrast=(45.0, 90.0), occlusions=0,
                                            occlusion_scale=0.4,
                                            scale=(0.3, 0.5))
    assert styles[0].scale == (0.3, 0.5) and styles[0].contrast == (90.0, 180.0)
    assert isinstance(CALIBRATED, dict)


def test_a_noise_background_knob_turns_a_plain_group_noisy_and_zero_leaves_it(monkeypatch):
    """``noise_background`` v > 0 gives a plain group a noise background of sd v (its pixels off the glyph spread
    out); 0 keeps the preset's own style, so the data and cache keys stay as they were."""
    import fralkit.data.presets as presets
    from fralkit.data import Knob

    knob = Knob("noise_background", (0,), (0.0, 8.0, 16.0))
    assert knob.override(0.0) == {} and knob.override(12.0) == {"background": "noise", "noise_sd": 12.0}
    monkeypatch.setitem(presets.KNOBS, "synbols-cinic", {**presets.KNOBS["synbols-cinic"], "easy_noise": knob})
    own = PRESETS["synbols-cinic"]["styles"]
    assert own[0].background == "plain" and knob_values("synbols-cinic")["easy_noise"] == 0
    assert apply_knobs("synbols-cinic", {"easy_noise": 0.0}) == own
    noisy = apply_knobs("synbols-cinic", {"easy_noise": 16.0})
    assert (noisy[0].background, noisy[0].noise_sd) == ("noise", 16.0) and noisy[1] == own[1]
    base = preset_configs("synbols-cinic", n=40, n_val=8, n_test=8, knobs={"easy_noise": 0.0})
    assert [c.key() for c in base] == [c.key() for c in preset_configs("synbols-cinic", n=40, n_val=8, n_test=8)]
    from fralkit.data.synbols import render_synbols

    def corner_sd(cfgs):  # the plain group's image corners, away from the glyph (sd 16 at 2x supersampling: about 7)
        data = render_synbols(cfgs[0])
        x = data.x[data.g == 0].float()
        return float(x[:, :, :3, :3].std(dim=(2, 3)).mean())
    assert corner_sd(base) < 2.0 < 5.0 < corner_sd(preset_configs("synbols-cinic", n=40, n_val=8, n_test=8,
                                                                  knobs={"easy_noise": 16.0}))


def test_every_knob_field_reads_back_the_value_it_sets():
    from fralkit.data import Knob
    from fralkit.data.presets import _KNOB_FIELDS
    from fralkit.data.synbols import GroupStyle

    values = {"contrast": 40.0, "noise_sd": 8.0, "occlusion": 0.35, "scale": 0.4, "label_noise": 0.1, "decoy": 0.2,
              "noise_background": 8.0, "watermark": 4.0}
    assert set(values) == set(_KNOB_FIELDS)
    for field, v in values.items():
        knob = Knob(field, (0,), (0.0, v))
        assert knob.read(dataclasses.replace(GroupStyle(), **knob.override(v))) == v
        if field not in ("contrast", "scale"):  # 0 is "off" for the others (a zero glyph scale is no style)
            assert knob.read(dataclasses.replace(GroupStyle(), **knob.override(0.0))) == 0.0


def test_unknown_knob_is_refused():
    with pytest.raises(ValueError, match="unknown knobs"):
        apply_knobs("synbols-utk", {"hue": 1.0})
    with pytest.raises(ValueError, match="unknown knobs"):
        calibrate_to_target("synbols-utk", knobs=["hue"], measure=_Counter())


def test_notebook_grid_adds_searches_only_when_asked():
    base = calibration.grid(datasets="synbols-utk,synbols-minority", calib_n=600)
    assert not any(c.get("search") for c in base)
    with_target = calibration.grid(datasets="synbols-utk,synbols-minority", calib_n=600, calib_target=True,
                                   calib_trials=4)
    assert with_target[:len(base)] == base
    searches = [c for c in with_target if c.get("search")]
    assert [c["name"] for c in searches] == ["synbols-utk"] and searches[0]["trials"] == 4
    key = calibration.keys(searches[0])[0]
    assert key["method"] == "search" and key["target"]["std_worst"] == pytest.approx(67.58)


def test_search_on_tiny_real_trials_writes_one_record_per_trial(tmp_path):
    store = ResultStore(tmp_path)
    config = dict(n=60, backbone="small_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0.0, grad_clip=0.0)
    out = calibrate_to_target("synbols-utk", knobs=["hard_contrast"], trials=2, config=config, store=store,
                              device="cpu")
    assert len(out["trials"]) == 2
    for t in out["trials"]:
        key = measure_init_at(init_at_config("synbols-utk", seed=0, **config), t["knobs"], keys_only=True)
        assert key["knobs"] == t["knobs"] and store.has(key)
        rec = store.load(key)
        assert rec["metrics"]["std_worst"] * 100 == pytest.approx(t["row"]["std_worst"])
    assert target_table([out]).index[0] == "small_cnn / synbols-utk (calibrated)"
    saved = store.save({"study": "calibration", "dataset": "synbols-utk", "method": "search", "seed": 0}, out)
    assert calibration.target_tables([saved], save=False)["search"].shape[0] == 2


# ----------------------------------------------------------------------------------------------- the groups search
from fralkit.active import FRALConfig
from fralkit.active.loop import calibrated_knobs
from fralkit.studies.calibration import GROUP_KNOBS, _fit_glyph, _glyph_acc, _group_plan, _label_share, calibrate_groups


def _truth(contrast, rho, k=4):
    """A made-up group: glyph accuracy clean 0.95, robust growing with log contrast; label shares by ambiguity."""
    a = 0.95
    r = min(a, 0.3 * np.log(contrast / 10.0))
    return _label_share(a, rho, k), _label_share(r, rho, k)


def test_label_share_and_its_inverse_by_hand():
    # 4 classes, 20 % ambiguous: a perfect glyph reader scores 0.8 + 0.2 / 4 = 0.85 on labels
    assert _label_share(1.0, 0.2, 4) == pytest.approx(0.85)
    assert _label_share(0.25, 0.2, 4) == pytest.approx(0.25)  # chance stays chance
    assert _glyph_acc(_label_share(0.7, 0.3, 10), 0.3, 10) == pytest.approx(0.7)


def test_group_plan_solves_a_known_group_from_three_measurements():
    data = [dict(contrast=c, rho=0.1, **dict(zip(("clean", "rob"), _truth(c, 0.1)))) for c in (20.0, 40.0, 80.0)]
    goal = _truth(33.0, 0.2)
    contrast, rho = _group_plan(data, goal, 4, 15.0, 127.0)
    assert contrast == pytest.approx(33.0, rel=0.03) and rho == pytest.approx(0.2, abs=0.01)
    far = _truth(33.0, 0.5)  # beyond the trust region (ambiguity 0.1 +- 0.15): the plan stops at its edge
    assert _group_plan(data, far, 4, 15.0, 127.0)[1] == pytest.approx(0.25)


def _compounding(contrast, rho, k=4):
    """A group whose glyph accuracy falls with ambiguity the more the lower its contrast (as measured)."""
    lc = np.log(contrast / 127.0)
    a = float(np.clip(0.97 + 0.6 * rho * lc, 0.05, 1.0))
    r = float(np.clip(a * (0.95 + 0.12 * lc), 0.0, a))
    return _label_share(a, rho, k), _label_share(r, rho, k)


def test_group_plan_lands_near_a_compounding_group_from_points_around_the_target():
    pts = [(40.0, 0.3), (80.0, 0.3), (60.0, 0.2), (100.0, 0.25), (50.0, 0.35)]
    data = [dict(contrast=c, rho=r, **dict(zip(("clean", "rob"), _compounding(c, r)))) for c, r in pts]
    goal = _compounding(70.0, 0.28)
    contrast, rho = _group_plan(data, goal, 4, 15.0, 127.0)
    got = _compounding(contrast, rho)
    assert abs(got[0] - goal[0]) < 0.02 and abs(got[1] - goal[1]) < 0.02  # near the target shares


def _stepped(contrast, rho, k=10):
    """A group whose robust glyph accuracy steps up over a few levels of contrast (as synbols-cinic's plain group
    at 90,000 images), clean near 1: a line in log contrast through points on both sides misses the step."""
    a = 0.98
    r = 0.3 + 0.58 / (1.0 + np.exp(-(contrast - 19.5) / 0.7))
    return _label_share(a, rho, k), _label_share(r, rho, k)


def test_group_plan_follows_a_step_that_a_line_in_log_contrast_misses():
    data = [dict(contrast=c, rho=0.39, **dict(zip(("clean", "rob"), _stepped(c, 0.39)))) for c in (17, 18, 19, 20, 25)]
    goal = _stepped(19.8, 0.35)
    contrast, rho = _group_plan(data, goal, 10, 15.0, 127.0)
    got = _stepped(contrast, rho)
    assert abs(got[0] - goal[0]) < 0.01 and abs(got[1] - goal[1]) < 0.02
    assert contrast == pytest.approx(19.8, abs=0.4) and rho == pytest.approx(0.35, abs=0.02)
    # the measured points themselves are reproduced (the residuals are interpolated through them)
    lc = np.log([d["contrast"] for d in data])
    f = _fit_glyph(lc, np.full(5, 0.39), np.array([_glyph_acc(d["rob"], 0.39, 10) for d in data]), 0.25)
    for d, l in zip(data, lc):
        assert f(l, 0.39) == pytest.approx(_glyph_acc(d["rob"], 0.39, 10), abs=1e-6)


def test_fit_glyph_is_the_least_squares_line_where_the_points_lie_on_one():
    lc = np.log([20.0, 40.0, 80.0])
    y = 0.2 + 0.1 * lc
    f = _fit_glyph(lc, np.zeros(3), y, 0.25)
    assert f(np.log(30.0), 0.0) == pytest.approx(0.2 + 0.1 * np.log(30.0))
    assert f(np.log(200.0), 0.0) == pytest.approx(0.2 + 0.1 * np.log(200.0))  # the line beyond the points


def _fake_many(calls):
    def measure_many(points):
        calls.append(points)
        rows = []
        for kn, seed in points:
            std, rob = zip(*(_truth(kn[c], kn[r]) for c, r in (("easy_contrast", "easy_ambiguity"),
                                                                 ("hard_contrast", "hard_ambiguity"))))
            std, rob = [100 * v + 0.1 * seed for v in std], [100 * v for v in rob]
            row = {"std_group": std, "rob_group": rob, "groups": ["high-contrast", "low-contrast"]}
            for kind, vals in (("std", std), ("rob", rob)):
                row.update({f"{kind}_worst": min(vals), f"{kind}_disp": abs(vals[0] - vals[1]),
                            f"{kind}_avg": sum(vals) / 2})
            rows.append(row)
        return rows
    return measure_many


def test_groups_search_lands_a_reachable_row_and_measures_the_best_on_three_seeds():
    goal = {"easy_contrast": 50.0, "hard_contrast": 25.0, "easy_ambiguity": 0.2, "hard_ambiguity": 0.25}
    row = _fake_many([])([(goal, 0)])[0]
    target = {k: row[k] for k in ROW_KEYS}
    calls = []
    out = calibrate_groups("synbols-utk", target, start={"easy_contrast": 60.0, "hard_contrast": 40.0,
                                                         "easy_ambiguity": 0.1, "hard_ambiguity": 0.1},
                           rounds=2, tol=1.0, measure_many=_fake_many(calls))
    assert [len(c) for c in calls[:1]] == [3]  # the design is measured together (one seed each)
    assert out["within_tol"] and out["best"]["n_seeds"] == 3 and out["method"] == "groups"
    assert len(out["trials"]) <= 3 + 2 + 1
    assert search_table(out).shape[0] == len(out["trials"])
    assert target_table([out]).iloc[0]["within +-1"] == "yes"
    for q in GROUP_KNOBS:
        assert q in out["best"]["knobs"]


def test_groups_search_refuses_a_preset_without_group_knobs():
    with pytest.raises(ValueError, match="per-group knobs"):
        calibrate_groups("synbols-farmur", measure_many=_fake_many([]))


def test_calibrated_knobs_come_from_a_search_of_the_same_protocol(tmp_path):
    store = ResultStore(tmp_path)
    cfg = dict(search="groups", name="synbols-utk", config=dict(n=None, backbone="mobilenetv2", epochs=30, lr=0.1,
                                                                warmup_epochs=2.0, grad_clip=5.0, batch_size=256),
               seeds=1, tol=3.0, rounds=2, final_seeds=3, workers=1, design=[0.75, 1.35])
    found = {"easy_contrast": 50.0, "hard_contrast": 30.0}
    store.save(calibration.keys(cfg)[0], {"best": {"knobs": found}})
    other = {**cfg, "config": {**cfg["config"], "epochs": 2}}  # a search under another protocol
    store.save(calibration.keys(other)[0], {"best": {"knobs": {"easy_contrast": 20.0}}})
    run = FRALConfig(dataset="synbols-utk", init_epochs=30, batch_size=256, lr=0.1, warmup_epochs=2.0, grad_clip=5.0)
    assert calibrated_knobs(run, root=tmp_path) == found
    short = FRALConfig(dataset="synbols-utk", init_epochs=2, batch_size=256, lr=0.1, warmup_epochs=2.0, grad_clip=5.0)
    assert calibrated_knobs(short, root=tmp_path) == {"easy_contrast": 20.0}
    elsewhere = FRALConfig(dataset="synbols-utk", init_epochs=7)
    assert calibrated_knobs(elsewhere, root=tmp_path) == (dict(CALIBRATED["synbols-utk"]) if "synbols-utk" in CALIBRATED
                                                          else None)


def test_init_at_trial_is_notebook_03s_cached_initial_model(tmp_path):
    from fralkit.active.loop import _cache_path

    store = ResultStore(tmp_path)
    config = init_at_config("synbols-utk", n=60, backbone="small_cnn", epochs=1, batch_size=16, lr=0.05,
                            warmup_epochs=0.0, grad_clip=0.0)
    knobs = {"hard_ambiguity": 0.2}
    rec = measure_init_at(config, knobs, store=store, device="cpu")
    run = dataclasses.replace(config, knobs=knobs, strategy="rand")
    assert _cache_path(store, run).exists()  # the model notebook 03 starts from
    assert store.has(run.init_key()) and rec["metrics"]["labels"] == 12


def test_notebook_03_gpu_finds_what_notebook_01_gpu_calibrates(tmp_path, monkeypatch):
    from fralkit.profiles import notebook_parameters
    from fralkit.studies import jin

    monkeypatch.setenv("FRALKIT_RESULTS", str(tmp_path))
    store = ResultStore(tmp_path)
    searches = [c for c in calibration.grid(**notebook_parameters("01", "gpu")) if c.get("search")]
    assert sorted(c["name"] for c in searches) == ["synbols-cinic", "synbols-ham", "synbols-utk"]
    found = {}
    for i, c in enumerate(searches):
        found[c["name"]] = {"easy_contrast": 20.0 + i, "hard_ambiguity": 0.1 * i}
        store.save(calibration.keys(c)[0], {"best": {"knobs": found[c["name"]]}})
    params = {k: v for k, v in notebook_parameters("03", "gpu").items() if k != "profile"}
    configs = jin.grid(**{**params, "strategies": "rand"})
    assert {c.dataset for c in configs} == set(found)
    assert {c.backbone for c in configs} == {"mobilenetv2", "resnet18"}  # Table 7 on the same data as Table 1
    for ov in jin.part_parameters({**params, "strategies": "rand"}):  # and so are the runs of every part
        assert all(c in configs for c in jin.grid(**{**params, "strategies": "rand", **ov}))
    for c in configs:
        assert c.data_seed == 0 and c.init_min_steps == 390  # the data and steps notebook 01 calibrates with
        assert c.knobs == found[c.dataset]  # the same protocol, so notebook 03 trains on the calibrated data
        assert c.init_key()["knobs"] == found[c.dataset]


def test_a_search_from_search_start_keeps_every_knob_of_its_start():
    """The design scales the contrasts of the start and nothing else, and the start names every knob, so no knob
    falls back to the preset's own value (synbols-ham's background noise 20: the second search's miss)."""
    from fralkit.studies.calibration import SEARCH_START

    assert knob_values("synbols-ham")["hard_noise"] != SEARCH_START["synbols-ham"]["hard_noise"]  # what is at stake
    for name in ("synbols-utk", "synbols-ham", "synbols-cinic"):
        start = SEARCH_START[name]
        assert set(start) == set(KNOBS[name])
        calls = []
        calibrate_groups(name, start=start, design=[0.5, 1.0], rounds=0, final_seeds=[0],
                         measure_many=_fake_many(calls))
        design = [kn for kn, _ in calls[0]]
        assert {q: design[1][q] for q in start} == start  # factor 1: the start itself
        for kn in design:
            assert {q: kn[q] for q in start if "contrast" not in q} == {q: v for q, v in start.items() if "contrast" not in q}
        assert design[0]["easy_contrast"] == max(15.0, 0.5 * start["easy_contrast"])  # clamped at the lower bound


def test_init_at_config_sizes_the_validation_and_test_sets_apart_from_the_training_set():
    """``n_val`` / ``n_test`` set the evaluation sets (default n / 5 with ``n``; the preset's sizes without); the
    initial model's key changes with them, and without them it is the key it always was."""
    from fralkit.active.loop import load_fral_data

    sized = init_at_config("synbols-cinic", n=100, n_val=12, n_test=30, data_seed=0)
    splits = load_fral_data(sized)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (100, 12, 30)
    default = load_fral_data(init_at_config("synbols-cinic", n=100, data_seed=0))
    assert (len(default.val), len(default.test)) == (20, 20)
    plain = init_at_config("synbols-cinic", n=100, data_seed=0).init_key()
    assert sized.init_key() != plain
    assert plain["n_val"] is None and plain["n_test"] is None


def test_split_seed_fixes_the_labelled_set_and_is_keyed_only_when_set():
    from fralkit.active.loop import load_fral_data
    from fralkit.data import fral_split

    base = init_at_config("synbols-utk", seed=1, n=60, data_seed=0)
    fixed = init_at_config("synbols-utk", seed=1, n=60, data_seed=0, split_seed=0)
    assert "split_seed" not in base.init_key() and "split_seed" not in base.record_config()
    assert fixed.init_key()["split_seed"] == 0 and fixed.record_config()["split_seed"] == 0
    assert base.split_seed_value == 1 and fixed.split_seed_value == 0
    train = load_fral_data(base).train
    assert torch.equal(fral_split(train, init_frac=0.2, seed=fixed.split_seed_value)[0],
                       fral_split(train, init_frac=0.2, seed=0)[0])
    assert not torch.equal(fral_split(train, init_frac=0.2, seed=base.split_seed_value)[0],
                           fral_split(train, init_frac=0.2, seed=0)[0])
    with pytest.raises(ValueError, match="split_seed must be an integer"):
        init_at_config("synbols-utk", split_seed=0.5)


def test_seed_spread_is_the_mean_and_sample_std_of_its_per_seed_records(tmp_path):
    store = ResultStore(tmp_path)
    config = dict(n=60, backbone="small_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0.0, grad_clip=0.0,
                  data_seed=0)
    knobs = {"hard_ambiguity": 0.2}
    out = calibration.seed_spread("synbols-utk", 2, knobs=knobs, split_seed=0, config=config, store=store,
                                  device="cpu")
    assert out["seeds"] == [0, 1] and out["split_seed"] == 0 and len(out["rows"]) == 2
    for s, row in zip((0, 1), out["rows"]):  # each row is that seed's stored Init. AT record, in %
        rec = measure_init_at(init_at_config("synbols-utk", seed=s, split_seed=0, **config), knobs, store=store)
        assert row["std_worst"] == pytest.approx(100 * rec["metrics"]["std_worst"])
    a, b = (r["rob_avg"] for r in out["rows"])
    assert out["mean"]["rob_avg"] == pytest.approx((a + b) / 2)
    assert out["seed_std"]["rob_avg"] == pytest.approx(abs(a - b) / 2 ** 0.5)  # ddof 1 of two values
    paper = out["paper"]  # the mean row against the JIN paper's UTKFace row, scored as a search scores a trial
    assert paper["row"]["std_worst"] == calibration.PAPER_INIT_AT["synbols-utk"]["std_worst"] == 67.58
    assert paper["diff"]["rob_avg"] == pytest.approx(out["mean"]["rob_avg"] - 56.61)
    assert paper["distance"] == pytest.approx(max(abs(d) for d in paper["diff"].values()))
    for key, where in (("std_group", "worst_std_group"), ("rob_group", "worst_rob_group")):
        assert paper[key] == pytest.approx([sum(r[key][g] for r in out["rows"]) / 2 for g in range(2)])
        assert paper[where] == min(range(2), key=lambda g: paper[key][g])
    assert paper["same_worst"] == (paper["worst_std_group"] == paper["worst_rob_group"])
    assert paper["within_tol"] == (paper["distance"] <= 3.0 and paper["same_worst"])
    with pytest.raises(ValueError, match="at least one seed"):
        calibration.seed_spread("synbols-utk", [], config=config, store=store)


def test_seed_spread_in_worker_processes_measures_what_one_process_does(tmp_path):
    """Two spawned workers (CPU: bit-reproducible) give the rows of the sequential run, each in its own store."""
    config = dict(n=60, backbone="small_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0.0, grad_clip=0.0,
                  data_seed=0)
    one = calibration.seed_spread("synbols-utk", [0, 1], config=config, store=ResultStore(tmp_path / "a"),
                                  device="cpu")
    two = calibration.seed_spread("synbols-utk", [0, 1], config=config, store=ResultStore(tmp_path / "b"),
                                  device="cpu", workers=2)
    assert two["rows"] == one["rows"] and two["seed_std"] == one["seed_std"]
    names = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("init-at-*.json"))  # noqa: E731
    # the store passed gets each seed's two records (calibration and notebook 03's initial model), as one process's
    assert names(tmp_path / "b") == names(tmp_path / "a") and len(names(tmp_path / "a")) == 4
    with pytest.raises(SystemExit):
        calibration.main(["synbols-utk", "--workers", "0"])


def test_protocol_is_notebook_01s_search_config_and_the_command_line_prints_the_spread(tmp_path, capsys):
    gpu = calibration.protocol("gpu", "synbols-cinic")
    assert gpu == {"n": None, "backbone": "mobilenetv2", "epochs": 30, "lr": 0.1, "warmup_epochs": 2.0,
                   "grad_clip": 5.0, "batch_size": 256, "data_seed": 0, "init_min_steps": 390}
    with pytest.raises(ValueError, match="no calibration protocol"):
        calibration.protocol("gpu", "synbols-minority")
    out = tmp_path / "spread.json"
    assert calibration.main(["synbols-utk", "--profile", "smoke", "--seeds", "0,1", "--set", "n=60",
                             "--set", "batch_size=16", "--results", str(tmp_path / "store"), "--device", "cpu",
                             "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synbols-utk seed 0:" in printed and "seed std :" in printed
    assert "paper    : 67.6 / 5.4 / 70.3 / 53.0 / 7.3 / 56.6" in printed and "off      : " in printed
    import json
    saved = json.loads(out.read_text())
    assert saved["seeds"] == [0, 1] and saved["config"]["n"] == 60 and saved["config"]["batch_size"] == 16


def test_the_command_lines_knobs_go_over_the_calibrated_ones_and_an_unknown_one_fails_before_training(tmp_path):
    """``--knob K=V`` sets K over the preset's ``CALIBRATED`` knobs (the others stay) and keys the stored record;
    synbols-ham's watermark knobs set its groups' ``GroupStyle.watermark``; an unknown knob trains nothing."""
    styles = apply_knobs("synbols-ham", {"easy_watermark": 2.0, "hard_watermark": 3.0})
    assert (styles[0].watermark, styles[1].watermark) == (2.0, 3.0)
    assert knob_values("synbols-ham")["hard_watermark"] == 0.0 and "hard_watermark" not in KNOBS["synbols-utk"]
    out = tmp_path / "spread.json"
    assert calibration.main(["synbols-utk", "--profile", "smoke", "--seeds", "0", "--set", "n=60", "--set",
                             "batch_size=16", "--knob", "hard_contrast=45", "--results", str(tmp_path / "store"),
                             "--device", "cpu", "--json", str(out)]) == 0
    import json
    knobs = json.loads(out.read_text())["knobs"]
    assert knobs == {**CALIBRATED["synbols-utk"], "hard_contrast": 45.0}
    with pytest.raises(ValueError, match="unknown knobs"):
        calibration.main(["synbols-utk", "--knob", "hue=1", "--results", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


def test_seed_spread_command_needs_no_jupyter_package():
    import subprocess
    import sys

    code = ("import sys; sys.modules['zmq'] = sys.modules['traitlets'] = sys.modules['papermill'] = None\n"
            "from fralkit.__main__ import main\n"
            "try:\n    main(['seed-spread', '--help'])\nexcept SystemExit as e:\n    sys.exit(e.code)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "python -m fralkit seed-spread" in out.stdout
