"""Notebook 02's study: natural vs PGD-AT vs TRADES vs FairAT, group and class robustness, over seeds.

For every (dataset, method, seed) a model is trained on the training split with one ``fralkit.train``
objective and evaluated on the test split by ``fralkit.metrics.group_report`` (clean and white-box PGD-5,
L-inf 4/255, step 2/255: the JIN threat model, also used for training). One result record per run goes to
``fralkit.experiments.ResultStore`` (study ``"adv_training"``); a run whose record exists is skipped. Tables and
the claim check are rendered from the records only.

The data set is generated once per dataset with ``data_seed`` (the same images for every seed); ``seed`` fixes
the initial weights, the batch order, augmentation and attack noise. HAM-like data sets (``synbols-ham``,
``ham10000``) use macro-F1 and class-balanced oversampling, as in the JIN paper's HAM10000 protocol (§4.1).

What the papers claim, checked by ``describe_claims``:

1. Adversarial training widens the performance gap between classes and between groups (JIN §1 and §3.2,
   citing Xu et al. 2021 and Tian et al. 2021; FairAT's abstract).
2. FairAT raises both the worst-class and the average robust accuracy over its adversarial-training baseline
   (FairAT abstract: +4.50 and +2.13 points for WRN-28-10 on CIFAR-10).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np
import torch

from ..data import DataSplits, dataset_facts, dataset_root, load_dataset
from ..experiments import ResultStore, flatten_records, format_mean_std, save_table, summarize
from ..metrics.groups import group_report
from ..models import make_model
from ..plots import adversarial as plots_adv
from ..runtime import resolve_device, set_seed
from ..train import Recipe, fit
from .protocol import draw

__all__ = ["ADV_METHODS", "METHOD_LABELS", "STUDY", "AdvConfig", "adv_configs", "load_adv_data", "run_adv",
           "grid", "keys", "run", "parts", "tables", "figures", "claims", "FIGURES", "datasets_of", "method_label", "table_groups", "classwise_frame", "history_frame",
           "group_frame", "render_tables", "describe_claims"]

STUDY = "adv_training"
# method -> the fit objective it trains with
ADV_METHODS: dict[str, str] = {"natural": "standard", "pgd_at": "pgd_at", "trades": "trades", "fairat": "fairat"}
METHOD_LABELS = {"natural": "Natural", "pgd_at": "PGD-AT", "trades": "TRADES", "fairat": "FairAT"}
_MAIN = ("std_worst", "std_disp", "std_avg", "rob_worst", "rob_disp", "rob_avg", "worst_class_rob", "avg_class_rob")
_MAIN_LABELS = {"std_worst": "Std Worst", "std_disp": "Std Disp", "std_avg": "Std Avg", "rob_worst": "Rob Worst",
                "rob_disp": "Rob Disp", "rob_avg": "Rob Avg", "worst_class_rob": "Rob worst class",
                "avg_class_rob": "Rob avg class"}


def method_label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def _names(value: str | Sequence[str], valid: Sequence[str] | None = None, what: str = "name") -> list[str]:
    items = [s.strip() for s in (value.split(",") if isinstance(value, str) else value) if str(s).strip()]
    if valid is not None:
        if items == ["all"]:
            return list(valid)
        bad = [s for s in items if s not in valid]
        if bad:
            raise ValueError(f"unknown {what}(s) {bad}; valid: {list(valid)}")
    return items


@dataclass(frozen=True)
class AdvConfig:
    """One run of the study. Defaults: the JIN threat model and TRADES' beta; FairAT's open choices as in
    ``fralkit.train`` (top 20 % by adversarial CE, one crop + cutout copy, cutout side 0.5, TRADES base)."""

    dataset: str = "synbols-utk"
    method: str = "trades"
    seed: int = 0
    backbone: str = "mobilenetv2"
    n: int = 4000  # training images (0: the whole training split)
    data_seed: int = 0
    data_root: str | None = None
    epochs: int = 15
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0  # linear lr warm-up (``fit``)
    grad_clip: float = 0.0  # global gradient-norm clip (0: none); both keep AT from scratch from diverging
    eps: float = 4 / 255
    alpha: float = 2 / 255
    steps: int = 5  # PGD steps of the evaluation attack
    train_steps: int = 0  # PGD steps of the training attack (0: ``steps``, as in the JIN protocol)
    beta: float = 6.0
    hard_frac: float = 0.2
    hard_by: str = "adv"
    hard_aug: str = "cutout"
    hard_aug_strength: float = 0.5
    fairat_base: str = "trades"
    metric: str = "auto"  # "acc", "f1", or "auto" (macro-F1 for HAM-like sets)
    oversample: str = "auto"  # "yes", "no", or "auto" (yes for HAM-like sets)
    curve_n: int = 256  # validation images for the per-epoch clean / robust curves (0: none)

    def __post_init__(self):
        if self.method not in ADV_METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {list(ADV_METHODS)}")

    @property
    def metric_name(self) -> str:
        return dataset_facts(self.dataset, strict=False).metric if self.metric == "auto" else self.metric

    @property
    def use_oversampling(self) -> bool:
        return dataset_facts(self.dataset, strict=False).oversample if self.oversample == "auto" else self.oversample == "yes"

    def record_config(self) -> dict:
        """The flat config that keys the result record (FairAT's options only for FairAT runs)."""
        cfg = {"study": STUDY, **asdict(self)}
        cfg["metric"], cfg["oversample"] = self.metric_name, self.use_oversampling
        if self.method != "fairat":
            for k in ("hard_frac", "hard_by", "hard_aug", "hard_aug_strength", "fairat_base"):
                cfg.pop(k)
        return cfg

    def data_key(self) -> tuple:
        return (self.dataset, self.n, self.data_seed, self.data_root)


def adv_configs(datasets: str | Sequence[str] = "synbols-utk", methods: str | Sequence[str] = "all",
                seeds: int | Sequence[int] = 3, **settings) -> list[AdvConfig]:
    """The grid dataset x seed x method with shared ``settings`` (``AdvConfig`` fields)."""
    unknown = set(settings) - {f.name for f in fields(AdvConfig)}
    if unknown:
        raise ValueError(f"unknown study setting(s) {sorted(unknown)}; valid: {sorted(f.name for f in fields(AdvConfig))}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    return [AdvConfig(dataset=d, method=m, seed=s, **settings) for d in _names(datasets, what="dataset")
            for s in seed_list for m in _names(methods, list(ADV_METHODS), "method")]


def load_adv_data(cfg: AdvConfig) -> DataSplits:
    """The splits of ``cfg.dataset``: Synbols presets generated with ``n`` training images; real data sets read
    from ``data_root`` (the download folder, or a parent holding ``<dataset>/``) and, with ``n > 0``, a seeded random subset of ``n`` training images."""
    if dataset_facts(cfg.dataset).synthetic:
        return load_dataset(cfg.dataset, root=cfg.data_root, seed=cfg.data_seed, **({"n": cfg.n} if cfg.n else {}))
    splits = load_dataset(cfg.dataset, root=dataset_root(cfg.dataset, cfg.data_root), seed=cfg.data_seed)
    if cfg.n and cfg.n < len(splits.train):
        keep = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(cfg.data_seed))[:cfg.n]
        splits = DataSplits(splits.train.subset(keep.sort().values), splits.val, splits.test)
    return splits


