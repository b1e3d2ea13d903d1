"""The study protocol: every registered study has the same names; a new study is one module plus one registry line."""
import os
import types

import pytest

from fralkit import studies
from fralkit.experiments import ResultStore
from fralkit.profiles import notebook_parameters


@pytest.mark.parametrize("name", sorted(studies.STUDIES))
def test_every_study_has_the_protocol(name):
    mod = studies.STUDIES[name]
    missing = [attr for attr in studies.PROTOCOL if not hasattr(mod, attr)]
    assert not missing, f"study {name} lacks {missing}"


@pytest.mark.parametrize("name", sorted(studies.STUDIES))
def test_grid_takes_its_notebooks_smoke_parameters(name):
    mod = studies.STUDIES[name]
    configs = mod.grid(**notebook_parameters(mod.NOTEBOOK, "smoke"))
    assert configs, f"{name}: the smoke profile gives no runs"
    assert all(isinstance(k, dict) and "study" in k for c in configs for k in mod.keys(c))
    assert sum(len(p) for p in mod.parts(configs)) == len(configs)


def test_unknown_study_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown study 'nope'; valid: \\['adversarial'"):
        studies.get("nope")


def _toy_study():
    """A study in a dozen lines: squares of numbers, one record per number."""
    toy = types.ModuleType("toy")
    toy.NOTEBOOK, toy.FIGURES = "00", {}
    toy.grid = lambda *, numbers=(1, 2, 3), **_: [{"x": x} for x in numbers]
    toy.keys = lambda c: [{"study": "toy", "dataset": "none", "method": "square", "seed": 0, "x": c["x"]}]
    calls = []

    def run(c, *, store, device, cache):
        calls.append(c["x"])
        return [store.save(toy.keys(c)[0], {"square": c["x"] ** 2}, device="cpu")]

    toy.run, toy.calls = run, calls
    toy.parts = lambda configs: [[c] for c in configs]
    toy.tables = lambda records, save=True: {}
    toy.figures = lambda records, *names: []
    toy.claims = lambda records: "squares are non-negative: agrees"
    return toy


def test_a_new_study_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    toy = _toy_study()
    monkeypatch.setitem(studies.STUDIES, "toy", toy)
    store = ResultStore(tmp_path)
    configs = toy.grid(numbers=(2, 3))
    records = studies.run("toy", configs, store=store, device="cpu", show_progress=False)
    assert [r["metrics"]["square"] for r in records] == [4, 9] and toy.calls == [2, 3]
    again = studies.run("toy", toy.grid(numbers=(3, 4)), store=store, device="cpu", show_progress=False)
    assert [r["metrics"]["square"] for r in again] == [9, 16] and toy.calls == [2, 3, 4]  # 3 loaded, not rerun
    assert [c["x"] for c in studies.missing("toy", toy.grid(numbers=(4, 5)), store)] == [5]
    only_stored = studies.run("toy", toy.grid(numbers=(4, 5)), store=store, device="cpu", compute=False)
    assert [r["metrics"]["square"] for r in only_stored] == [16] and toy.calls == [2, 3, 4]


def test_run_writes_where_its_records_were_computed_for_the_manifest(tmp_path, monkeypatch):
    import json
    import types

    import fralkit as fk
    from fralkit.experiments import ResultStore

    store = ResultStore(tmp_path / "store")
    mod = types.ModuleType("fake_study")
    mod.NOTEBOOK = "99"
    mod.keys = lambda c: [{"study": "fake", "dataset": "d", "method": "m", "seed": c}]
    mod.run = lambda c, *, store, device, cache: [store.save(mod.keys(c)[0], {"x": c})]
    monkeypatch.setenv("FRALKIT_FIGURES", str(tmp_path / "fig"))
    monkeypatch.delenv("FRALKIT_PROFILE", raising=False)
    fk.studies.run(mod, [0], store=store, device="cpu", show_progress=False)
    assert not (tmp_path / "fig" / "99_records.json").exists()  # outside a notebook run: nothing written
    monkeypatch.setenv("FRALKIT_PROFILE", "smoke")
    fk.studies.run(mod, [0, 1], store=store, device="cpu", show_progress=False)
    fk.studies.run(mod, [1, 2], store=store, device="cpu", show_progress=False)  # merged, no record twice
    data = json.loads((tmp_path / "fig" / "99_records.json").read_text())
    assert data["n_records"] == 3 and sum(data["devices"].values()) == 3 and "cpu" in next(iter(data["devices"]))
    assert len(data["records"]) == 3 and data["saved_between"][0] <= data["saved_between"][1]
    (tmp_path / "fig" / "99_records.json").unlink()
    fk.studies.run(mod, [0, 1], store=store, device="cpu", show_progress=False, compute=False)  # a drawing pass
    drawn = json.loads((tmp_path / "fig" / "99_records.json").read_text())
    assert drawn["n_records"] == 2 and fk.studies.provenance(store.records())["n_records"] == 3


def test_a_drawing_pass_names_each_missing_run_by_its_record_key(tmp_path, capsys):
    """JIN fine-tuned with FairAT and Table 7's ResNet-18 JIN are other runs than JIN: the list of missing runs
    tells them apart (method ``jin+fairat``, the backbone)."""
    from fralkit.studies import jin

    configs = jin.grid(**{**notebook_parameters("03", "smoke"), "strategies": "jin,jin+fairat", "seeds": [0],
                          "dataset": "synbols-utk", "table7": "jin"})
    assert studies.run("jin", configs, store=ResultStore(tmp_path), device="cpu", compute=False) == []
    listed = capsys.readouterr().out.split("left out: ")[1].strip().split("; ")
    assert sorted(listed) == ["synbols-utk resnet18 jin 0", "synbols-utk small_cnn jin 0",
                              "synbols-utk small_cnn jin+fairat 0"]


def _notebook_configs(notebook: str, overrides: dict, monkeypatch) -> list:
    """The configs notebook ``notebook``'s run cell builds when ``reproduce`` injects ``overrides``: its parameters
    cell executed, the injected values set, ``$FRALKIT_SET`` naming them, then the set-up cell's ``apply`` (which
    sets ``$FRALKIT_PROFILE``, as in a kernel; monkeypatch restores both) and the study's ``grid``."""
    import json

    from fralkit.profiles import NOTEBOOKS, SET_ENV, _notebooks_dir, apply

    nb = json.loads((_notebooks_dir() / NOTEBOOKS[notebook]).read_text())
    namespace: dict = {}
    exec("".join(next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))["source"]), namespace)
    namespace.update(overrides)
    monkeypatch.setenv(SET_ENV, ",".join(k for k in overrides if k != "profile"))
    return studies.of_notebook(notebook).grid(**apply(notebook, namespace))


