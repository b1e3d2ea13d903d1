"""The JIN study: datasets x strategies x seeds of the FRAL loop, and the paper's tables rendered from the records.

``grid`` builds the run configs and ``fralkit.studies.run(jin, configs)`` runs them (a done run is loaded from the
result store, a cut one resumed, the initial TRADES model shared by every strategy of a seed; ``studies.collect``
reads back exactly the records of the configs); ``table_main`` / ``table_classes`` / ``table_cost`` / ``table_ablation`` / ``table_g_ent`` give the
layouts of JIN Tables 1-2 and 7, 3, 4, 5 and 6 (mean ± std over seeds, in %); ``render_tables`` writes them
through ``fralkit.experiments.save_table``; ``describe_claims`` checks the paper's claims against the records.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Sequence

import numpy as np

from ..data import DATASETS
from ..experiments import ResultStore, format_mean_std, paired_verdict, save_table, summarize
from ..plots import active as plots_active
from ..plots.active import strategy_label
from ..utils import config_hash
from .protocol import draw
from ..active.loop import FINETUNE_OBJECTIVES, FRALConfig, load_fral_data, run_fral
from ..active.strategies import BALD_GRAD_ONLY, STRATEGIES

__all__ = ["JIN_DATASETS", "TABLE1_STRATEGIES", "RUN_ORDER", "split_names", "seed_list", "study_configs", "grid", "keys", "run", "parts", "tables", "figures", "claims", "FIGURES", "provenance", "mixed_initial_models", "by_dataset", "final_frame",
           "rounds_frame", "class_share_frame", "table_main", "table_classes", "table_cost", "table_ablation", "table_g_ent", "render_tables",
           "describe_claims", "strategy_label", "claims_table", "PAPER_WORST", "cross_table", "describe_cross"]

# The built-in stand-ins for JIN's three data sets, read from the registry.
JIN_DATASETS = tuple(name for name, info in DATASETS.items() if info.synthetic and "JIN" in info.papers)
# Rows of JIN Tables 1, 2 and 7 (BALD added: it links notebook 05).
TABLE1_STRATEGIES = ("rand", "ent", "cset", "badge", "bald", "g-rand", "minmax", "opt", "fairal", "jin")
GROUP_RANDOM = ("g-rand", "minmax", "opt")
# The order a (data set, seed)'s runs are computed in: the claims' pairs first (JIN and its nearest rivals, then
# the rest), so a run cut by a time budget has already tested the headline claims. Tables keep the paper's order.
RUN_ORDER = ("jin", "rand", "ent", "g-rand", "fairal", "minmax", "opt", "jin-p", "jin-r", "g-ent", "cset", "badge",
             "bald")
INIT = "init-at"
_MAIN = ("std_worst", "std_disp", "std_avg", "rob_worst", "rob_disp", "rob_avg")


def split_names(names: str | Sequence[str], *, valid: Iterable[str] | None = None, what: str = "name") -> list[str]:
    """A comma-separated string (or a list) of names as a list; ``"all"`` gives every valid name."""
    items = [s.strip().lower() for s in (names.split(",") if isinstance(names, str) else names) if str(s).strip()]
    if valid is not None:
        valid = list(valid)
        if items == ["all"]:
            return valid
        bad = [s for s in items if s not in valid]
        if bad:
            raise ValueError(f"unknown {what}(s) {bad}; valid: {sorted(valid)}")
    return items


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; a list of seeds is kept as given."""
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def _strategy_items(strategies: str | Sequence[str]) -> list[tuple[str, str]]:
    """``"all,jin+fairat"`` -> ``[(strategy, fine-tuning objective), ...]``: ``all`` is every FRAL strategy, and
    ``name+objective`` runs strategy ``name`` with another fine-tuning objective (``FINETUNE_OBJECTIVES``)."""
    valid = [name for name in STRATEGIES if name not in BALD_GRAD_ONLY]
    items = split_names(strategies)
    out: list[tuple[str, str]] = []
    for item in items:
        name, _, objective = item.partition("+")
        names = valid if name == "all" and not objective else split_names([name], valid=valid, what="strategy")
        if objective and objective not in FINETUNE_OBJECTIVES:
            raise ValueError(f"unknown fine-tuning objective {objective!r} in {item!r}; valid: {list(FINETUNE_OBJECTIVES)}")
        out += [(n, objective or "trades") for n in names if (n, objective or "trades") not in out]
    return out


def study_configs(datasets: str | Sequence[str], strategies: str | Sequence[str], seeds: int | Sequence[int],
                  **settings) -> list[FRALConfig]:
    """The grid of run configs: every dataset x seed x strategy (in ``RUN_ORDER``, other fine-tuning objectives
    last), with shared ``settings`` (``FRALConfig`` fields); a strategy ``name+objective`` (``"jin+fairat"``)
    fine-tunes with that objective."""
    rank = {name: i for i, name in enumerate(RUN_ORDER)}
    items = sorted(_strategy_items(strategies), key=lambda it: (it[1] != "trades", rank.get(it[0], len(rank))))
    return [FRALConfig(dataset=d, strategy=s, seed=seed, **{**settings, "finetune_objective": obj})
            for d in split_names(datasets, what="dataset") for seed in seed_list(seeds) for s, obj in items]