def run_adv(cfg: AdvConfig, *, store: ResultStore | None = None, device: str | torch.device = "auto",
            splits: DataSplits | None = None, show_progress: bool = True, force: bool = False,
            fit_options: dict | None = None) -> dict:
    """Train one model with ``cfg.method`` and evaluate it; returns (and stores) its result record.

    The record's ``metrics`` are ``group_report``'s flat scalars on the test split plus ``train_s``; its
    ``series["history"]`` holds the per-epoch history (training loss / accuracy, validation clean / robust accuracy on
    ``curve_n`` images), the ``classes`` and ``groups`` names. ``fit_options`` are speed settings passed to
    ``fit`` that do not change the computation (``cuda_graph``, ``compile``, ``fold_bn``): not part of the record key.
    """
    store = store if store is not None else ResultStore()
    rc = cfg.record_config()
    if store.has(rc) and not force:
        return store.load(rc)
    dev = resolve_device(device)
    splits = splits if splits is not None else load_adv_data(cfg)
    train, val, test = splits.train.to(dev), splits.val.to(dev), splits.test.to(dev)
    curve = val.subset(torch.arange(min(cfg.curve_n, len(val)))) if cfg.curve_n > 0 else None

    set_seed(cfg.seed)
    model = make_model(cfg.backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size).to(dev)
    objective = ADV_METHODS[cfg.method]
    opts = {}
    if objective == "fairat":
        opts = dict(hard_frac=cfg.hard_frac, hard_by=cfg.hard_by, hard_aug=cfg.hard_aug,
                    hard_aug_strength=cfg.hard_aug_strength, base=cfg.fairat_base)
    recipe = Recipe(objective=objective, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                    momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                    warmup_epochs=cfg.warmup_epochs, grad_clip=cfg.grad_clip or None, eps=cfg.eps, alpha=cfg.alpha,
                    steps=cfg.train_steps or cfg.steps, beta=cfg.beta, oversample=cfg.use_oversampling, options=opts)
    result = fit(model, train, recipe, seed=cfg.seed, device=dev, val=curve, val_robust=curve is not None,
                 show_progress=show_progress, **(fit_options or {}))
    t0 = time.perf_counter()
    report = group_report(model, test, metric=cfg.metric_name, eps=cfg.eps, alpha=cfg.alpha, steps=cfg.steps,
                          seed=cfg.seed)
    eval_s = time.perf_counter() - t0
    metrics = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    metrics["train_s"] = result.seconds
    metrics["train_images_per_s"] = result.images_per_s
    return store.save(rc, metrics, timings={"fit_s": result.seconds, "eval_s": eval_s}, device=dev,
                      series={"history": result.history}, classes=list(train.classes), groups=list(train.groups),
                      n_train=len(train), n_test=len(test))