def test_compute_fills_the_store_with_the_runs_the_notebook_draws(tmp_path, monkeypatch):
    """``python -m fralkit compute 03``: the records of the notebook's own configs (its drawing pass finds every one),
    computed once and loaded after; nothing is written into a figures folder."""
    from fralkit.__main__ import main
    from fralkit.studies import jin

    monkeypatch.delenv("FRALKIT_PROFILE", raising=False)
    monkeypatch.setenv("FRALKIT_FIGURES", str(tmp_path / "figures"))
    overrides = {"strategies": "rand", "seeds": [0], "dataset": "synbols-utk", "table7": ""}
    argv = ["compute", "03", "--profile", "smoke", "--results", str(tmp_path / "store"), "--device", "cpu"]
    assert main(argv + [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]) == 0
    assert not (tmp_path / "figures").exists() and "FRALKIT_PROFILE" not in os.environ
    store = ResultStore(tmp_path / "store")
    drawn = _notebook_configs("03", {**overrides, "profile": "smoke"}, monkeypatch)
    assert [c.strategy for c in drawn] == ["rand"] and studies.missing("jin", drawn, store) == []
    monkeypatch.setattr(jin, "run", lambda *a, **k: pytest.fail("a stored run was computed again"))
    again = studies.compute("03", "smoke", overrides, store=store, device="cpu", show_progress=False)
    assert [r["config"]["method"] for r in again] == ["rand"]


