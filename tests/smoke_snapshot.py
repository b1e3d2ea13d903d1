"""Snapshot of every notebook's ``smoke`` records, to show that a refactoring keeps behaviour identical.

    python tests/smoke_snapshot.py write before.json      # run all notebooks on smoke (CPU), snapshot the records
    python tests/smoke_snapshot.py compare before.json after.json

``write`` runs ``reproduce(profile="smoke")`` into a temporary folder (fresh data cache, results and figures) and
keeps, per record, its key (the config hash) and every number and list of numbers it holds except timings and provenance. A record is named by
``study/dataset/method/seed`` (plus its ``row`` or ``backbone`` where a study has them). ``compare`` requires the
same records, integer values (selected indices, counts) equal exactly and floats within ``--tol`` (1e-6).
Field renames of the record schema are declared in ``ALIASES`` so an old snapshot compares against a new one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

# Leaves that describe a run's cost or provenance, not its result.
VOLATILE = ("timings", "saved_at", "device", "torch", "torchvision", "numpy", "python", "git_commit",
            "seconds", "time", "wall", "fingerprint", "path", "finished_at", "versions", "provenance")
# old leaf path prefix -> new one, for fields the record schema moved (schema 2: histories under ``series``).
ALIASES: dict[str, str] = {"history/": "series/history/"}


# leaves a newer record schema adds (schema 2: its version number)
ADDED = ("schema",)


def _alias(path: str) -> str:
    for old, new in ALIASES.items():
        if path.startswith(old):
            return new + path[len(old):]
    return path


def _volatile(path: str) -> bool:
    return any(p in VOLATILE or p.endswith("_s") or p.endswith("_s_total")
               or any(w in p for w in ("time", "seconds", "wall", "fingerprint", "per_s"))
               for p in path.split("/"))


def _leaves(obj, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list) and obj and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
        yield prefix, obj
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}/{i}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, obj


def record_name(rec: dict) -> str:
    cfg = rec.get("config", {})
    extra = [f"{k}={cfg[k]}" for k in ("row", "backbone", "kind") if k in cfg]
    return "/".join(str(cfg.get(k)) for k in ("study", "dataset", "method", "seed")) + ("/" + ",".join(extra) if extra else "")


def snapshot_store(results: Path) -> dict:
    out = {}
    for path in sorted(results.rglob("*.json")):
        rec = json.loads(path.read_text())
        if "config" not in rec or "schema" in rec and not isinstance(rec.get("metrics"), dict):
            continue
        leaves = {_alias(p): v for p, v in _leaves(rec) if not _volatile(p)}
        leaves["key"] = rec.get("key")
        name = record_name(rec)
        if name in out:
            raise SystemExit(f"two records named {name}: {path}")
        out[name] = leaves
    return out


def write(target: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FRALKIT_CACHE"] = str(tmp / "cache")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["OMP_NUM_THREADS"] = "1"  # float sums depend on the thread count: compare like with like
        from fralkit.reproduce import reproduce

        reproduce("smoke", out=tmp / "figures", executed=tmp / "executed", results=tmp / "results")
        snap = {"records": snapshot_store(tmp / "results"),
                "tables": {p.name: p.read_text() for p in sorted((tmp / "figures").glob("*.csv"))}}
    target.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    print(f"{len(snap['records'])} records -> {target}")


def _close(a, b, tol: float) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            _close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)))


def compare(before: Path, after: Path, tol: float) -> int:
    a, b = json.loads(before.read_text())["records"], json.loads(after.read_text())["records"]
    problems = [f"record {n} only in {before.name}" for n in sorted(set(a) - set(b))]
    problems += [f"record {n} only in {after.name}" for n in sorted(set(b) - set(a))]
    values = 0
    for name in sorted(set(a) & set(b)):
        la = {_alias(p): v for p, v in a[name].items()}
        lb = b[name]
        for p in sorted(set(la) - set(lb)):
            problems.append(f"{name}: {p} missing after")
        for p in sorted(set(lb) - set(la) - set(ADDED)):
            problems.append(f"{name}: {p} new after")
        for p in sorted(set(la) & set(lb)):
            values += 1
            if not _close(la[p], lb[p], tol):
                problems.append(f"{name}: {p} differs: {str(la[p])[:80]} vs {str(lb[p])[:80]}")
    ta, tb = json.loads(before.read_text()).get("tables", {}), json.loads(after.read_text()).get("tables", {})
    changed = sorted(n for n in set(ta) | set(tb) if ta.get(n) != tb.get(n))
    for line in problems:
        print(line)
    if changed:  # tables hold timings too, so a changed table is reported, not counted as a difference
        print(f"tables whose text changed (timings included, for a look): {', '.join(changed)}")
    print(f"{len(set(a) & set(b))} records, {values} values compared; {len(problems)} differences")
    return 1 if problems else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("target", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--tol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.cmd == "write":
        write(args.target)
        return 0
    return compare(args.before, args.after, args.tol)


if __name__ == "__main__":
    sys.exit(main())
