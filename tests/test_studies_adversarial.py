"""Notebook 02's study: one record per run, done runs skipped, tables and claims rendered from the records."""
import pytest

from fralkit import studies as fk_studies
from fralkit.studies import adversarial as adv_study
from fralkit.experiments import ResultStore

TINY = dict(backbone="small_cnn", n=48, epochs=1, batch_size=16, steps=1, curve_n=8)


def test_study_records_tables_and_claims(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "results")
    configs = adv_study.adv_configs("synbols-utk", "all", 1, **TINY)
    assert [c.method for c in configs] == ["natural", "pgd_at", "trades", "fairat"]
    records = fk_studies.run(adv_study, configs, store=store, device="cpu", show_progress=False)
    assert len(records) == 4 and all(store.has(c.record_config()) for c in configs)
    m = records[3]["metrics"]
    for key in ("std_worst", "std_disp", "std_avg", "rob_worst", "rob_disp", "rob_avg", "worst_class_rob",
                "avg_class_rob", "rob_acc_g1_c3", "rob_f1_g0_c0"):
        assert key in m
    assert len(records[0]["series"]["history"]["val_rob_acc"]) == 1 and records[0]["classes"] == ["a", "b", "c", "d"]
    assert "hard_frac" in records[3]["config"] and "hard_frac" not in records[2]["config"]

    import fralkit.studies.adversarial as mod

    monkeypatch.setattr(mod, "fit", lambda *a, **k: pytest.fail("a stored run was retrained"))
    again = fk_studies.run(adv_study, configs, store=store, device="cpu", show_progress=False)
    assert [r["key"] for r in again] == [r["key"] for r in records]

    table = adv_study.table_groups(records)
    assert list(table.index.get_level_values("method")) == ["Natural", "PGD-AT", "TRADES", "FairAT"]
    assert "Rob worst class" in table.columns
    text = adv_study.describe_claims(records)
    assert "Claim 1" in text and "Claim 2" in text and "baseline here: TRADES" in text


def test_study_settings_are_checked():
    with pytest.raises(ValueError, match="unknown method"):
        adv_study.adv_configs("synbols-utk", "natural,madry", 1)
    with pytest.raises(ValueError, match="unknown study setting"):
        adv_study.adv_configs("synbols-utk", "all", 1, epoch=3)
    assert adv_study.AdvConfig(dataset="synbols-ham").metric_name == "f1"
    assert adv_study.AdvConfig(dataset="synbols-ham").use_oversampling
    assert adv_study.AdvConfig(dataset="synbols-utk").metric_name == "acc"


def test_grid_takes_the_notebook_parameters():
    from fralkit.profiles import notebook_parameters

    params = notebook_parameters("02", "smoke")
    configs = adv_study.grid(**params)
    assert len(configs) == 4 and configs[0].eps == params["eps_255"] / 255 and configs[0].n == params["n"]
    with pytest.raises(ValueError, match="no_such_setting"):
        adv_study.grid(**params, no_such_setting=1)
    assert [len(p) for p in adv_study.parts(configs)] == [4]