def test_compute_passes_the_studys_run_options_and_checks_its_parameters(tmp_path, monkeypatch):
    from fralkit.studies import adversarial

    seen = []
    monkeypatch.setattr(adversarial, "run", lambda config, **kw: seen.append(kw.get("cuda_graph")) or [])
    studies.compute("02", "smoke", {"cuda_graph": True, "seeds": 1}, store=ResultStore(tmp_path), device="cpu",
                    show_progress=False)
    assert seen and set(seen) == {True}
    with pytest.raises(ValueError, match=r"--set \['nope'\] not parameters of notebook 03"):
        studies.compute("03", "smoke", {"nope": 1}, store=ResultStore(tmp_path))
    with pytest.raises(ValueError, match="n takes an int, got 'abc'"):
        studies.compute("03", "smoke", {"n": "abc"}, store=ResultStore(tmp_path))
    with pytest.raises(ValueError, match="unknown notebook '07'"):
        studies.compute("07", "smoke", {}, store=ResultStore(tmp_path))


def test_compute_runs_one_part_where_its_values_equal_the_quick_ones(tmp_path, monkeypatch, capsys):
    """Under ``gpu`` (three data sets and Table 7), ``dataset=synbols-utk`` and ``table7=`` equal the parameters
    cell's values and still make one part: seed 0's 14 MobileNetV2 runs on synbols-utk, the notebook's own."""
    overrides = {"dataset": "synbols-utk", "seeds": [0], "table7": ""}
    store = ResultStore(tmp_path)
    assert studies.compute("03", "gpu", {**overrides, "run": False}, store=store, show_progress=False) == []
    listed = capsys.readouterr().out.split("left out: ")[1].strip().split("; ")
    drawn = _notebook_configs("03", {**overrides, "profile": "gpu"}, monkeypatch)
    assert len(listed) == 14 and all(name.startswith("synbols-utk mobilenetv2 ") for name in listed)
    keys = [c.record_config() for c in drawn]
    assert listed == [f"{k['dataset']} {k['backbone']} {k['method']} {k['seed']}" for k in keys]


def test_the_cost_benchmark_builds_a_part_as_compute_and_the_notebook_do(monkeypatch):
    """``benchmarks/fral_study_cost.py`` times the configs ``compute 03`` runs and the notebook draws (one path:
    ``studies.notebook_configs``), Table 7 only when asked, and its ``--set`` is checked as ``reproduce``'s is."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fral_study_cost.py"
    spec = importlib.util.spec_from_file_location("fral_study_cost", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    part = bench.part_configs("gpu", "synbols-ham", 1, "jin,rand", overrides={"compile": False})
    over = {"dataset": "synbols-ham", "seeds": [1], "strategies": "jin,rand", "table7": "", "compile": False}
    assert part == studies.notebook_configs("03", "gpu", over)[0]
    drawn = _notebook_configs("03", {**over, "profile": "gpu"}, monkeypatch)
    assert [c.record_config() for c in part] == [c.record_config() for c in drawn]
    assert [(c.dataset, c.strategy, c.seed, c.compile) for c in part] == [("synbols-ham", "jin", 1, False),
                                                                           ("synbols-ham", "rand", 1, False)]
    t7 = bench.part_configs("gpu", "synbols-utk", 2, "", overrides={"table7": "fairal"})
    assert [(c.backbone, c.strategy, c.seed) for c in t7] == [("resnet18", "fairal", 2)]
    with pytest.raises(ValueError, match=r"--set \['finetune_lr'\] not parameters of notebook 03"):
        bench.part_configs("gpu", "synbols-utk", 0, "rand", overrides={"finetune_lr": 0.1})
