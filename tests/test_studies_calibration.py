"""Calibration table and verdicts on hand-made records (no training)."""
import pytest

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
    assert set(KNOBS) == set(PAPER_INIT_AT)


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
