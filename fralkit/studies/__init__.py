"""The studies behind the notebooks, one module each, on one protocol; ``STUDIES`` is the registry ``reproduce`` reads.

Every study module defines:

| name | what it does |
|---|---|
| ``NOTEBOOK`` | the notebook that tells the study (``"02"``) |
| ``grid(**params) -> configs`` | the run configs of a notebook's parameters (``fk.profiles.apply``'s dict) |
| ``keys(config) -> [dict]`` | the result-store configs (record keys) one config produces |
| ``run(config, *, store, device, cache) -> [record]`` | compute one config and save its records |
| ``parts(configs) -> [[config]]`` | groups of configs that can run as independent processes |
| ``tables(records, save=True) -> {name: DataFrame}`` | every table, rendered from records only |
| ``FIGURES`` / ``figures(records, *names) -> [Path]`` | every figure, drawn from records and saved |
| ``claims(records) -> str`` | the paper's claims against this run: agrees / disagrees / inconclusive |

A notebook then reads the same in every study::

    configs = study.grid(**params)
    records = fk.studies.run(study, configs, store=store, device=dev)
    study.tables(records); study.figures(records, "groups"); print(study.claims(records))

A new study is one module with these names plus one line in ``STUDIES``. A study may also name ``RUN_OPTIONS``:
notebook parameters that its ``run`` takes as speed settings (``cuda_graph`` of notebook 02).

``compute(notebook, profile, overrides)`` runs a notebook's study exactly as the notebook would, without Jupyter
(``python -m fralkit compute 03 --profile gpu --set dataset=synbols-utk --set seeds=[0]``): a GPU host without a
kernel fills the result store, and ``reproduce --set run=False`` draws the figures from it anywhere.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Sequence

from ..experiments import ResultStore
from ..profiles import base_parameters, check_parameters, parse_overrides, resolve
from ..utils import progress, resolve_device
from . import adversarial, bald_grad, calibration, farmur, jin

__all__ = ["STUDIES", "PROTOCOL", "get", "of_notebook", "run", "compute", "notebook_configs", "collect", "missing", "parts", "provenance"]

STUDIES: dict[str, ModuleType] = {
    "calibration": calibration,
    "adversarial": adversarial,
    "jin": jin,
    "farmur": farmur,
    "bald_grad": bald_grad,
}

PROTOCOL = ("NOTEBOOK", "FIGURES", "grid", "keys", "run", "parts", "tables", "figures", "claims")


def get(study: str | ModuleType) -> ModuleType:
    """The study module of a ``STUDIES`` name (or the module itself)."""
    if isinstance(study, ModuleType):
        return study
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; valid: {sorted(STUDIES)}")
    return STUDIES[study]


def of_notebook(notebook: str) -> ModuleType:
    """The study module that notebook ``"01"``..``"05"`` tells."""
    found = [mod for mod in STUDIES.values() if mod.NOTEBOOK == notebook]
    if not found:
        raise ValueError(f"no study for notebook {notebook!r}; valid: {sorted(m.NOTEBOOK for m in STUDIES.values())}")
    return found[0]


def missing(study: str | ModuleType, configs: Sequence, store: ResultStore) -> list:
    """The configs of which at least one record is not in ``store`` yet (what ``run`` would compute)."""
    mod = get(study)
    return [c for c in configs if not all(store.has(k) for k in mod.keys(c))]


def collect(study: str | ModuleType, configs: Sequence, store: ResultStore) -> list[dict]:
    """Exactly the stored records of ``configs``, in order (missing ones left out): tables are drawn from files."""
    mod = get(study)
    return [store.load(k) for c in configs for k in mod.keys(c) if store.has(k)]


def run(study: str | ModuleType, configs: Sequence, *, store: ResultStore | None = None, device="auto",
        compute: bool = True, show_progress: bool = True, **options) -> list[dict]:
    """Every record of ``configs``: stored ones are loaded, the others computed by ``study.run`` and saved.

    Args:
        study: a ``STUDIES`` name or a study module.
        configs: from ``study.grid``.
        store: the result store (default ``ResultStore()``: ``$FRALKIT_RESULTS`` or ``results/``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        compute: ``False`` only loads what is stored (draw tables from another machine's records) and prints what is
            missing.
        show_progress: a progress bar over the configs.
        **options: speed settings of the study's ``run`` that do not change results (not part of the record keys).
    """
    mod = get(study)
    store = store if store is not None else ResultStore()
    dev = resolve_device(device)
    todo = missing(mod, configs, store)
    if not compute:
        if todo:
            print(f"compute=False: {len(todo)} of {len(configs)} runs missing, left out: "
                  + "; ".join(_describe(mod.keys(c)[0]) for c in todo))
        records = collect(mod, configs, store)
        write_provenance(mod, records)
        return records
    cache: dict = {}  # what consecutive configs share (a data set, a pretrained trunk)
    records = []
    pending = {id(c) for c in todo}
    for cfg in progress(configs, desc=f"{mod.__name__.rsplit('.', 1)[-1]} runs", total=len(configs),
                        disable=None if show_progress else True):
        if id(cfg) in pending:
            records += mod.run(cfg, store=store, device=dev, cache=cache, **options)
        else:
            records += [store.load(k) for k in mod.keys(cfg)]
    write_provenance(mod, records)
    return records


def notebook_configs(notebook: str, profile: str = "gpu", overrides: dict | None = None) -> tuple[list, dict]:
    """The configs notebook ``notebook``'s run cell builds under ``profile`` with ``overrides`` (``reproduce --set``:
    checked, then resolved as in the notebook's kernel, the overrides set on purpose), and the resolved parameters."""
    overrides = dict(overrides or {})
    check_parameters(notebook, profile, overrides)
    params = resolve(notebook, {**base_parameters(notebook), **overrides, "profile": profile}, explicit=overrides)
    return of_notebook(notebook).grid(**params), params


def compute(notebook: str, profile: str = "gpu", overrides: dict | None = None, *, store: ResultStore | None = None,
            device: str | None = None, show_progress: bool = True) -> list[dict]:
    """Every record of notebook ``notebook``'s study under ``profile`` with ``overrides`` (``reproduce --set``), the
    stored ones loaded and the others computed: the configs the notebook's own run cell builds, so its drawing pass
    (``run=False``) finds them. The parameters resolve as in the notebook under ``reproduce`` (``fk.profiles.resolve``,
    the overrides set on purpose); ``device`` replaces the ``device`` parameter, and ``run=False`` (notebooks 01, 03,
    04) only loads. Outside a notebook's kernel, no figures folder gets provenance files."""
    configs, params = notebook_configs(notebook, profile, overrides)
    mod = of_notebook(notebook)
    options = {name: params[name] for name in getattr(mod, "RUN_OPTIONS", ()) if name in params}
    return run(mod, configs, store=store, device=device or params.get("device", "auto"),
               compute=bool(params.get("run", True)), show_progress=show_progress, **options)


def main(argv: list[str] | None = None) -> int:
    """``python -m fralkit compute NN [--profile P] [--set KEY=VALUE ...] [--results DIR] [--device D]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fralkit compute",
                                     description="compute a notebook's study runs into the result store, without "
                                                 "Jupyter; draw them with reproduce --set run=False")
    parser.add_argument("notebook", help="01..05")
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a notebook parameter, as reproduce takes it (repeatable)")
    parser.add_argument("--results", help="result-store folder (default: results/ or $FRALKIT_RESULTS)")
    parser.add_argument("--device", help="auto, cpu or cuda (default: the profile's)")
    args = parser.parse_args(argv)
    store = ResultStore(args.results) if args.results else ResultStore()
    try:
        records = compute(args.notebook, args.profile, parse_overrides(args.set), store=store, device=args.device)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"notebook {args.notebook} ({args.profile}): {len(records)} records in {store.root}")
    return 0


def _source(rec: dict) -> dict:
    """Where one record was computed: its key and its provenance's device, git commit and save time."""
    prov = rec.get("provenance") or {}
    return {"key": rec.get("key"), **{k: prov.get(k) for k in ("device", "git_commit", "saved_at")}}


def _summary(sources: Sequence[dict]) -> dict:
    count = lambda field: {str(v): sum(str(e[field]) == str(v) for e in sources)  # noqa: E731
                           for v in dict.fromkeys(e[field] for e in sources)}
    saved = sorted(str(e["saved_at"]) for e in sources if e.get("saved_at"))
    return {"n_records": len(sources), "devices": count("device"), "git_commits": count("git_commit"),
            "saved_between": [saved[0], saved[-1]] if saved else None}


def provenance(records: Sequence[dict]) -> dict:
    """Where ``records`` were computed: counts per device and per git commit, and the first and last save time.
    A notebook may draw records computed elsewhere (a GPU machine's store, rendered on a laptop); this says so."""
    return _summary([_source(r) for r in records])


def write_provenance(mod: ModuleType, records: Sequence[dict]) -> None:
    """Merge where ``records`` were computed into ``<figures>/<NN>_records.json`` (``reproduce`` copies its summary
    into the manifest entry of the notebook). Only inside a notebook run (``$FRALKIT_PROFILE``, set by the set-up
    cell); a notebook that draws several times adds to the same file, one entry per record."""
    import json

    from ..utils import atomic_write_json, figures_dir

    if not os.environ.get("FRALKIT_PROFILE") or not records:
        return
    path = figures_dir() / f"{mod.NOTEBOOK}_records.json"
    try:
        before = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        before = {}
    new = {e["key"]: e for e in map(_source, records)}
    sources = [e for e in before.get("records", []) if e.get("key") not in new] + list(new.values())
    atomic_write_json(path, {**_summary(sources), "records": sorted(sources, key=lambda e: str(e["key"]))})


def parts(study: str | ModuleType, configs: Sequence) -> list[list]:
    """``study.parts(configs)``: groups of configs that may run in separate processes sharing one store."""
    return get(study).parts(configs)


def _describe(key: dict) -> str:
    """A missing run as its record key names it: data set, backbone, row, method (``jin+fairat``: the strategy and
    its fine-tuning objective) and seed."""
    fields = ("dataset", "backbone", "row", "method" if "method" in key else "strategy", "seed")
    return " ".join(str(key[k]) for k in fields if k in key)
