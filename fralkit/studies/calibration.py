"""Calibration of the FRAL presets: is the task learnable, and is the designated group disadvantaged?

The JIN paper's setting needs a group that a robust model serves worse in *both* clean and robust
accuracy (its Table 1: the group worst in clean accuracy is also the least robust). For each preset this
measures, on the test split:

1. standard training on all training labels: clean accuracy overall and per group (should be >= 85 %);
2. TRADES (beta 6, PGD eps 4/255, step 2/255) on the FRAL initial labelled set (20 % of train): clean and
   PGD robust accuracy per group; the designated group should trail the other by >= 3 points in both.

Results are result-store records (study ``calibration``), so notebook 01 re-measures and renders them.
"""
from __future__ import annotations

import time

from ..data import DATASETS, PRESETS, fral_split, load_dataset
from ..experiments import ResultStore, save_table
from .protocol import draw
from ..metrics import group_report
from ..models import make_model
from ..train import fit
from ..runtime import resolve_device, set_seed

__all__ = ["DISADVANTAGED", "calibrate_preset", "grid", "keys", "run", "parts", "tables", "figures", "claims", "FIGURES", "calibration_table", "calibration_group_table", "describe_calibration",
           "CALIBRATION_TARGETS"]

# The group each FRAL preset is designed to disadvantage (index into its group names), read from the registry.
DISADVANTAGED = {name: info.disadvantaged for name, info in DATASETS.items() if info.disadvantaged is not None}
CALIBRATION_TARGETS = {"std_acc_min": 0.85, "gap_min": 0.03}


