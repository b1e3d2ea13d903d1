"""Cost of FRAL rounds with and without cuDNN's autotuner during training, each in a fresh process, one run.

The FRAL loop fine-tunes on a labelled set that grows by B every round, so the last training batch has a new
shape every round. With ``torch.backends.cudnn.benchmark`` on, cuDNN times its algorithms again for every new
shape. The committed notebook-03 records (one H100, autotuner on) show each process's first run spending
119-162 s fine-tuning over 5 rounds against 5-7 s for later runs; this script tests whether the autotuner is the
cause. ``FRALConfig.cudnn_benchmark`` (default off) chooses.

Each setting runs in its own Python process (the autotuner's cache lives for a process), on the same data: the
initial TRADES model, then two strategies one after the other, RAND (pays any tuning) and ENT (shapes already
seen). Printed per setting: initial training, fine-tuning of the first and of the second strategy (all rounds),
ENT's selection, and the process's wall time; then the ratio autotuner-on / autotuner-off of each.

    python benchmarks/fral_round_cost.py              # CUDA: MobileNetV2, synbols-utk, n 2000 (the gpu profile's size)
    python benchmarks/fral_round_cost.py --tiny       # CPU check (the autotuner does not exist there: ratio ~1)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> dict:
    """One process: the initial model, then RAND and ENT, with the autotuner ``args.benchmark``."""
    from fralkit.active.loop import FRALConfig, load_fral_data, run_fral
    from fralkit.experiments import ResultStore
    from fralkit.runtime import resolve_device
    from fralkit.utils import device_name

    dev = resolve_device(args.device)
    store = ResultStore(args.results)
    base = dict(dataset="synbols-utk", backbone=args.backbone, n=args.n, size=args.size, rounds=args.rounds,
                init_epochs=args.init_epochs, finetune_epochs=2, batch_size=args.batch_size, lr=0.05, warmup_epochs=1.0,
                grad_clip=5.0, cudnn_benchmark=bool(args.benchmark), seed=0)
    splits = load_fral_data(FRALConfig(strategy="rand", **base))
    t0 = time.perf_counter()
    recs = {s: run_fral(FRALConfig(strategy=s, **base), store=store, device=dev, splits=splits) for s in ("rand", "ent")}
    wall = time.perf_counter() - t0
    return {"device": device_name(dev), "benchmark": bool(args.benchmark), "wall_s": wall,
            "init_at_s": recs["rand"]["timings"]["init_at_s"],
            "finetune_first_s": recs["rand"]["timings"]["finetune_s"],
            "finetune_first_rounds": recs["rand"]["timings"].get("finetune_s_rounds"),
            "finetune_second_s": recs["ent"]["timings"]["finetune_s"],
            "select_ent_s": recs["ent"]["timings"]["select_s"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small_cnn, 16 px, n 300: a quick check on CPU")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--init-epochs", type=int, default=None, help="initial TRADES epochs (default 20; tiny 2)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--benchmark", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backbone = args.backbone or ("small_cnn" if args.tiny else "mobilenetv2")
    args.n = args.n or (300 if args.tiny else 2000)
    args.size = args.size or (16 if args.tiny else 32)
    args.init_epochs = args.init_epochs or (2 if args.tiny else 20)
    args.batch_size = args.batch_size or (32 if args.tiny else 128)
    if args.child:
        out = child(args)
        print(json.dumps(out))
        return out

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for flag in (1, 0):
            cmd = [sys.executable, __file__, "--child", "--benchmark", str(flag), "--results", str(Path(tmp) / f"r{flag}"),
                   "--backbone", args.backbone, "--n", str(args.n), "--size", str(args.size), "--rounds", str(args.rounds),
                   "--init-epochs", str(args.init_epochs), "--batch-size", str(args.batch_size), "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"the child process with the autotuner {'on' if flag else 'off'} failed")
            rows["on" if flag else "off"] = json.loads(done.stdout.strip().splitlines()[-1])
    on, off = rows["on"], rows["off"]
    print(f"device: {on['device']}; {args.backbone}, synbols-utk n={args.n}, {args.size} px, batch {args.batch_size}, "
          f"{args.rounds} rounds, initial model {args.init_epochs} epochs")
    print(f"{'seconds':<34}{'autotuner on':>14}{'off':>10}{'on / off':>10}")
    for key, label in (("init_at_s", "initial TRADES model"), ("finetune_first_s", "fine-tuning, first strategy (RAND)"),
                       ("finetune_second_s", "fine-tuning, second strategy (ENT)"), ("select_ent_s", "ENT selection"),
                       ("wall_s", "process, both strategies")):
        ratio = on[key] / off[key] if off[key] > 0 else float("nan")
        print(f"{label:<34}{on[key]:>14.2f}{off[key]:>10.2f}{ratio:>10.2f}")
    print("first strategy's fine-tuning per round (on):", [round(v, 2) for v in on.get("finetune_first_rounds") or []])
    print("first strategy's fine-tuning per round (off):", [round(v, 2) for v in off.get("finetune_first_rounds") or []])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
