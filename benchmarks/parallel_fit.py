"""Several models at once: k processes sharing one GPU against one process, on the FRAL loop's fine-tuning unit.

Notebook 03's 13 strategies of one (data set, seed) fine-tune models of one shape on labelled sets of one size
every round, so a run can put several of them on a GPU at once (``reproduce --jobs auto --parts-per-gpu k``
starts k processes). This measures what that buys: the same work, ``k x --units`` fine-tunings, done by one
process one after another and by k processes at once, each process set up (data on the GPU, a warm-up
fine-tuning: cuDNN's plans and the CUDA-graph capture of its shapes) before a common start. Printed per k: the
wall time from the start to the last process's end, fine-tunings per minute, their ratio to one process, and each
process's peak GPU memory.

The unit is one round's adversarial fine-tuning as the loop runs it (``fralkit.train.fit``, TRADES, PGD-5 at
4/255, batch 256, lr 0.01, 5 epochs) of a MobileNetV2 at 32 px on ``--n`` images of ``synbols-utk`` (3,388:
round 1's labelled set at the paper's size), each unit from a fresh model.

    python benchmarks/parallel_fit.py                    # CUDA: k = 1, 2, 4, 6
    python benchmarks/parallel_fit.py --ks 1,3 --units 3
    python benchmarks/parallel_fit.py --tiny             # CPU check: small_cnn, k = 1, 2 (seconds)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAIT_S = 900  # a worker gives up waiting for the common start after this long


def unit(data, args, seed: int, device) -> float:
    """One fine-tuning from a fresh model; returns its seconds."""
    import torch

    from fralkit.models import make_model
    from fralkit.runtime import sync
    from fralkit.train import fit

    torch.manual_seed(seed)
    model = make_model(args.backbone, data.num_classes, in_channels=data.channels, image_size=data.image_size)
    sync(device)
    t0 = time.perf_counter()
    fit(model, data, objective="trades", epochs=args.epochs, batch_size=args.batch, lr=args.lr, eps=4 / 255,
        alpha=2 / 255, steps=5, beta=6.0, seed=seed, device=device, show_progress=False)
    sync(device)
    return time.perf_counter() - t0


def worker(args) -> int:
    """One process: set up, say ready, wait for the start, run ``--units`` fine-tunings, print its numbers."""
    import torch

    from fralkit.data import load_dataset
    from fralkit.runtime import resolve_device

    data = load_dataset("synbols-utk", seed=0, n=args.n, n_val=16, n_test=16).train
    dev = resolve_device(args.device)
    if dev.type == "cpu":  # k processes share the cores, not k times all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.k))
    data = data.to(dev)
    warm_s = unit(data, args, seed=10_000 + args.rank, device=dev)
    sync_dir = Path(args.sync)
    (sync_dir / f"ready_{args.rank}").touch()
    t_wait = time.perf_counter()
    while not (sync_dir / "go").exists():
        if time.perf_counter() - t_wait > WAIT_S:
            print(json.dumps({"rank": args.rank, "error": "no start signal"}), flush=True)
            return 1
        time.sleep(0.01)
    start = float((sync_dir / "go").read_text())
    seconds = [unit(data, args, seed=args.rank * 1000 + i, device=dev) for i in range(args.units)]
    end = time.time()
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0
    print(json.dumps({"rank": args.rank, "warmup_s": warm_s, "unit_s": seconds, "start": start, "end": end,
                      "peak_gib": peak}), flush=True)
    return 0


def run_k(args, k: int, units: int) -> dict:
    """``k`` worker processes of ``units`` fine-tunings each, started together; their numbers and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--sync", tmp, "--units", str(units),
               "--n", str(args.n), "--epochs", str(args.epochs), "--batch", str(args.batch), "--lr", str(args.lr),
               "--backbone", args.backbone, "--device", args.device]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)}
        procs = [subprocess.Popen(cmd + ["--rank", str(r), "--k", str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for r in range(k)]
        t0 = time.perf_counter()
        while sum((Path(tmp) / f"ready_{r}").exists() for r in range(k)) < k:
            if any(p.poll() not in (None, 0) for p in procs) or time.perf_counter() - t0 > WAIT_S:
                for p in procs:
                    p.kill()
                errors = [p.communicate()[1][-2000:] for p in procs]
                raise RuntimeError(f"k={k}: a worker failed before the start:\n" + "\n".join(errors))
            time.sleep(0.05)
        (Path(tmp) / "go").write_text(repr(time.time()))
        outs = [p.communicate() for p in procs]
    rows = []
    for (out, err), p in zip(outs, procs):
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"k={k}: a worker failed (exit {p.returncode}):\n{err[-2000:]}")
        rows.append(json.loads(lines[-1]))
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {"k": k, "units": k * units, "wall_s": wall, "per_minute": 60 * k * units / wall,
            "unit_s": [s for r in rows for s in r["unit_s"]], "warmup_s": [r["warmup_s"] for r in rows],
            "peak_gib": [r["peak_gib"] for r in rows]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,2,4,6", help="numbers of processes at once (comma separated; 1 first)")
    parser.add_argument("--units", type=int, default=2, help="fine-tunings per process")
    parser.add_argument("--n", type=int, default=3388, help="labelled images of one fine-tuning")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="CPU check: small_cnn, 96 images, k = 1, 2")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--sync", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.tiny:
        args.ks, args.units, args.n, args.epochs, args.batch, args.backbone = "1,2", 1, 96, 1, 32, "small_cnn"
        args.device = "cpu" if args.device == "auto" else args.device
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    if not ks or ks[0] != 1:
        raise SystemExit("--ks must start with 1: the one-process run is the reference")

    from fralkit.runtime import resolve_device
    from fralkit.utils import device_name

    print(f"device: {device_name(resolve_device(args.device))}; unit: TRADES fine-tuning of {args.backbone}, {args.n} "
          f"images x {args.epochs} epochs at batch {args.batch}; {args.units} per process")
    results = []
    for k in ks:
        res = run_k(args, k, args.units)
        results.append(res)
        ratio = res["per_minute"] / results[0]["per_minute"]
        print(f"k = {k}: {res['units']} fine-tunings in {res['wall_s']:7.1f} s = {res['per_minute']:6.1f} per minute "
              f"= {ratio:4.2f}x one process; one fine-tuning {min(res['unit_s']):.1f}-{max(res['unit_s']):.1f} s; "
              f"set-up (warm-up fine-tuning) {min(res['warmup_s']):.1f}-{max(res['warmup_s']):.1f} s; peak GPU memory "
              f"{max(res['peak_gib']):.2f} GiB per process", flush=True)
    best = max(results, key=lambda r: r["per_minute"])
    print(f"fastest: k = {best['k']} ({best['per_minute'] / results[0]['per_minute']:.2f}x one process)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