def calibrate_preset(name: str, *, n: int = 15_000, backbone: str = "mobilenetv2", std_epochs: int = 12,
                     trades_epochs: int = 30, init_frac: float = 0.2, seed: int = 0, device: str = "auto",
                     batch_size: int = 256, lr: float = 0.1, eps: float = 4 / 255, alpha: float = 2 / 255, steps: int = 5,
                     beta: float = 6.0, warmup_epochs: float = 0.0, grad_clip: float | None = None,
                     store: ResultStore | None = None, force: bool = False, keys_only: bool = False) -> dict:
    """Measure one preset (see module docstring); returns the result record (cached in ``store``).

    ``warmup_epochs`` and ``grad_clip`` apply to the TRADES run (``fralkit.train.fit``): TRADES from scratch
    at lr 0.1 on a few thousand images can diverge without them (logits grow, then NaN).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown Synbols preset {name!r}; valid: {sorted(PRESETS)}")
    store = store or ResultStore()
    dev = resolve_device(device)
    config = {"study": "calibration", "dataset": name, "method": f"{backbone}", "seed": seed, "n": n,
              "std_epochs": std_epochs, "trades_epochs": trades_epochs, "init_frac": init_frac, "batch_size": batch_size,
              "lr": lr, "eps": eps, "alpha": alpha, "steps": steps, "beta": beta}
    if warmup_epochs or grad_clip is not None:  # keyed only when set, so earlier records stay valid
        config.update(warmup_epochs=float(warmup_epochs), grad_clip=grad_clip)
    if keys_only:  # the record key, nothing computed (``keys``)
        return config
    if store.has(config) and not force:
        return store.load(config)
    splits = load_dataset(name, seed=seed, n=n)
    train, test = splits.train.to(dev), splits.test.to(dev)
    timings = {}

    set_seed(seed)
    std_model = make_model(backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size).to(dev)
    t0 = time.time()
    fit(std_model, train, objective="standard", epochs=std_epochs, batch_size=batch_size, lr=lr, seed=seed, device=dev)
    timings["standard_fit_s"] = time.time() - t0
    std = group_report(std_model, test, robust=False, batch_size=1024)

    set_seed(seed)
    labelled, _ = fral_split(splits.train, init_frac=init_frac, seed=seed)
    rob_model = make_model(backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size).to(dev)
    t0 = time.time()
    fit(rob_model, train, idx=labelled, objective="trades", epochs=trades_epochs, batch_size=batch_size, lr=lr,
        eps=eps, alpha=alpha, steps=steps, beta=beta, warmup_epochs=warmup_epochs, grad_clip=grad_clip, seed=seed,
        device=dev)
    timings["trades_fit_s"] = time.time() - t0
    rob = group_report(rob_model, test, robust=True, eps=eps, alpha=alpha, steps=steps, batch_size=1024)

    bad = DISADVANTAGED.get(name, train.num_groups - 1)
    other = [gi for gi in range(train.num_groups) if gi != bad]
    metrics = {"std_acc": std["std_overall"], "labels_trades": int(len(labelled))}
    for gi, gname in enumerate(train.groups):
        metrics[f"std_acc_{gname}"] = std[f"std_group_{gi}"]
        metrics[f"trades_clean_{gname}"] = rob[f"std_group_{gi}"]
        metrics[f"trades_rob_{gname}"] = rob[f"rob_group_{gi}"]
    best_other_clean = max(rob[f"std_group_{gi}"] for gi in other)
    best_other_rob = max(rob[f"rob_group_{gi}"] for gi in other)
    metrics["disadvantaged_group"] = train.groups[bad]
    metrics["clean_gap"] = best_other_clean - rob[f"std_group_{bad}"]
    metrics["robust_gap"] = best_other_rob - rob[f"rob_group_{bad}"]
    metrics["learnable"] = bool(metrics["std_acc"] >= CALIBRATION_TARGETS["std_acc_min"])
    metrics["disadvantaged_both"] = bool(metrics["clean_gap"] >= CALIBRATION_TARGETS["gap_min"]
                                         and metrics["robust_gap"] >= CALIBRATION_TARGETS["gap_min"])
    return store.save(config, metrics, timings=timings, device=dev)


def calibration_table(records: list[dict]):
    """One row per preset: standard accuracy, TRADES clean/robust per group, gaps and pass/fail, in %."""
    import pandas as pd

    rows = []
    for rec in records:
        m, c = rec["metrics"], rec["config"]
        row = {"dataset": c["dataset"], "backbone": c["method"], "n_train": c["n"],
               "std acc (all labels)": 100 * m["std_acc"]}
        # Fixed columns for every preset (group names differ between presets): the disadvantaged group and
        # the best other group, so the table has no empty cells.
        bad = m["disadvantaged_group"]
        groups = [k[len("trades_clean_"):] for k in m if k.startswith("trades_clean_")]
        others = [gname for gname in groups if gname != bad]
        best = max(others, key=lambda gname: m[f"trades_clean_{gname}"]) if others else bad
        row["disadvantaged group"], row["other group"] = bad, best
        for kind in ("clean", "rob"):
            row[f"TRADES 20% {kind} [other]"] = 100 * m[f"trades_{kind}_{best}"]
            row[f"TRADES 20% {kind} [disadvantaged]"] = 100 * m[f"trades_{kind}_{bad}"]
        row["clean gap"] = 100 * m["clean_gap"]
        row["robust gap"] = 100 * m["robust_gap"]
        row["learnable (>=85%)"] = "yes" if m["learnable"] else "no"
        row["disadvantaged in both (>=3 pts)"] = "yes" if m["disadvantaged_both"] else "no"
        row["device"] = rec.get("provenance", {}).get("device", "?")
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset").round(1)


def describe_calibration(records: list[dict]) -> str:
    """Plain sentences: for each preset, whether the run meets the two calibration targets, with the numbers."""
    lines = []
    for rec in records:
        m, c = rec["metrics"], rec["config"]
        lines.append(
            f"{c['dataset']} (seed {c['seed']}, {c['method']}, n={c['n']}, {rec.get('device', '?')}): "
            f"standard accuracy {100 * m['std_acc']:.1f} % -> {'learnable' if m['learnable'] else 'NOT learnable (target >= 85 %)'}; "
            f"under TRADES on {m['labels_trades']} labels the '{m['disadvantaged_group']}' group trails by "
            f"{100 * m['clean_gap']:.1f} clean and {100 * m['robust_gap']:.1f} robust points -> "
            f"{'disadvantaged in both, as in JIN Table 1' if m['disadvantaged_both'] else 'target (>= 3 points in both) NOT met'}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- the study protocol
NOTEBOOK = "01"


def grid(*, datasets: str = "synbols-utk", calibrate: bool = True, calib_n: int = 15_000,
         calib_backbone: str = "mobilenetv2", calib_std_epochs: int = 12, calib_trades_epochs: int = 30,
         calib_lr: float = 0.1, calib_warmup_epochs: float = 0.0, calib_grad_clip: float = 0.0, seeds: int = 1,
         **_notebook) -> list[dict]:
    """Notebook 01's calibration runs: every FRAL preset among ``datasets`` x seed (none when ``calibrate`` is
    off); other notebook parameters (the browser's ``n``, ``seed``, ``data_root``, ...) do not enter."""
    names = [s.strip() for s in datasets.split(",") if s.strip()] if isinstance(datasets, str) else list(datasets)
    fral = [name for name in names if name in DISADVANTAGED]
    return [dict(name=name, n=calib_n, backbone=calib_backbone, std_epochs=calib_std_epochs,
                 trades_epochs=calib_trades_epochs, lr=calib_lr, warmup_epochs=calib_warmup_epochs,
                 grad_clip=calib_grad_clip or None, seed=s)
            for name in (fral if calibrate else []) for s in range(seeds)]


def keys(config: dict) -> list[dict]:
    return [calibrate_preset(**config, keys_only=True)]


def run(config: dict, *, store: ResultStore, device, cache: dict) -> list[dict]:
    return [calibrate_preset(**config, store=store, device=device)]


def parts(configs):
    return [[c] for c in configs]


def calibration_group_table(records: list[dict]):
    """One row per (data set, group): its role, TRADES clean and robust accuracy on the initial 20 %, and the
    preset's verdict, in %; the standard model's accuracy is the preset's (all groups together)."""
    import pandas as pd

    rows = []
    for rec in records:
        m, c = rec["metrics"], rec["config"]
        bad = m["disadvantaged_group"]
        for gname in [k[len("trades_clean_"):] for k in m if k.startswith("trades_clean_")]:
            rows.append({"dataset": c["dataset"], "group": gname,
                         "role": "disadvantaged" if gname == bad else "other",
                         "TRADES 20% clean": 100 * m[f"trades_clean_{gname}"],
                         "TRADES 20% rob": 100 * m[f"trades_rob_{gname}"],
                         "std acc (all labels)": 100 * m["std_acc"], "backbone": c["method"], "n_train": c["n"],
                         "disadvantaged in both (>=3 pts)": "yes" if m["disadvantaged_both"] else "no",
                         "device": rec.get("device", "?")})
    return pd.DataFrame(rows).round(1)


def tables(records, *, save: bool = True) -> dict:
    """The calibration per (data set, group) (``calibration``, saved as ``01_calibration``) and one row per preset
    with its gaps (``summary``, ``01_calibration_summary``); empty without records."""
    if not records:
        return {}
    out = {"calibration": calibration_group_table(records), "summary": calibration_table(records)}
    if save:
        save_table(out["calibration"], f"{NOTEBOOK}_calibration", index=False)
        save_table(out["summary"], f"{NOTEBOOK}_calibration_summary")
    return out


FIGURES: dict = {}  # notebook 01's figures show the data sets themselves (``fralkit.plots``), not records


def figures(records, *names: str) -> list:
    return draw(NOTEBOOK, FIGURES, records, names)


def claims(records) -> str:
    return describe_calibration(records) if records else "calibration skipped (calibrate=False)"