def provenance(records: Sequence[dict]):
    """Where each record came from: one row per (strategy, seed) with its device, git commit and save time, so a
    table drawn from a store filled by several machines or calls says which runs it holds."""
    import pandas as pd

    rows = [{"strategy": r["config"]["method"], "seed": int(r["config"]["seed"]), "device": r.get("provenance", {}).get("device", "?"),
             "git_commit": str(r.get("provenance", {}).get("git_commit", "?"))[:12],
             "saved_at": r.get("provenance", {}).get("saved_at", "?"),
             "initial model": r.get("init_fingerprint") or "?"} for r in records]
    order = {s: i for i, s in enumerate(_order(row["strategy"] for row in rows))}
    rows.sort(key=lambda row: (order[row["strategy"]], row["seed"]))
    columns = ["strategy", "seed", "device", "git_commit", "saved_at", "initial model"]
    return pd.DataFrame(rows, columns=columns).set_index("strategy")


def mixed_initial_models(records: Sequence[dict]) -> dict[tuple, list[str]]:
    """``{(dataset, backbone, seed): fingerprints}`` for every seed whose runs started from more than one initial
    model (it was retrained between runs, e.g. on another machine without the store's ``_cache``). Such a seed's
    strategies are not paired comparisons. Records without a fingerprint (older ones) are not counted."""
    seen: dict[tuple, set] = {}
    for r in records:
        fp = r.get("init_fingerprint")
        if fp:
            cfg = r["config"]
            seen.setdefault((cfg["dataset"], cfg["backbone"], int(cfg["seed"])), set()).add(fp)
    return {k: sorted(v) for k, v in seen.items() if len(v) > 1}


def run_name(config: dict) -> str:
    """The name a (data set, backbone) pair's tables and figures go under: the data set, with ``-resnet18`` for
    the ResNet-18 runs of Table 7 (so they never mix with the MobileNetV2 runs of Tables 1-6)."""
    return config["dataset"] + ("-resnet18" if config.get("backbone") == "resnet18" else "")


