"""BALD scoring by MC dropout: trunk once + T head samples against T full forward passes, same pool, one run.

When all dropout sits in the head (``vgg_mc``, ``small_cnn``), ``features(x)`` is deterministic under MC
dropout, so ``fralkit.active.bald.mc_probs`` computes it once per batch and samples only ``head(z)`` T times.
Both paths draw the dropout masks in the same order from the same seed, so their probabilities and BALD
scores must agree up to float rounding; this script checks that and prints the speed ratio.

Target: at least 5x at T = 20, on one H100 (vgg_mc, 64 px, a 10,000-image pool) and on CPU.

    python benchmarks/bald_speed.py            # CUDA: vgg_mc 64 px, pool 10000; CPU: vgg_mc 32 px, pool 128
    python benchmarks/bald_speed.py --tiny     # seconds on CPU: small_cnn 32 px, pool 256
    python benchmarks/bald_speed.py --pool 20000 --size 64 --T 20 --backbone vgg_mc --device cuda
"""
from __future__ import annotations

import argparse
import time

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, dev: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small_cnn, 32 px, pool 256: a quick check on CPU")
    parser.add_argument("--backbone", default=None, help="model name (default vgg_mc; small_cnn with --tiny)")
    parser.add_argument("--pool", type=int, default=None, help="pool size (default 10000 on CUDA, 128 on CPU, 256 tiny)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 64 on CUDA, 32 on CPU)")
    parser.add_argument("--T", type=int, default=20, help="MC-dropout samples")
    parser.add_argument("--batch-size", type=int, default=None, help="examples per trunk pass (default 1024 CUDA, 256 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, the best is kept (default 3 CUDA, 2 CPU)")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto", help="bf16 autocast (auto: on for CUDA)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from fralkit.active.bald import bald_scores, mc_probs
    from fralkit.models import make_model
    from fralkit.runtime import resolve_device
    from fralkit.utils import device_name

    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    backbone = args.backbone or ("small_cnn" if args.tiny else "vgg_mc")
    pool = args.pool or (256 if args.tiny else 10_000 if cuda else 128)
    repeats = args.repeats or (3 if cuda else 2)
    size = args.size or (32 if args.tiny or not cuda else 64)
    batch = args.batch_size or (1024 if cuda else 256)
    amp = cuda if args.amp == "auto" else args.amp == "on"
    kw = {"dropout": 0.5} if backbone == "small_cnn" else {}

    torch.manual_seed(0)
    model = make_model(backbone, 2, in_channels=3, image_size=size, **kw).to(dev).eval()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (pool, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)).to(dev)

    run = dict(T=args.T, batch_size=batch, seed=123, amp=amp)
    mc_probs(model, x[: min(pool, batch)], fast=True, **run)   # warm-up: kernels, allocator
    mc_probs(model, x[: min(pool, batch)], fast=False, **run)
    t_fast, p_fast = _time(lambda: mc_probs(model, x, fast=True, **run), dev, repeats)
    t_full, p_full = _time(lambda: mc_probs(model, x, fast=False, **run), dev, repeats)

    s_fast, s_full = bald_scores(p_fast), bald_scores(p_full)
    prob_diff = float((p_fast - p_full).abs().max())
    score_diff = float((s_fast - s_full).abs().max())
    tol = 2e-2 if amp else 1e-4
    k = min(50, pool)
    overlap = len(set(s_fast.topk(k).indices.tolist()) & set(s_full.topk(k).indices.tolist())) / k
    ratio = t_full / t_fast
    print(f"device          : {device_name(dev)}")
    print(f"setup           : {backbone}, {size} px, pool {pool}, T = {args.T}, batch {batch}, "
          f"{'bf16 autocast' if amp else 'fp32'}, best of {repeats}")
    print(f"trunk once      : {t_fast:8.3f} s  ({pool / t_fast:9.0f} images/s)")
    print(f"T full passes   : {t_full:8.3f} s  ({pool / t_full:9.0f} images/s)")
    print(f"max |dp|        : {prob_diff:.2e}   max |d BALD|: {score_diff:.2e}   top-{k} overlap: {overlap:.2f}   "
          f"(tolerance {tol:g}: {'ok' if max(prob_diff, score_diff) <= tol else 'EXCEEDED'})")
    print(f"ratio           : {ratio:8.1f}x   target >= 5x: {'met' if ratio >= 5 else 'NOT met'}")
    return {"ratio": ratio, "fast_s": t_fast, "full_s": t_full, "prob_diff": prob_diff, "score_diff": score_diff,
            "overlap": overlap}


if __name__ == "__main__":
    main()