def datasets_of(records: Sequence[dict]) -> list[str]:
    """The data sets of ``records``, in order of first appearance."""
    return list(dict.fromkeys(r["config"]["dataset"] for r in records))


def _ordered(records: Sequence[dict]) -> list[dict]:
    """Records sorted by data set (first appearance), method (natural, PGD-AT, TRADES, FairAT) and seed."""
    rank = {m: i for i, m in enumerate(ADV_METHODS)}
    first = {d: i for i, d in enumerate(dict.fromkeys(r["config"]["dataset"] for r in records))}
    return sorted(records, key=lambda r: (first[r["config"]["dataset"]], rank.get(r["config"]["method"], len(rank)),
                                          r["config"]["seed"]))


def _frame(records: Sequence[dict]):
    df = flatten_records(records)
    if df.empty:
        raise ValueError("no records: run the study first")
    rank = {m: i for i, m in enumerate(ADV_METHODS)}
    df["_rank"] = df["method"].map(lambda m: rank.get(m, len(rank)))
    return df.sort_values(["dataset", "_rank", "seed"]).drop(columns="_rank").reset_index(drop=True)


def table_groups(records: Sequence[dict], *, digits: int = 1):
    """JIN Tables 1-2 layout for the four methods plus FairAT's class-wise robust accuracy: rows (dataset, method),
    columns Std / Rob Worst, Disp, Avg and Rob worst / avg class, in % as ``mean ± std`` over seeds."""
    df = _frame(records)
    df["method"] = df["method"].map(method_label)
    summary = summarize(df, by=["dataset", "method"], metrics=list(_MAIN))
    table = format_mean_std(summary, list(_MAIN), scale=100.0, digits=digits).rename(columns=_MAIN_LABELS)
    metric = df.groupby("dataset")["metric"].first() if "metric" in df else None
    table["metric"] = [metric[d] if metric is not None else "acc" for d in summary.index.get_level_values(0)]
    table["seeds"] = summary["n"].to_numpy()
    return table


