"""Profiles: the parameters cell is the quick profile; the others list only what differs; ``apply`` resolves them."""
import os

import pytest

from fralkit.profiles import NOTEBOOKS, PROFILE_NAMES, PROFILES, apply, base_parameters, notebook_parameters


def test_every_notebook_has_every_profile_and_only_known_keys():
    assert sorted(PROFILES) == sorted(NOTEBOOKS)
    for key, profiles in PROFILES.items():
        base = base_parameters(key)
        assert set(profiles) == {"smoke", "gpu", "paper"}, key
        for name, diff in profiles.items():
            unknown = set(diff) - set(base)
            assert not unknown, f"{key}/{name}: {sorted(unknown)} are not parameters of the notebook"


def test_profiles_list_only_differences():
    for key, profiles in PROFILES.items():
        base = base_parameters(key)
        for name, diff in profiles.items():
            same = [k for k, v in diff.items() if base[k] == v]
            assert not same, f"{key}/{name} restates quick values {same}"


def test_quick_is_the_parameters_cell():
    for key in PROFILES:
        params = notebook_parameters(key, "quick")
        assert params == {**base_parameters(key), "profile": "quick"}


def test_apply_sets_the_profile_values_and_keeps_overrides():
    base = base_parameters("03")
    ns = dict(base, profile="smoke")
    out = apply("03", ns)
    assert ns["n"] == PROFILES["03"]["smoke"]["n"] and out["n"] == ns["n"]
    assert ns["batch_size"] == base["batch_size"]  # smoke does not change it
    ns = dict(base, profile="smoke", n=123)  # e.g. papermill -p profile smoke -p n 123
    assert apply("03", ns)["n"] == 123
    assert apply("03", dict(base))["n"] == base["n"]  # quick


def test_unknown_profile_or_notebook_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        notebook_parameters("01", "fast")
    with pytest.raises(ValueError, match="unknown notebook '07'"):
        notebook_parameters("07", "smoke")
    with pytest.raises(ValueError, match="unknown profile"):
        apply("01", {**base_parameters("01"), "profile": "huge"})
    assert set(PROFILE_NAMES) == {"smoke", "quick", "gpu", "paper"}


def test_a_value_set_on_purpose_wins_even_at_its_quick_value(monkeypatch):
    """``--set dataset=synbols-utk`` under ``gpu`` (whose profile lists three data sets) is one data set: ``resolve``
    keeps the names in ``explicit``, and ``apply`` (the notebook's call) those in ``$FRALKIT_SET``."""
    from fralkit.profiles import SET_ENV, resolve

    base = base_parameters("03")
    assert base["dataset"] == "synbols-utk" and PROFILES["03"]["gpu"]["dataset"] != "synbols-utk"
    ns = dict(base, profile="gpu", dataset="synbols-utk", table7="")
    assert resolve("03", dict(ns))["dataset"] == PROFILES["03"]["gpu"]["dataset"]  # unmarked: the profile's
    kept = resolve("03", dict(ns), explicit=["dataset", "table7"])
    assert kept["dataset"] == "synbols-utk" and kept["table7"] == "" and kept["n"] == PROFILES["03"]["gpu"]["n"]
    monkeypatch.setenv(SET_ENV, "dataset,table7")
    monkeypatch.delenv("FRALKIT_PROFILE", raising=False)
    assert apply("03", dict(ns)) == kept
    assert os.environ["FRALKIT_PROFILE"] == "gpu"