def by_dataset(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Records grouped by data set and backbone (``run_name``), in the order first seen."""
    out: dict[str, list[dict]] = {}
    for rec in records:
        out.setdefault(run_name(rec["config"]), []).append(rec)
    return out


# ----------------------------------------------------------------------------------------------- frames
def _row_base(rec: dict) -> dict:
    c = rec["config"]
    return {"dataset": c["dataset"], "backbone": c["backbone"], "run": run_name(c), "strategy": c["method"],
            "seed": c["seed"], "metric": c.get("metric", "acc")}


def final_frame(records: Sequence[dict], *, include_init: bool = True):
    """One row per run with the final-round Table 1 metrics (in %) and the timings; plus one ``init-at`` row per
    (dataset, backbone, seed) from round 0 (the shared initial model)."""
    import pandas as pd

    rows, seen = [], set()
    for rec in records:
        m, t = rec["metrics"], rec.get("timings", {})
        base = _row_base(rec)
        row = {**base, **{k: 100 * m[k][-1] for k in _MAIN}, "select_s": t.get("select_s", np.nan),
               "init_at_s": t.get("init_at_s", np.nan), "finetune_s": t.get("finetune_s", np.nan),
               "std_model_s": t.get("std_model_s", np.nan), "rounds": len(m["std_worst"]) - 1}
        rows.append(row)
        init_key = (base["dataset"], base["backbone"], base["seed"])
        if include_init and init_key not in seen:
            seen.add(init_key)
            rows.append({**base, "strategy": INIT, **{k: 100 * m[k][0] for k in _MAIN}, "select_s": np.nan,
                         "init_at_s": t.get("init_at_s", np.nan), "finetune_s": np.nan, "std_model_s": np.nan, "rounds": 0})
    return pd.DataFrame(rows)


def rounds_frame(records: Sequence[dict]):
    """One row per (run, round): labelled set size and share of D, the Table 1 metrics in %, and z*."""
    import pandas as pd

    rows = []
    for rec in records:
        m = rec["metrics"]
        for r in range(len(m["std_worst"])):
            rows.append({**_row_base(rec), "round": r, "labelled": m["labelled_n"][r], **{k: 100 * m[k][r] for k in _MAIN}})
    return pd.DataFrame(rows)


def class_share_frame(records: Sequence[dict], *, selected_only: bool = False):
    """Class shares (%) of the worst group's labelled samples at the end of each run (z* of round 1; Table 3's
    "Class Freq"), averaged over seeds: one row per (strategy, class); ``init-at`` is the initial labelled set.
    With ``selected_only`` the shares are of the samples the strategy added (Init. AT omitted)."""
    import pandas as pd

    rows, seen = [], set()
    for rec in records:
        m, z = rec["metrics"], _reference_group(rec)
        classes = rec.get("classes") or [str(i) for i in range(len(m["labelled_counts"][0]))]
        first = np.asarray(m["labelled_counts"][0], dtype=float)[:, z]
        last = np.asarray(m["labelled_counts"][-1], dtype=float)[:, z]
        entries = [(rec["config"]["method"], last - first if selected_only else last)]
        key = (rec["config"]["dataset"], rec["config"]["backbone"], rec["config"]["seed"])
        if not selected_only and key not in seen:
            seen.add(key)
            entries.append((INIT, first))
        for name, counts in entries:
            total = max(1.0, counts.sum())
            for c, cname in enumerate(classes):
                rows.append({**_row_base(rec), "strategy": name, "class": cname, "share": 100 * counts[c] / total,
                             "count": counts[c]})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    out = frame.groupby(["strategy", "class"], sort=False)[["share", "count"]].mean().reset_index()
    order = {s: i for i, s in enumerate(_order(out["strategy"]))}
    return out.sort_values("strategy", key=lambda col: col.map(order), kind="stable").reset_index(drop=True)


def _order(strategies: Iterable[str]) -> list[str]:
    pref = [INIT, *TABLE1_STRATEGIES, "g-ent", "jin-p", "jin-r"]
    present = list(dict.fromkeys(strategies))
    return [s for s in pref if s in present] + [s for s in present if s not in pref]


def _summary(frame, metrics: Sequence[str], strategies: Sequence[str] | None = None, digits: int = 2,
             keep_order: bool = False):
    sub = frame if strategies is None else frame[frame["strategy"].isin(strategies)]
    if sub.empty:
        return None
    s = summarize(sub, by=["strategy"], metrics=list(metrics))
    s = s.loc[[x for x in strategies if x in s.index] if keep_order and strategies is not None else _order(s.index)]
    table = format_mean_std(s, list(metrics), digits=digits)
    table.index = [strategy_label(i) for i in table.index]
    table.index.name = "method"
    table["seeds"] = s["n"].values
    return table


def _header(metric: str) -> dict:
    word = "F1" if metric == "f1" else "Acc"
    return {"std_worst": f"Std {word} Worst ↑", "std_disp": f"Std {word} Disp ↓", "std_avg": f"Std {word} Avg ↑",
            "rob_worst": f"Rob {word} Worst ↑", "rob_disp": f"Rob {word} Disp ↓", "rob_avg": f"Rob {word} Avg ↑"}


def table_main(records: Sequence[dict], strategies: Sequence[str] = TABLE1_STRATEGIES):
    """JIN Tables 1, 2 and 7: Worst ↑ Disp ↓ Avg ↑ of standard and robust accuracy (macro-F1 for HAM-like data),
    mean ± std over seeds in %, with the initial model's row first."""
    frame = final_frame(records)
    if frame.empty:
        return None
    table = _summary(frame, _MAIN, [INIT, *strategies])
    return None if table is None else table.rename(columns=_header(frame["metric"].iloc[0]))


def _table_of(records: Sequence[dict], strategies: list[str]):
    """Worst and Avg of standard and robust performance for ``strategies`` (in this order); None if < 2 ran."""
    frame = final_frame(records, include_init=False)
    cols = ["std_worst", "std_avg", "rob_worst", "rob_avg"]
    table = None if frame.empty else _summary(frame, cols, strategies, keep_order=True)
    if table is None or len(table) < 2:
        return None
    return table.rename(columns=_header(frame["metric"].iloc[0]))


def table_ablation(records: Sequence[dict]):
    """JIN Table 5: P (I^per only), R (I^rob only) and P+R (JIN), Worst and Avg of standard and robust performance."""
    table = _table_of(records, ["jin-p", "jin-r", "jin"])
    if table is not None:
        table.index = [{"JIN-P": "P", "JIN-R": "R", "JIN": "P+R"}.get(i, i) for i in table.index]
        table.index.name = "inconsistency"
    return table


def table_g_ent(records: Sequence[dict]):
    """JIN Table 6: ENT vs G-ENT (entropy within the worst group) vs JIN; None without G-ENT (Table 7's
    ResNet-18 strategies have none: ENT beside JIN alone is Table 7's rows again)."""
    if not any(r["config"]["method"] == "g-ent" for r in records):
        return None
    return _table_of(records, ["ent", "g-ent", "jin"])


def _fmt_time(s: float) -> str:
    if not np.isfinite(s):
        return "-"
    s = float(s)
    if s < 10:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m}m {sec}s" if h else f"{m}m {sec}s"