def classwise_frame(records: Sequence[dict]):
    """Long table: dataset, method, seed, class, kind (``clean`` / ``robust``), group (``all`` or a group name), acc."""
    import pandas as pd

    rows = []
    for rec in _ordered(records):
        c, m = rec["config"], rec["metrics"]
        classes, groups = rec.get("classes") or [], rec.get("groups") or []
        for ci, cname in enumerate(classes):
            for kind, key in (("clean", "std"), ("robust", "rob")):
                base = {"dataset": c["dataset"], "method": method_label(c["method"]), "seed": c["seed"],
                        "class": cname, "kind": kind}
                rows.append({**base, "group": "all", "acc": m.get(f"{key}_class_{ci}", np.nan)})
                for gi, gname in enumerate(groups):
                    rows.append({**base, "group": gname, "acc": m.get(f"{key}_acc_g{gi}_c{ci}", np.nan)})
    return pd.DataFrame(rows)


def group_frame(records: Sequence[dict]):
    """Long table: dataset, method, seed, group, kind (``clean`` / ``robust``), value (the study's metric)."""
    import pandas as pd

    rows = []
    for rec in _ordered(records):
        c, m = rec["config"], rec["metrics"]
        for gi, gname in enumerate(rec.get("groups") or []):
            for kind, key in (("clean", "std"), ("robust", "rob")):
                rows.append({"dataset": c["dataset"], "method": method_label(c["method"]), "seed": c["seed"],
                             "group": gname, "kind": kind, "value": m.get(f"{key}_group_{gi}", np.nan),
                             "metric": c.get("metric", "acc")})
    return pd.DataFrame(rows)


def history_frame(records: Sequence[dict]):
    """Long table of the training curves: dataset, method, seed, epoch, curve, value."""
    import pandas as pd

    names = {"loss": "train loss", "acc": "train accuracy", "val_acc": "val clean accuracy",
             "val_rob_acc": "val robust accuracy"}
    rows = []
    for rec in _ordered(records):
        c = rec["config"]
        for key, label in names.items():
            for epoch, v in enumerate(rec.get("series", {}).get("history", {}).get(key, []), start=1):
                rows.append({"dataset": c["dataset"], "method": method_label(c["method"]), "seed": c["seed"],
                             "epoch": epoch, "curve": label, "value": v})
    return pd.DataFrame(rows)


def render_tables(records: Sequence[dict], *, prefix: str = "02", save: bool = True) -> dict:
    """Write the group table (per dataset and all together) through ``save_table``; return the tables."""
    out = {"groups": table_groups(records)}
    if save:
        save_table(out["groups"], f"{prefix}_groups")
    cls = classwise_frame(records)
    if not cls.empty:
        cls = cls[cls["group"] == "all"]
        wide = (cls.groupby(["dataset", "kind", "method", "class"], sort=False)["acc"].mean().mul(100).round(1)
                .unstack("class"))
        classes = list(dict.fromkeys(cls["class"]))  # the data sets' own class order
        out["classes"] = wide[classes]
        if save:
            save_table(out["classes"], f"{prefix}_classwise")
    return out


def _stat(df, dataset: str, method: str, key: str) -> tuple[float, float, int]:
    v = df[(df["dataset"] == dataset) & (df["method"] == method)][key].astype(float).dropna()
    if v.empty:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std()) if len(v) > 1 else float("nan"), int(len(v))


