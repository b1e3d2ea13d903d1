"""Cost of one (data set, seed) part of notebook 03's ``gpu`` profile, against a plain TRADES reference, in one run.

Targets on one H200: the loop's own initial TRADES training at least 8x the images/s of the reference loop of
``benchmarks/trades_throughput.py`` (fp32, DataLoader, batch 128) measured in the same process on the same images
and model, and JIN's selection at most 10 % of the initial adversarial training (Table 4's "Init. AT").

The part runs as ``reproduce --jobs`` runs it: ``fralkit.studies.jin.grid`` with the profile's parameters, one
data set and one seed, its strategies one after the other through ``fralkit.studies.jin.run`` into a temporary
result store. ``--strategies`` runs a subset (the default ``jin,rand``: the initial model, JIN and one cheap
baseline; ``all`` is the whole part). Printed: each strategy's stages from its record's ``timings`` (the initial
model, selection, fine-tuning, JIN's standard model, evaluation, the cross-paper columns' DeepFool), the loop's
training images/s (labelled images x epochs of the initial model over its training seconds; the filler of the
last batch is not counted) as a ratio to the reference, and JIN's selection as a share of the initial training.

    python benchmarks/fral_study_cost.py                        # CUDA: synbols-utk, seed 0, jin and rand
    python benchmarks/fral_study_cost.py --strategies all       # the whole part
    python benchmarks/fral_study_cost.py --set compile=True     # the part with torch.compile
    python benchmarks/fral_study_cost.py --tiny                 # CPU check: the smoke profile, seconds
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trades_throughput import reference_trades_epoch  # noqa: E402  (the one reference loop of the benchmarks)


class Stamped:
    """A text stream that starts every line with the seconds since ``t0`` (``--verbose``: where the part's time
    goes, also between the loop's own lines)."""

    def __init__(self, stream, t0: float):
        self.stream, self.t0, self.fresh = stream, t0, True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self.fresh:
                self.stream.write(f"[{time.perf_counter() - self.t0:7.1f} s] ")
            self.stream.write(piece)
            self.fresh = piece.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def part_configs(profile: str, dataset: str, seed: int, strategies: str, overrides: dict | None = None) -> list:
    """Notebook 03's configs of one (data set, seed) under ``profile``, as ``reproduce --jobs`` builds its part and
    ``python -m fralkit compute 03`` runs it (``fralkit.studies.notebook_configs``); ``overrides`` are notebook 03's
    parameters, checked as ``--set`` is. Table 7's ResNet-18 runs only when asked (``table7=...``)."""
    from fralkit.studies import notebook_configs

    over = {"table7": "", **(overrides or {}), "dataset": dataset, "seeds": [seed], "strategies": strategies}
    return notebook_configs("03", profile, over)[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synbols-utk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategies", default="jin,rand", help="comma separated, or all")
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--tiny", action="store_true", help="CPU check: the smoke profile")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a notebook 03 parameter over the profile's, as reproduce --set takes it, e.g. compile=False; repeatable")
    parser.add_argument("--verbose", action="store_true", help="the loop's own lines: the initial model, every round")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    from fralkit.active.loop import load_fral_data
    from fralkit.experiments import ResultStore
    from fralkit.models import make_model
    from fralkit.runtime import resolve_device, sync
    from fralkit.studies import jin
    from fralkit.profiles import parse_overrides  # reproduce's --set: the same KEY=VALUE parsing (no Jupyter imports)
    from fralkit.utils import config_hash, run_info

    if args.verbose:
        sys.stdout = Stamped(sys.stdout, time.perf_counter())
    profile = "smoke" if args.tiny else args.profile
    configs = part_configs(profile, args.dataset, args.seed, args.strategies, overrides=parse_overrides(args.set))
    splits = load_fral_data(configs[0])  # before CUDA starts (the generator may fork)
    dev = resolve_device(args.device)
    info = run_info(dev)
    c0 = configs[0]
    train = splits.train
    print(f"device: {info['device']}  torch {info['torch']}  notebook 03 profile {profile}: {args.dataset} seed "
          f"{args.seed}, {c0.backbone}, batch {c0.batch_size}, lr {c0.lr}, initial model {c0.init_epochs} epochs, "
          f"{c0.rounds} rounds, strategies {[c.strategy for c in configs]}")

    # The reference: the plain TRADES loop on this part's training images and model, one warm-up epoch, one timed.
    torch.manual_seed(0)
    model = make_model(c0.backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    x_cpu, y_cpu = train.x.float().div(255), train.y.clone()
    threat = dict(eps=c0.eps, alpha=c0.alpha, steps=c0.steps, beta=c0.beta)
    reference_trades_epoch(model, x_cpu, y_cpu, device=dev, optimizer=opt, seed=0, **threat)
    sync(dev)
    t0 = time.perf_counter()
    seen = reference_trades_epoch(model, x_cpu, y_cpu, device=dev, optimizer=opt, seed=1, **threat)
    sync(dev)
    ref_ips = seen / (time.perf_counter() - t0)
    print(f"reference TRADES loop (fp32, DataLoader, batch 128): {ref_ips:.0f} images/s")
    del model, opt

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "results")
        cache: dict = {config_hash(c0.data_key()): splits}  # the key jin.run looks the data up by
        t_part = time.perf_counter()
        for c in configs:
            t0 = time.perf_counter()
            rec = jin.run(c, store=store, device=dev, cache=cache, verbose=args.verbose)[-1]
            rows[c.strategy] = {"wall_s": time.perf_counter() - t0,
                                **{k: v for k, v in rec["timings"].items() if isinstance(v, (int, float))}}
            if "vf_deepfool_s" in rec["metrics"]:  # the cross-paper columns' DeepFool on the final model
                rows[c.strategy]["vf_deepfool_s"] = rec["metrics"]["vf_deepfool_s"]
            if args.verbose:
                stages = ", ".join(f"{k} {v:.1f}" for k, v in rows[c.strategy].items() if k != "wall_s")
                print(f"[{c.strategy}] done in {rows[c.strategy]['wall_s']:.1f} s ({stages})", flush=True)
        part_s = time.perf_counter() - t_part
    stages = sorted({k for r in rows.values() for k in r if k.endswith("_s")})
    print(f"{'seconds':<12}" + "".join(f"{k:>16}" for k in stages))
    for name, r in rows.items():
        print(f"{name:<12}" + "".join(f"{r.get(k, float('nan')):>16.2f}" for k in stages))
    init_s = next(r["init_at_s"] for r in rows.values() if "init_at_s" in r)
    n_init = int(round(c0.init_frac * len(train)))
    epochs = c0.init_epochs_for(n_init)  # init_epochs, or more where init_min_steps asks for them
    loop_ips = n_init * epochs / init_s
    print(f"initial TRADES model: {n_init} labels x {epochs} epochs in {init_s:.2f} s = {loop_ips:.0f} images/s"
          f" = {loop_ips / ref_ips:.1f}x the reference   target >= 8x: {'met' if loop_ips / ref_ips >= 8 else 'NOT met'}")
    out = {"run": info, "profile": profile, "dataset": args.dataset, "seed": args.seed, "reference_images_per_s": ref_ips,
           "loop_images_per_s": loop_ips, "ratio": loop_ips / ref_ips, "part_s": part_s, "strategies": rows}
    if "jin" in rows:
        share = rows["jin"].get("select_s", float("nan")) / init_s
        out["jin_select_share"] = share
        print(f"JIN selection {rows['jin'].get('select_s', float('nan')):.2f} s = {100 * share:.1f} % of the initial "
              f"training   target <= 10 %: {'met' if share <= 0.10 else 'NOT met'}")
    print(f"the part ({len(configs)} strategies): {part_s:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