def table_cost(records: Sequence[dict]):
    """JIN Table 4: selection time of each strategy (all rounds, mean ± std over seeds) beside the initial
    adversarial training, and its share of it (the paper: JIN 10m29s vs 1h4m, 16 %)."""
    import pandas as pd

    frame = final_frame(records)
    if frame.empty:
        return None
    init = frame[frame["strategy"] == INIT]["init_at_s"]
    rows = [{"method": "Init. AT", "time": _fmt_time(init.mean()), "seconds": round(float(init.mean()), 2),
             "± std (s)": round(float(init.std()), 2) if len(init) > 1 else np.nan, "share of Init. AT (%)": 100.0,
             "rounds": 0, "seeds": len(init)}]
    sel = frame[frame["strategy"] != INIT]
    for s in _order(sel["strategy"]):
        sub = sel[sel["strategy"] == s]
        share = 100 * sub["select_s"] / sub["init_at_s"]
        rows.append({"method": strategy_label(s), "time": _fmt_time(sub["select_s"].mean()),
                     "seconds": round(float(sub["select_s"].mean()), 2),
                     "± std (s)": round(float(sub["select_s"].std()), 2) if len(sub) > 1 else np.nan,
                     "share of Init. AT (%)": round(float(share.mean()), 1), "rounds": int(sub["rounds"].max()),
                     "seeds": len(sub)})
    return pd.DataFrame(rows).set_index("method")


def _reference_group(rec: dict) -> int:
    """The worst group of the initial model on validation (z* of round 1): the same for every strategy of a seed."""
    return int(rec["metrics"]["val_worst_group"][0])


def table_classes(records: Sequence[dict], *, top: int = 5, strategies: Sequence[str] | None = None):
    """JIN Table 3: for the ``top`` most frequent classes of the worst group, the class frequency among its
    labelled samples (%) and the per-class standard / robust F1 (%) on its test samples, at the end of the run
    (Init. AT: the initial model and the initial labelled set). Worst group = z* of round 1."""
    import pandas as pd

    if not records:
        return None
    classes = records[0].get("classes") or [str(i) for i in range(len(records[0]["metrics"]["class_f1_std"][0][0]))]
    rows: dict = {}
    init_done = set()
    for rec in records:
        s = rec["config"]["method"]
        if strategies is not None and s not in strategies:
            continue
        m, z = rec["metrics"], _reference_group(rec)
        entries = [(s, -1)]
        key = (rec["config"]["dataset"], rec["config"]["backbone"], rec["config"]["seed"])
        if key not in init_done:
            init_done.add(key)
            entries.append((INIT, 0))
        for name, r in entries:
            counts = np.asarray(m["labelled_counts"][r], dtype=float)[:, z]
            freq = 100 * counts / max(1.0, counts.sum())
            rows.setdefault(name, []).append((freq, 100 * np.asarray(m["class_f1_std"][r][z], dtype=float),
                                              100 * np.asarray(m["class_f1_rob"][r][z], dtype=float)))
    init_freq = np.mean([f for f, _, _ in rows.get(INIT, rows[next(iter(rows))])], axis=0)
    top_classes = list(np.argsort(-init_freq, kind="stable")[:top])
    out = []
    for name in _order(rows):
        with warnings.catch_warnings():  # a class absent from every seed's test group stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            freq = np.nanmean([f for f, _, _ in rows[name]], axis=0)
            f1s = np.nanmean([a for _, a, _ in rows[name]], axis=0)
            f1r = np.nanmean([b for _, _, b in rows[name]], axis=0)
        row = {"method": strategy_label(name)}
        for c in top_classes:
            row[f"{classes[c]} freq %"] = round(float(freq[c]), 2)
            row[f"{classes[c]} F1 std / rob %"] = f"{f1s[c]:.2f} / {f1r[c]:.2f}"
        row["seeds"] = len(rows[name])
        out.append(row)
    return pd.DataFrame(out).set_index("method")


def render_tables(records: Sequence[dict], dataset: str, *, prefix: str = "03", save: bool = True) -> dict:
    """Every table of one dataset (and backbone) from its records; saved as ``<prefix>_table<k>_<dataset>``
    (.csv and .md). Table 1 for accuracy data sets, Table 2 for F1 (HAM-like), Table 7 for a ResNet-18 backbone;
    ``<prefix>_records_<dataset>`` lists the records behind them (device, commit, time)."""
    recs = [r for r in records if run_name(r["config"]) == dataset]
    if not recs:
        return {}
    metric = recs[0]["config"].get("metric", "acc")
    backbone = recs[0]["config"]["backbone"]
    main_no = "7" if backbone == "resnet18" else ("2" if metric == "f1" else "1")
    tables = {f"table{main_no}": table_main(recs), "table3": table_classes(recs), "table4": table_cost(recs),
              "table5": table_ablation(recs), "table6": table_g_ent(recs), "records": provenance(recs)}
    tables = {k: v for k, v in tables.items() if v is not None and not v.empty}
    if save:
        for k, v in tables.items():
            save_table(v, f"{prefix}_{k}_{dataset}")
    return tables


# ----------------------------------------------------------------------------------------------- claims
def _means(frame, metric: str) -> dict:
    sub = frame[frame["strategy"] != INIT]
    return {s: (float(g[metric].mean()), float(g[metric].std()) if len(g) > 1 else 0.0)
            for s, g in sub.groupby("strategy")}