def _fmt(m: float, s: float) -> str:
    if math.isnan(m):
        return "n/a"
    return f"{100 * m:.1f}" + ("" if math.isnan(s) else f" ± {100 * s:.1f}")


def describe_claims(records: Sequence[dict]) -> str:
    """Plain sentences: for each dataset, what the papers claim and whether these records agree, with numbers.

    A difference smaller than the larger seed standard deviation (or measured on one seed) is called
    inconclusive rather than agreement.
    """
    df = _frame(records)
    lines = []
    for ds in sorted(set(df["dataset"])):
        present = [m for m in ADV_METHODS if ((df["dataset"] == ds) & (df["method"] == m)).any()]
        metric = df[df["dataset"] == ds]["metric"].iloc[0] if "metric" in df else "acc"
        lines.append(f"== {ds} (metric: {'macro-F1' if metric == 'f1' else 'accuracy'}, "
                     f"seeds per method: {_stat(df, ds, present[0], 'std_avg')[2]})")
        at = [m for m in ("pgd_at", "trades") if m in present]
        if "natural" in present and at:
            lines.append("Claim 1 (JIN §1, FairAT abstract): adversarial training widens the gap between groups and "
                         "between classes.")
            for key, what in (("std_disp", "clean group gap (Disp, best minus worst group)"),
                              ("disp_class_std", "clean class gap (best minus worst class accuracy)")):
                nat = _stat(df, ds, "natural", key)
                parts, widened = [], []
                for m in at:
                    s = _stat(df, ds, m, key)
                    parts.append(f"{method_label(m)} {_fmt(s[0], s[1])}")
                    widened.append(_verdict(s[0] - nat[0], max(_nz(s[1]), _nz(nat[1])), min(s[2], nat[2])))
                lines.append(f"  {what}: Natural {_fmt(nat[0], nat[1])}, " + ", ".join(parts) + " -> "
                             + "; ".join(f"{method_label(m)}: {w}" for m, w in zip(at, widened)))
            for m in at:
                c, r = _stat(df, ds, m, "disp_class_std"), _stat(df, ds, m, "disp_class_rob")
                lines.append(f"  {method_label(m)}: class gap clean {_fmt(c[0], c[1])} vs robust {_fmt(r[0], r[1])} -> "
                             f"robust gap wider: {_verdict(r[0] - c[0], max(_nz(c[1]), _nz(r[1])), min(c[2], r[2]))}")
        base = _base_of(records, ds)
        if "fairat" in present and base in present:
            lines.append(f"Claim 2 (FairAT abstract): FairAT raises both worst-class and average robust accuracy over "
                         f"its baseline (paper, CIFAR-10 WRN-28-10: +4.50 and +2.13 points); baseline here: "
                         f"{method_label(base)}.")
            for key, what in (("worst_class_rob", "worst-class robust accuracy"),
                              ("avg_class_rob", "average class robust accuracy"),
                              ("rob_worst", "worst-group robust accuracy")):
                b, f = _stat(df, ds, base, key), _stat(df, ds, "fairat", key)
                d = f[0] - b[0]
                lines.append(f"  {what}: {method_label(base)} {_fmt(b[0], b[1])}, FairAT {_fmt(f[0], f[1])}, "
                             f"difference {100 * d:+.1f} points -> raised: {_verdict(d, max(_nz(b[1]), _nz(f[1])), min(b[2], f[2]))}")
    return "\n".join(lines)


