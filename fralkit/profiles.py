"""Notebook parameters for each run profile.

``PROFILES[notebook][profile]`` is the dict papermill injects into that notebook's ``parameters`` cell
(``profile`` itself is added by the runner). Profiles:

- ``smoke``: seconds per notebook on a 2-core CPU; what the tests run.
- ``quick``: minutes on a laptop CPU (the default of ``python -m fralkit reproduce``); built-in data.
- ``gpu``: one GPU, larger synthetic sets and the papers' architectures; produces the committed figures.
- ``paper``: the papers' protocols on the real data sets (set ``data_root``; hours on a GPU).
"""
from __future__ import annotations

PROFILE_NAMES = ("smoke", "quick", "gpu", "paper")

PROFILES: dict[str, dict[str, dict]] = {
    # 01: data sets, sample grids, counts, splits; calibration of the FRAL presets (standard vs TRADES).
    "01": {
        "smoke": {"datasets": "synbols-utk,synbols-minority", "n": 400, "calibrate": True, "calib_n": 600,
                  "calib_backbone": "small_cnn", "calib_std_epochs": 1, "calib_trades_epochs": 1, "seeds": 1},
        "quick": {"datasets": "synbols-utk,synbols-cinic,synbols-ham,synbols-minority,synbols-sensitive,synbols-farmur",
                  "n": 4000, "calibrate": True, "calib_n": 3000, "calib_backbone": "small_cnn",
                  "calib_std_epochs": 4, "calib_trades_epochs": 6, "seeds": 1},
        "gpu": {"datasets": "synbols-utk,synbols-cinic,synbols-ham,synbols-minority,synbols-sensitive,synbols-farmur",
                "n": 15000, "calibrate": True, "calib_n": 15000, "calib_backbone": "mobilenetv2",
                "calib_std_epochs": 12, "calib_trades_epochs": 30, "seeds": 1},
        "paper": {"datasets": "utkface,cinic10,ham10000", "n": 0, "calibrate": False, "calib_n": 0,
                  "calib_backbone": "mobilenetv2", "calib_std_epochs": 12, "calib_trades_epochs": 30, "seeds": 1},
    },
    "02": {"smoke": {}, "quick": {}, "gpu": {}, "paper": {}},
    "03": {"smoke": {}, "quick": {}, "gpu": {}, "paper": {}},
    "04": {"smoke": {}, "quick": {}, "gpu": {}, "paper": {}},
    "05": {"smoke": {}, "quick": {}, "gpu": {}, "paper": {}},
}


def notebook_parameters(notebook: str, profile: str) -> dict:
    """The parameters of notebook ``"01"``..``"05"`` under ``profile`` (with ``profile`` itself)."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILE_NAMES)}")
    if notebook not in PROFILES:
        raise ValueError(f"unknown notebook {notebook!r}; valid: {sorted(PROFILES)}")
    return {**PROFILES[notebook][profile], "profile": profile}
