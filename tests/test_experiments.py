import json

import pytest

from fralkit.experiments import ResultStore, flatten_records, format_mean_std, save_table, summarize
from fralkit.runtime import resolve_device, set_seed
from fralkit.utils import atomic_write_json, config_hash


def cfg(method, seed, **kw):
    return {"study": "t", "dataset": "d", "method": method, "seed": seed, **kw}


def test_store_roundtrip_skip_and_key(tmp_path):
    store = ResultStore(tmp_path)
    c = cfg("jin", 0, lr=0.1)
    assert not store.has(c)
    store.save(c, {"acc": [0.5, 0.7]}, timings={"select": 1.5})
    assert store.has(c)
    rec = store.load(c)
    assert rec["metrics"]["acc"] == [0.5, 0.7] and rec["key"] == config_hash(c)
    assert {"torch", "git_commit", "device", "saved_at"} <= set(rec["provenance"])
    # a different hyper-parameter is a different run
    assert not store.has(cfg("jin", 0, lr=0.2))
    with pytest.raises(ValueError, match="needs 'seed'"):
        store.path({"study": "t", "dataset": "d", "method": "x"})
    with pytest.raises(FileNotFoundError):
        store.load(cfg("rand", 9))


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_summarize_mean_std_over_seeds(tmp_path):
    store = ResultStore(tmp_path)
    for seed, acc in enumerate([0.6, 0.8]):
        store.save(cfg("jin", seed), {"acc": [0.1, acc]})
    store.save(cfg("rand", 0), {"acc": 0.5})
    df = flatten_records(store.records("t"))
    assert sorted(df["acc"]) == [0.5, 0.6, 0.8]  # last value of a per-round list
    s = summarize(df, by=["method"], metrics=["acc"])
    assert s.loc["jin", "acc_mean"] == pytest.approx(0.7)
    assert s.loc["jin", "acc_std"] == pytest.approx(0.1414213, rel=1e-5)  # sample std of (0.6, 0.8)
    assert s.loc["jin", "n"] == 2
    table = format_mean_std(s, ["acc"], scale=100)
    assert table.loc["jin", "acc"] == "70.0 ± 14.1" and table.loc["rand", "acc"] == "50.0"
    with pytest.raises(ValueError, match="not in the records"):
        summarize(df, by=["method"], metrics=["f1"])
    paths = save_table(table, "00_test_table")
    assert [p.suffix for p in paths] == [".csv", ".md"] and "70.0 ± 14.1" in paths[1].read_text()


@pytest.mark.filterwarnings("ignore:1 unreadable result file")
def test_records_filter_and_corrupt_file(tmp_path):
    store = ResultStore(tmp_path)
    store.save(cfg("a", 0), {"x": 1})
    store.save(cfg("b", 0), {"x": 2})
    (tmp_path / "t" / "d" / "broken.json").write_text("{")
    assert [r["config"]["method"] for r in store.records("t", method="b")] == ["b"]
    assert len(store.records()) == 2


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_seed_and_device_errors():
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_records_report_the_files_they_skip(tmp_path):
    store = ResultStore(tmp_path)
    store.save(cfg("a", 0), {"x": 1})
    broken = tmp_path / "t" / "d" / "broken.json"
    broken.write_text('{"config": ')
    with pytest.warns(UserWarning, match=r"1 unreadable result file.*broken\.json"):
        recs = store.records("t")
    assert [r["config"]["method"] for r in recs] == ["a"] and store.skipped == [broken]
    with pytest.warns(UserWarning):
        store.records("t", method="zzz")  # each call reports its own skips
    assert store.skipped == [broken]


def test_a_corrupt_record_is_named_by_load_and_has(tmp_path):
    store = ResultStore(tmp_path, recompute_corrupt=False)
    c = cfg("jin", 0)
    store.save(c, {"acc": 0.5})
    path = store.path(c)
    path.write_text(path.read_text()[:-20])  # a cut-off file
    with pytest.raises(ValueError, match=rf"result record {path} is corrupt .*--recompute-corrupt"):
        store.load(c)
    with pytest.raises(ValueError, match=str(path)):
        store.has(c)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a record object"):
        store.load(c)
    assert path.exists()  # nothing was moved without being asked


def test_recompute_corrupt_moves_the_record_aside_and_the_run_is_redone(tmp_path, monkeypatch):
    c = cfg("jin", 0)
    ResultStore(tmp_path).save(c, {"acc": 0.5})
    path = ResultStore(tmp_path).path(c)
    path.write_bytes(b"\x00\x00 not json")
    monkeypatch.setenv("FRALKIT_RECOMPUTE_CORRUPT", "1")  # what `reproduce --recompute-corrupt` sets
    store = ResultStore(tmp_path)
    with pytest.warns(UserWarning, match="moved to"):
        assert not store.has(c)
    aside = path.with_name(path.name + ".corrupt")
    assert not path.exists() and aside.read_bytes() == b"\x00\x00 not json"
    store.save(c, {"acc": 0.7})
    assert store.has(c) and store.load(c)["metrics"]["acc"] == 0.7
    assert [r["metrics"]["acc"] for r in store.records("t")] == [0.7]  # the .corrupt file is out of every glob


def test_every_record_has_one_schema_and_old_records_load_into_it(tmp_path):
    """Records of earlier versions (provenance at the top, group_names / class_names, history) load in the one schema
    with the same key; new records are written in it."""
    import json

    from fralkit.experiments import RECORD_FIELDS, ResultStore, normalize_record

    store = ResultStore(tmp_path)
    cfg = {"study": "s", "dataset": "d", "method": "m", "seed": 0}
    new = store.save(cfg, {"acc": 0.5}, device="cpu", series={"history": {"loss": [1.0, 0.5]}}, groups=["a", "b"],
                     classes=["x"])
    assert set(RECORD_FIELDS) <= set(new) and new["groups"] == ["a", "b"] and new["series"]["history"]["loss"] == [1.0, 0.5]
    assert "device" not in new and new["provenance"]["device"].startswith("cpu")
    old = {"config": cfg, "key": store.key(cfg), "metrics": {"acc": 0.5}, "timings": {}, "device": "cpu (x)",
           "git_commit": "abc", "saved_at": "2026-11-25T00:00:00Z", "group_names": ["a", "b"], "class_names": ["x"],
           "history": {"loss": [1.0]}, "distances": {"d": [0.1]}}
    store.path(cfg).write_text(json.dumps(old))
    rec = store.load(cfg)
    assert rec["key"] == old["key"] and rec["config"] == cfg and rec["groups"] == ["a", "b"] and rec["classes"] == ["x"]
    assert rec["provenance"] == {"device": "cpu (x)", "git_commit": "abc", "saved_at": "2026-11-25T00:00:00Z"}
    assert rec["series"] == {"history": {"loss": [1.0]}} and rec["distances"] == {"d": [0.1]}
    assert store.records("s") == [rec] and normalize_record(rec) is rec
