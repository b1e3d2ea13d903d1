import pytest

from fralkit.profiles import PROFILE_NAMES, PROFILES, notebook_parameters
from fralkit.reproduce import NOTEBOOKS


def test_every_notebook_has_every_profile():
    assert sorted(PROFILES) == sorted(NOTEBOOKS)
    for key, profiles in PROFILES.items():
        assert set(profiles) == set(PROFILE_NAMES), key


def test_parameters_are_flat_literals():
    for key in PROFILES:
        for profile in PROFILE_NAMES:
            params = notebook_parameters(key, profile)
            assert params["profile"] == profile
            for name, value in params.items():
                assert value is None or isinstance(value, (str, int, float, bool)), (key, profile, name)


def test_unknown_profile_or_notebook():
    with pytest.raises(ValueError, match="unknown profile"):
        notebook_parameters("01", "fast")
    with pytest.raises(ValueError, match="unknown notebook"):
        notebook_parameters("07", "smoke")