def _nz(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _verdict(diff: float, spread: float, n: int) -> str:
    if math.isnan(diff):
        return "n/a"
    if n < 2:
        return ("yes" if diff > 0 else "no") + " (one seed: no spread to judge by)"
    if abs(diff) <= spread:
        return f"inconclusive ({100 * diff:+.1f} points, within one seed std of {100 * spread:.1f})"
    return "yes" if diff > 0 else "no"


def _base_of(records: Sequence[dict], dataset: str) -> str:
    for rec in records:
        c = rec["config"]
        if c["dataset"] == dataset and c["method"] == "fairat":
            return c.get("fairat_base", "trades")
    return "trades"


# ----------------------------------------------------------------------------------------------- the study protocol
NOTEBOOK = "02"
RUN_OPTIONS = ("cuda_graph",)  # notebook 02's speed setting of fit, not part of the record keys
_NOTEBOOK_ONLY = ("profile", "device", "cuda_graph", "eps_255", "alpha_255", "datasets", "methods", "seeds")


def grid(*, datasets: str | Sequence[str] = "synbols-utk", methods: str | Sequence[str] = "all",
         seeds: int | Sequence[int] = 3, eps_255: float | None = None, alpha_255: float | None = None,
         **params) -> list[AdvConfig]:
    """Notebook 02's runs: every dataset x seed x method; ``eps_255`` / ``alpha_255`` in grey levels of 255."""
    settings = {k: v for k, v in params.items() if k not in _NOTEBOOK_ONLY}
    if eps_255 is not None:
        settings["eps"] = eps_255 / 255
    if alpha_255 is not None:
        settings["alpha"] = alpha_255 / 255
    return adv_configs(datasets, methods, seeds, **settings)


def keys(config: AdvConfig) -> list[dict]:
    return [config.record_config()]


def run(config: AdvConfig, *, store: ResultStore, device, cache: dict, show_progress: bool = True,
        **fit_options) -> list[dict]:
    """Train and evaluate one config (``run_adv``); the data of consecutive configs of one data set is shared.
    ``fit_options`` (``cuda_graph``, ``compile``, ``fold_bn``) change speed only."""
    if config.data_key() not in cache:
        cache.clear()  # one data set in memory at a time
        cache[config.data_key()] = load_adv_data(config)
    rec = run_adv(config, store=store, device=device, splits=cache[config.data_key()], show_progress=show_progress,
                  fit_options=fit_options)
    m = rec["metrics"]
    if show_progress:  # one line per run: readable in a notebook and in a papermill log
        print(f"{config.dataset} {method_label(config.method)} seed {config.seed}: {rec['timings']['fit_s']:.1f} s, "
              f"Std Avg {100 * m['std_avg']:.1f} %, Rob Avg {100 * m['rob_avg']:.1f} %, "
              f"Rob worst class {100 * m['worst_class_rob']:.1f} %", flush=True)
    return [rec]


def parts(configs: Sequence[AdvConfig]) -> list[list[AdvConfig]]:
    """One part per (data set, seed)."""
    out: dict[tuple, list] = {}
    for c in configs:
        out.setdefault((c.dataset, c.seed), []).append(c)
    return list(out.values())


def tables(records: Sequence[dict], *, save: bool = True) -> dict:
    """The group table (``groups``) and the class-wise accuracy table (``classes``), saved as ``02_*``."""
    return render_tables(records, save=save)


def _per_dataset(name: str, frame_of, plot):
    return lambda records: [(f"{name}_{ds}", plot(frame, ds)) for frame in [frame_of(records)]
                            for ds in datasets_of(records)]


FIGURES = {
    "classwise": _per_dataset("classwise", classwise_frame, plots_adv.plot_classwise),
    "groups": _per_dataset("groups", group_frame, plots_adv.plot_group_accuracy),
    "curves": _per_dataset("curves", history_frame, plots_adv.plot_training_curves),
}


def figures(records: Sequence[dict], *names: str) -> list[Path]:
    """Draw and save ``02_<name>_<dataset>`` for each of ``names`` (default all of ``FIGURES``) and data set."""
    return draw(NOTEBOOK, FIGURES, records, names)


def claims(records: Sequence[dict]) -> str:
    return describe_claims(records)


def explorer(records: Sequence[dict]):
    """The class explorer widget (notebook 02's interactive corner)."""
    return plots_adv.class_explorer(classwise_frame(records))
