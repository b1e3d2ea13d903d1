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
