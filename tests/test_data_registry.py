"""The data-set registry: one entry per data set holding its facts; the name and seed checks of ``load_dataset``."""
from dataclasses import replace

import pytest

import fralkit as fk
from fralkit.data import DATASETS, PRESETS, REAL_DATASETS, DatasetInfo, dataset_facts, load_dataset


def test_every_entry_has_a_loader_a_metric_and_a_unique_title():
    assert all(isinstance(info, DatasetInfo) and callable(info.loader) for info in DATASETS.values())
    assert {info.metric for info in DATASETS.values()} <= {"acc", "f1"}
    titles = [info.title for info in DATASETS.values()]
    assert len(set(titles)) == len(titles) and all(titles)
    assert fk.DATASETS is DATASETS


def test_the_facts_of_the_papers():
    # macro-F1 and class-balanced oversampling for HAM10000 and its stand-in (JIN §4.1), nowhere else
    assert {n for n, i in DATASETS.items() if i.metric == "f1"} == {"synbols-ham", "ham10000"}
    assert {n for n, i in DATASETS.items() if i.oversample} == {"synbols-ham", "ham10000"}
    assert {n: i.disadvantaged for n, i in DATASETS.items() if i.disadvantaged is not None} == {
        "synbols-utk": 1, "synbols-cinic": 1, "synbols-ham": 1}
    assert DATASETS["synbols-minority"].title == "Minority group"
    assert DATASETS["synbols-sensitive"].title == "Sensitive attribute"
    assert {n for n, i in DATASETS.items() if i.synthetic} == set(PRESETS) | {"synbols-mnist"}  # the generated ones
    assert REAL_DATASETS == ("utkface", "cinic10", "ham10000", "mnist", "cifar10")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; valid: \[.*'synbols-utk'.*'utkface'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; valid: \["):
        dataset_facts("imagenet")
    custom = dataset_facts("tiny", strict=False)   # data a caller built: the plain defaults
    assert (custom.title, custom.metric, custom.oversample, custom.disadvantaged) == ("tiny", "acc", False, None)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_a_bad_seed_is_refused_before_any_work(seed, monkeypatch):
    def boom(**kw):
        raise AssertionError("the loader ran")

    monkeypatch.setitem(DATASETS, "synbols-utk", replace(DATASETS["synbols-utk"], loader=boom))
    with pytest.raises(ValueError, match=rf"seed must be a non-negative integer, got seed={seed!r}$"):
        load_dataset("synbols-utk", seed=seed)


def test_entries_are_called_like_their_loaders(monkeypatch):
    seen = {}
    monkeypatch.setitem(DATASETS, "synbols-utk", replace(DATASETS["synbols-utk"],
                                                         loader=lambda **kw: seen.update(kw) or "splits"))
    assert DATASETS["synbols-utk"](seed=3, n=10) == "splits" and seen == {"root": None, "seed": 3, "n": 10}
    assert load_dataset("synbols-utk", seed=4, n=12) == "splits" and seen["seed"] == 4


def test_dataset_root_accepts_the_download_or_its_parent(tmp_path):
    from fralkit.data import dataset_root

    (tmp_path / "cinic10").mkdir()
    assert dataset_root("cinic10", tmp_path) == str(tmp_path / "cinic10")  # a parent holding cinic10/
    assert dataset_root("utkface", tmp_path) == str(tmp_path)  # the download itself
    assert dataset_root("utkface", None) is None


def test_farmurs_mnist_stand_in_is_a_registry_entry():
    from fralkit.data import DATASETS, load_dataset

    assert DATASETS["synbols-mnist"].synthetic and "FARMUR" in DATASETS["synbols-mnist"].papers
    splits = load_dataset("synbols-mnist", n=20, n_test=10, size=12, seed=0)
    assert splits.train.channels == 1 and len(splits.train) == 20 and len(splits.test) == 10
    assert splits.train.classes == list("0123456789")