def _pm(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def describe_claims(records: Sequence[dict], *, target_share: float = 10.0) -> str:
    """Plain sentences, per dataset: which of the JIN paper's claims this run's records reproduce.

    1. JIN has the best Worst in the standard and the robust setting (Tables 1, 2, 7).
    2. Group-random methods (G-RAND, MinMax, OPT) fail under label imbalance (HAM10000, Tables 2-3): below JIN.
    3. FairAL is the costliest selection; JIN's selection stays a small share of the initial adversarial
       training (Table 4: 16 % in the paper; ``target_share`` here).
    """
    lines = []
    frame_all = final_frame(records)
    if frame_all.empty:
        return "no finished runs yet."
    for name, frame in frame_all.groupby("run", sort=False):
        dataset = frame["dataset"].iloc[0]
        word = "F1" if frame["metric"].iloc[0] == "f1" else "accuracy"
        seeds = frame["seed"].nunique()
        lines.append(f"### {dataset} ({frame['backbone'].iloc[0]}, {seeds} seed(s), worst-group {word})")
        mixed = sorted(k[2] for k in mixed_initial_models([r for r in records if run_name(r["config"]) == name]))
        if mixed:
            lines.append(f"- Caution: the runs of seed(s) {mixed} started from different initial models (retrained "
                         "between runs); their strategies are not paired comparisons.")
        main = frame[frame["strategy"].isin(TABLE1_STRATEGIES)]
        for metric, setting in (("std_worst", "standard"), ("rob_worst", "robust")):
            means = _means(main, metric)
            if "jin" not in means or len(means) < 2:
                lines.append(f"- Claim 1 ({setting}): needs JIN and at least one baseline; not checked.")
                continue
            jin, jin_sd = means["jin"]
            rival = max((s for s in means if s != "jin"), key=lambda s: means[s][0])
            best = "jin" if jin >= means[rival][0] else rival
            gap = jin - means[rival][0]
            if best == "jin" and gap < 1e-9:
                verdict = (f"tied: JIN {_pm(jin, jin_sd, seeds)} shares the best Worst with {strategy_label(rival)}")
            elif best == "jin":
                verdict = (f"reproduced: JIN {_pm(jin, jin_sd, seeds)} is the best Worst, {gap:.2f} points above "
                           f"{strategy_label(rival)}")
                if seeds > 1 and gap < max(jin_sd, means[rival][1]):
                    verdict += " (within one standard deviation: not a clear win)"
            else:
                verdict = (f"not reproduced: {strategy_label(best)} has the best Worst ({means[best][0]:.2f}); "
                           f"JIN {_pm(jin, jin_sd, seeds)} ranks {1 + sorted(means, key=lambda s: -means[s][0]).index('jin')} "
                           f"of {len(means)}")
            lines.append(f"- Claim 1, {setting} {word}: {verdict}.")
        grp = [s for s in GROUP_RANDOM if s in set(frame["strategy"])]
        if "jin" in set(frame["strategy"]) and grp:
            below = []
            for metric in ("std_worst", "rob_worst"):
                means = _means(frame, metric)
                below.append(all(means[s][0] < means["jin"][0] for s in grp))
            imbalance = "label-imbalanced (long-tail) data" if frame["metric"].iloc[0] == "f1" else "this data set"
            names = ", ".join(strategy_label(s) for s in grp)
            if all(below):
                lines.append(f"- Claim 2 on {imbalance}: reproduced: {names} stay below JIN in standard and robust Worst.")
            else:
                lines.append(f"- Claim 2 on {imbalance}: not reproduced: at least one of {names} matches or beats JIN "
                             f"(standard: {'below' if below[0] else 'not below'}, robust: {'below' if below[1] else 'not below'}).")
        runs = frame[frame["strategy"] != INIT]
        cost = runs.groupby("strategy")["select_s"].mean()
        shares = (100 * runs["select_s"] / runs["init_at_s"]).groupby(runs["strategy"]).mean()
        init_s = float(frame[frame["strategy"] == INIT]["init_at_s"].mean())
        if len(cost) >= 2 and "fairal" in cost.index:
            top = cost.idxmax()
            lines.append(f"- Claim 3, cost: {'reproduced' if top == 'fairal' else 'not reproduced'}: the costliest selection is "
                         f"{strategy_label(top)} ({_fmt_time(cost.max())} over all rounds; Init. AT {_fmt_time(init_s)}).")
        if "jin" in cost.index and math.isfinite(init_s) and init_s > 0:
            share = float(shares["jin"])
            lines.append(f"- JIN's selection costs {_fmt_time(cost['jin'])} over all rounds, {share:.1f} % of the initial "
                         f"adversarial training (paper: 16 %; target here: at most {target_share:.0f} %: "
                         f"{'met' if share <= target_share else 'NOT met'}).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- claims table
# The paper's final-round Worst numbers (Tables 1, 2, 5, 6, 7: mean of 3 seeds, %; macro-F1 on HAM10000), per data
# set it reports: (standard Worst, robust Worst). Table 7 is UTKFace with ResNet-18.
PAPER_WORST: dict[str, dict[str, tuple[float, float]]] = {
    "UTKFace": {"rand": (70.57, 55.63), "ent": (74.10, 56.94), "cset": (71.44, 56.55), "badge": (72.63, 56.94),
                "g-rand": (72.37, 56.60), "minmax": (71.35, 56.95), "opt": (71.99, 57.09), "fairal": (74.74, 56.94),
                "jin": (75.07, 57.39), "jin-p": (75.18, 56.53), "jin-r": (72.89, 56.89), "g-ent": (68.14, 54.89)},
    "CINIC-10": {"rand": (55.53, 37.01), "ent": (56.23, 36.29), "cset": (55.28, 36.73), "badge": (55.86, 36.66),
                 "g-rand": (55.56, 36.71), "minmax": (55.52, 36.69), "opt": (55.78, 36.90), "fairal": (56.35, 36.25),
                 "jin": (57.37, 37.10)},
    "HAM10000": {"rand": (40.20, 19.72), "ent": (44.34, 20.11), "cset": (41.89, 19.86), "badge": (43.28, 20.07),
                 "g-rand": (36.15, 16.65), "minmax": (37.21, 16.68), "opt": (35.53, 17.32), "fairal": (43.65, 19.64),
                 "jin": (44.98, 21.95)},
    "UTKFace (ResNet-18)": {"rand": (70.86, 55.40), "ent": (73.30, 56.03), "g-rand": (72.71, 56.69),
                            "fairal": (74.28, 56.80), "jin": (75.38, 57.75)},
}
# JIN's selection as a share of the initial adversarial training (Table 4), %.
PAPER_JIN_SHARE = {"UTKFace": 16.3, "CINIC-10": 28.4, "HAM10000": 19.1}
_PAPER_DATA = {"synbols-utk": "UTKFace", "utkface": "UTKFace", "synbols-cinic": "CINIC-10", "cinic10": "CINIC-10",
               "synbols-ham": "HAM10000", "ham10000": "HAM10000"}


def _paired(frame, metric: str, a: str, b: str):
    """Per-seed differences ``a - b`` of ``metric`` over the seeds both strategies ran (they share each seed's
    initial model, so the difference is paired)."""
    x = frame[frame["strategy"] == a].set_index("seed")[metric]
    y = frame[frame["strategy"] == b].set_index("seed")[metric]
    seeds = sorted(set(x.index) & set(y.index))
    return np.array([x[s] - y[s] for s in seeds], float)


def claims_table(records: Sequence[dict], *, target_share: float = 10.0):
    """Each claim of the JIN paper beside this run's numbers, per data set: one row per (data set, claim), with the
    paper's numbers, ours (mean of the paired per-seed differences +- their std) and a verdict
    (``fralkit.experiments.paired_verdict``: two seed standard deviations; cost claims compare means). Saved as
    ``03_claims`` by ``tables``."""
    import pandas as pd

    rows = []
    frame_all = final_frame(records, include_init=False)
    for _, frame in (frame_all.groupby("run", sort=False) if not frame_all.empty else []):
        dataset, backbone = frame["dataset"].iloc[0], frame["backbone"].iloc[0]
        paper_name = _PAPER_DATA.get(dataset, dataset) + (" (ResNet-18)" if backbone == "resnet18" else "")
        paper = PAPER_WORST.get(paper_name, {})
        have = set(frame["strategy"])
        n = int(frame["seed"].nunique())

        def add(claim, a, b, metric, col):
            if a not in have or b not in have:
                return
            d = _paired(frame, metric, a, b)
            p = f"{paper[a][col] - paper[b][col]:+.2f}" if a in paper and b in paper else "n/a"
            rows.append({"data set": dataset, "backbone": backbone, "claim": claim, "n seeds": len(d),
                         "paper (points)": p, "ours (points)": f"{d.mean():+.2f} +- {d.std(ddof=1) if len(d) > 1 else 0:.2f}",
                         "verdict": paired_verdict(d)})

        for metric, col, setting in (("std_worst", 0, "standard"), ("rob_worst", 1, "robust")):
            others = [s for s in TABLE1_STRATEGIES if s in have and s != "jin"]
            if "jin" in have and others:
                rival = max(others, key=lambda s: frame[frame["strategy"] == s][metric].mean())
                add(f"JIN has the best {setting} Worst (vs the best other, {strategy_label(rival)})", "jin", rival,
                    metric, col)
        for rival in GROUP_RANDOM:
            add(f"JIN beats {strategy_label(rival)} on standard Worst by > 2 std", "jin", rival, "std_worst", 0)
        if paper_name == "HAM10000" or frame["metric"].iloc[0] == "f1":
            for rival in GROUP_RANDOM:
                add(f"{strategy_label(rival)} falls below RAND under label imbalance (standard Worst)", "rand", rival,
                    "std_worst", 0)
        for rival in ("rand", "cset", "badge"):
            add(f"ENT beats {strategy_label(rival)} on standard Worst", "ent", rival, "std_worst", 0)
        add("JIN beats FairAL on standard Worst", "jin", "fairal", "std_worst", 0)
        add("P+R (JIN) beats R (JIN-R) on standard Worst", "jin", "jin-r", "std_worst", 0)
        add("P+R (JIN) beats P (JIN-P) on robust Worst", "jin", "jin-p", "rob_worst", 1)
        add("G-ENT falls below ENT on standard Worst", "ent", "g-ent", "std_worst", 0)
        cost = frame.groupby("strategy")["select_s"].mean()
        if "fairal" in cost.index and len(cost) > 1:
            top = cost.idxmax()
            rows.append({"data set": dataset, "backbone": backbone, "claim": "FairAL is the costliest selection",
                         "n seeds": n, "paper (points)": "FairAL 20m-2h21m; the others at most 20m",
                         "ours (points)": f"{strategy_label(top)} {_fmt_time(cost.max())}",
                         "verdict": "agrees" if top == "fairal" else "disagrees"})
        if "jin" in cost.index:
            sub = frame[frame["strategy"] == "jin"]
            share = float((100 * sub["select_s"] / sub["init_at_s"]).mean())
            paper_share = PAPER_JIN_SHARE.get(paper_name)
            rows.append({"data set": dataset, "backbone": backbone,
                         "claim": f"JIN's selection below 30 % of the initial adversarial training (target <= {target_share:g} %)",
                         "n seeds": n, "paper (points)": f"{paper_share:.1f} %" if paper_share else "n/a",
                         "ours (points)": f"{share:.1f} %",
                         "verdict": ("agrees" if share < 30 else "disagrees")
                         + (", target met" if share <= target_share else ", target NOT met")})
    return pd.DataFrame(rows, columns=["data set", "backbone", "claim", "n seeds", "paper (points)", "ours (points)",
                                       "verdict"])


# ----------------------------------------------------------------------------------------------- the papers against each other
def cross_table(records: Sequence[dict]):
    """What no paper measured: FARMUR's fairness in robustness V_f(P) over JIN's groups (``FRALConfig.vf_n``), beside
    the final Worst of every strategy, per data set: mean +- seed std, with the strategy of the best robust Worst and
    the one of the lowest V_f(P) marked. Runs without ``vf_n`` are left out; None when no run measured it."""
    import pandas as pd

    rows = []
    for rec in records:
        m = rec["metrics"]
        if "v_f" not in m:
            continue
        c = rec["config"]
        rows.append({"data set": c["dataset"], "backbone": c["backbone"], "strategy": c["method"], "seed": c["seed"],
                     "std_worst": 100 * m["std_worst"][-1], "rob_worst": 100 * m["rob_worst"][-1], "v_f": m["v_f"],
                     "rob_f": m["rob_f"]})
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    out = []
    for (dataset, backbone), sub in frame.groupby(["data set", "backbone"], sort=False):
        g = sub.groupby("strategy")
        mean, sd, n = g.mean(numeric_only=True), g.std(numeric_only=True).fillna(0.0), g["seed"].nunique()
        best_rob, low_vf = mean["rob_worst"].idxmax(), mean["v_f"].idxmin()
        for strat in _order(mean.index):
            out.append({"data set": dataset, "backbone": backbone, "strategy": strategy_label(strat),
                        "n seeds": int(n[strat]),
                        **{col: _fmt(mean.loc[strat, key], sd.loc[strat, key], digits, int(n[strat]))
                           for col, key, digits in (("Std Worst (%)", "std_worst", 2), ("Rob Worst (%)", "rob_worst", 2),
                                                    ("V_f(P) over groups", "v_f", 4), ("Rob(f)", "rob_f", 3))},
                        "best Rob Worst": "*" if strat == best_rob else "",
                        "lowest V_f": "*" if strat == low_vf else ""})
    return pd.DataFrame(out)


def _fmt(mean: float, std: float, digits: int, seeds: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.{digits}f}"


def describe_cross(records: Sequence[dict]) -> str:
    """One sentence per (data set, backbone): does the strategy with the best robust Worst also have the lowest
    V_f(P)?"""
    table = cross_table(records)
    if table is None:
        return "V_f(P) was not measured (vf_n = 0)."
    lines = []
    for (dataset, backbone), sub in table.groupby(["data set", "backbone"], sort=False):
        best = sub.loc[sub["best Rob Worst"] == "*", "strategy"].iloc[0]
        low = sub.loc[sub["lowest V_f"] == "*", "strategy"].iloc[0]
        lines.append(f"- {dataset} ({backbone}): the best robust Worst is {best}'s; the lowest V_f(P) is {low}'s"
                     + (": the same strategy." if best == low else ": not the same strategy."))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- the study protocol
NOTEBOOK = "03"


def table7_dataset(dataset: str | Sequence[str]) -> str | None:
    """The data set Table 7's ResNet-18 runs use: the first UTKFace-like one of ``dataset`` (None if there is none)."""
    return next((d for d in split_names(dataset, what="dataset") if _PAPER_DATA.get(d) == "UTKFace"), None)


def grid(*, dataset: str | Sequence[str] = "synbols-utk", strategies: str | Sequence[str] = "all",
         seeds: int | Sequence[int] = 3, epochs: int = 30, n: int = 0, size: int = 0, fairal_labels: int = 0,
         table7: str | Sequence[str] = "", profile: str | None = None, device: str | None = None,
         run: bool | None = None, **settings) -> list[FRALConfig]:
    """Notebook 03's runs: every data set x seed x strategy, and with ``table7`` (strategies) those strategies
    again with ResNet-18 on the UTKFace-like data set (``table7_dataset``: JIN Table 7; with the main runs' knobs,
    so both tables see the same data). ``epochs`` is the initial
    TRADES model's (``FRALConfig.init_epochs``); 0 means "the loader's default" for ``n`` and ``size`` and "all"
    for ``fairal_labels`` (notebook parameters are flat literals); other ``settings`` are ``FRALConfig`` fields."""
    common = dict(init_epochs=epochs, n=n or None, size=size or None, fairal_labels=fairal_labels or None)
    configs = study_configs(dataset, strategies, seeds, **common, **settings) if split_names(strategies) else []
    utk = table7_dataset(dataset) if split_names(table7) else None
    if utk is not None:  # on the very data of the main runs: the knobs resolved under their backbone's protocol
        same = {"knobs": study_configs(utk, "rand", seed_list(seeds)[:1], **common, **settings)[0].knobs}
        extra = study_configs(utk, table7, seeds, **common, **{**settings, "backbone": "resnet18", **same})
        configs += [c for c in extra if c not in configs]
    return configs


def keys(config: FRALConfig) -> list[dict]:
    return [config.record_config()]


def run(config: FRALConfig, *, store: ResultStore, device, cache: dict, verbose: bool = True) -> list[dict]:
    """One FRAL run (``run_fral``: resumed if it was cut); the data of consecutive runs of one (dataset, seed) is
    shared."""
    key = config_hash(config.data_key())
    if key not in cache:
        cache.clear()  # one data set in memory at a time
        cache[key] = load_fral_data(config)
    return [run_fral(config, store=store, device=device, splits=cache[key], verbose=verbose)]


def parts(configs: Sequence[FRALConfig]) -> list[list[FRALConfig]]:
    """One part per (data set, backbone, seed): its strategies share the initial model, so they stay together."""
    out: dict[tuple, list] = {}
    for c in configs:
        out.setdefault((c.dataset, c.backbone, c.seed), []).append(c)
    return list(out.values())


# The notebook parameters one part of ``reproduce --jobs`` overrides: one part per (data set, backbone, seed).
# (Table 7's parts also set strategies to none; a user's strategies stay shared with the main parts otherwise.)
PART_PARAMETERS = ("dataset", "seeds", "table7")


def part_parameters(params: dict) -> list[dict]:
    """The override dicts of the notebook's parts (``parts`` of the grid, as notebook parameters): one per (data
    set, seed) of the main grid, then one per seed of Table 7's ResNet-18 runs."""
    seeds = seed_list(params["seeds"])
    utk = table7_dataset(params["dataset"]) if split_names(params.get("table7", "")) else None
    off = {"table7": ""} if utk is not None else {}  # the main parts leave Table 7 to its own parts
    out = [{"dataset": d, "seeds": [s], **off} for d in split_names(params["dataset"], what="dataset")
           for s in seeds] if split_names(params.get("strategies", "all")) else []
    if utk is not None:
        out += [{"dataset": utk, "seeds": [s], "strategies": "", "table7": params["table7"]} for s in seeds]
    return out


def tables(records: Sequence[dict], *, save: bool = True) -> dict:
    """``{dataset: {table name: DataFrame}}``: Tables 1-7 and the records table of every data set; with ``save``
    also the claims of all of them (``claims_table``) as ``03_claims``."""
    out = {name: render_tables(recs, name, save=save) for name, recs in by_dataset(records).items()}
    if save and out:
        claims = claims_table(records)
        if not claims.empty:
            save_table(claims, f"{NOTEBOOK}_claims", index=False)
        cross = cross_table(records)
        if cross is not None:
            save_table(cross, f"{NOTEBOOK}_cross", index=False)
    return out


def _per_dataset(name: str, plot):
    return lambda records: [(f"{name}_{ds}", plot(recs, ds)) for ds, recs in by_dataset(records).items()]


FIGURES = {
    "worst_vs_round": _per_dataset("worst_vs_round", lambda recs, ds: plots_active.plot_worst_vs_round(rounds_frame(recs))),
    "worst_group_classes": _per_dataset("worst_group_classes", lambda recs, ds: plots_active.plot_worst_group_classes(
        class_share_frame(recs), title=f"{ds}: labelled classes of the worst group")),
    "cost": _per_dataset("cost", lambda recs, ds: plots_active.plot_selection_cost(table_cost(recs),
                                                                                  title=f"{ds}: selection cost")),
}


def figures(records: Sequence[dict], *names: str) -> list:
    """Draw and save ``03_<name>_<dataset>`` for each of ``names`` (default all of ``FIGURES``) and data set."""
    return draw(NOTEBOOK, FIGURES, records, names)


def claims(records: Sequence[dict]) -> str:
    return describe_claims(records)


def explorer(records: Sequence[dict]):
    """The round explorer widget (notebook 03's interactive corner)."""
    return plots_active.round_explorer(rounds_frame(records))
