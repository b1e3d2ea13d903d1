"""TRADES training throughput: ``fralkit.train.fit`` against a plain fp32 reference loop, in one run.

Target on one H200: a fralkit TRADES epoch (PGD-5, eps 4/255, step 2/255, beta 6, MobileNetV2 with the
32 px stem, ``synbols-cinic`` at 32 px) at least 10x the images/s of the reference measured in the same run.
Besides images/s and the ratio it prints the achieved TFLOP/s and their share of the device's bf16 dense peak:
the FLOPs of one TRADES step (the PGD-5 attack's forwards and input gradients, the two training forwards, the
backward) are counted per image with ``torch.utils.flop_counter.FlopCounterMode`` on the unfolded model
(convolutions and matmuls only, so batch norm and the folded twin's savings are not counted).

The reference is written the usual research-code way, after TRADES' public training script: a
``DataLoader`` over CPU float tensors (batch 128, shuffled), each batch copied to the device, fp32 without
autocast (PyTorch's default TF32 convolutions), NCHW, ``torch.optim.SGD`` (lr 0.1, momentum 0.9, wd 2e-4),
the inner maximisation as a Python loop with the model in eval mode. Same architecture, same data, same
process. fralkit (``fit(objective="trades")``, its defaults): bf16 autocast, channels_last, the data set on the GPU
with GPU-side batching, fused SGD, larger batches, the attack on a copy with batch norm folded into the
convolutions (``FoldedTwin``), the whole step as one CUDA graph; one eager variant (``cuda_graph=False``) shows
what the graph brings, and ``--compile`` adds ``torch.compile`` of the model and the twin inside the graphed
step. Each variant trains a fresh model (same initial weights) for one warm-up epoch (not timed) and ``--epochs``
timed ones.

    python benchmarks/trades_throughput.py                       # GPU: all default variants
    python benchmarks/trades_throughput.py --compile             # also the torch.compile variants (slower start)
    python benchmarks/trades_throughput.py --tiny                # CPU check at tiny size (seconds)
    python benchmarks/trades_throughput.py --json out.json       # also write the numbers
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F


def reference_trades_epoch(model: nn.Module, x_cpu: torch.Tensor, y_cpu: torch.Tensor, *, device: torch.device,
                           batch_size: int = 128, eps: float = 4 / 255, alpha: float = 2 / 255, steps: int = 5,
                           beta: float = 6.0, optimizer: torch.optim.Optimizer, seed: int = 0) -> int:
    """One epoch of TRADES the way its public script does it; returns the number of images seen."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x_cpu, y_cpu), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    kl = nn.KLDivLoss(reduction="sum")
    seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        model.eval()
        x_adv = x.detach() + 0.001 * torch.randn(x.shape, device=device)
        for _ in range(steps):
            x_adv.requires_grad_()
            with torch.enable_grad():
                loss_kl = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
            grad = torch.autograd.grad(loss_kl, [x_adv])[0]
            x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
            x_adv = torch.clamp(x_adv, 0.0, 1.0)
        model.train()
        x_adv = x_adv.detach()
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y) + beta * (1.0 / x.shape[0]) * kl(
            F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1))
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
    return seen


# bf16 dense tensor-core peaks (TFLOP/s, no sparsity) of the data-centre GPUs, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def bf16_peak(name: str) -> float | None:
    """The bf16 dense peak of the device called ``name`` (first matching key of ``BF16_PEAK_TFLOPS``)."""
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def trades_flops_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, **trades) -> float:
    """FLOPs of one TRADES training step per image: the attack's clean forward, ``steps`` forwards with an input
    gradient, and ``trades_loss`` on a given ``x'`` with its backward.

    Each part is counted on its own (``FlopCounterMode`` cannot follow ``torch.autograd.grad``): an attack step is
    a forward and a backward with the weights frozen, which computes the input gradient only, as PGD does.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from fralkit.train import trades_loss

    def count(fn) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    def attack_step():
        xa = x.detach().clone().requires_grad_(True)
        model(xa).logsumexp(1).sum().backward()

    def train_step():
        loss, _ = trades_loss(model, x, y, x_adv=x.detach(), **{k: v for k, v in trades.items() if k == "beta"})
        loss.backward()

    model.eval()
    with torch.no_grad():
        clean = count(lambda: model(x))
    for p in model.parameters():
        p.requires_grad_(False)
    step = count(attack_step)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    train = count(train_step)
    model.zero_grad(set_to_none=True)
    return (clean + steps * step + train) / x.shape[0]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="training images")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per variant")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--batch-sizes", default="256,512,1024", help="fralkit batch sizes (comma separated)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode of the compiled variants (fralkit.train.fast.COMPILE_MODES)")
    parser.add_argument("--compile-batch-sizes", default=None,
                        help="batch sizes of the torch.compile variants (default: the largest of --batch-sizes)")
    parser.add_argument("--layouts", default="channels_last",
                        help="memory formats of the graphed variants, in this order after the eager step (comma "
                             "separated: channels_last, contiguous); bf16 depthwise convolutions in the contiguous "
                             "format run PyTorch's own kernels, in channels_last cuDNN's, which it sets up (compiles) "
                             "for every new shape")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized check: 256 images, small_cnn, 1 epoch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)

    from fralkit.data import load_dataset
    from fralkit.models import make_model
    from fralkit.train import fit
    from fralkit.runtime import resolve_device
    from fralkit.utils import run_info

    if args.tiny:
        args.n, args.epochs, args.backbone, args.batch_sizes = 256, 1, "small_cnn", "64"
    # Generate the images before CUDA is initialised (forking a CUDA process can hang).
    train = load_dataset("synbols-cinic", seed=0, n=args.n, n_val=16, n_test=16).train
    dev = resolve_device(args.device)
    if dev.type != "cuda" and not args.tiny:
        print("no CUDA device: run with --tiny for the CPU check", file=sys.stderr)
    info = run_info(dev)
    print(f"device: {info['device']}  torch {info['torch']}  images: {len(train)} x {tuple(train.x.shape[1:])}  "
          f"model: {args.backbone}  TF32 conv: {torch.backends.cudnn.allow_tf32}  TF32 matmul: "
          f"{torch.backends.cuda.matmul.allow_tf32}")

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return make_model(args.backbone, train.num_classes, in_channels=train.channels, image_size=train.image_size)

    trades = dict(eps=4 / 255, alpha=2 / 255, steps=5, beta=6.0)
    results = []

    # Reference: CPU float tensors, DataLoader, fp32, NCHW, batch 128.
    model = fresh().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    x_cpu, y_cpu = train.x.float().div(255), train.y.clone()
    reference_trades_epoch(model, x_cpu, y_cpu, device=dev, optimizer=opt, seed=0, **trades)  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    seen = sum(reference_trades_epoch(model, x_cpu, y_cpu, device=dev, optimizer=opt, seed=1 + e, **trades)
               for e in range(args.epochs))
    _sync(dev)
    ref_ips = seen / (time.perf_counter() - t0)
    results.append({"variant": "reference fp32, DataLoader, batch 128", "images_per_s": ref_ips})
    print(f"{'reference fp32, DataLoader, batch 128':48s} {ref_ips:10.0f} images/s")

    # The same TRADES loss: fralkit's and the reference formula agree on one batch with a shared x_adv.
    from fralkit.train import trades_loss

    # On a fresh model: the timed one may have diverged (TRADES at lr 0.1 without warm-up can reach NaN weights).
    model = fresh().to(dev).train()
    xb, yb = x_cpu[:32].to(dev), y_cpu[:32].to(dev)
    x_adv = (xb + (torch.rand_like(xb) * 2 - 1) * (4 / 255)).clamp(0, 1)
    with torch.no_grad():
        ours, _ = trades_loss(model, xb, yb, beta=6.0, x_adv=x_adv)
    kl = nn.KLDivLoss(reduction="sum")
    logits = model(xb)
    ref_loss = F.cross_entropy(logits, yb) + 6.0 / 32 * kl(F.log_softmax(model(x_adv), 1), F.softmax(logits, 1))
    print(f"loss check (same batch, same x_adv, fp32): fralkit {ours.item():.6f}  reference {ref_loss.item():.6f}")
    flops = trades_flops_per_image(fresh().to(dev), xb, yb, **trades)
    peak = bf16_peak(info["device"])
    print(f"FLOPs of one TRADES step: {flops / 1e9:.3f} GFLOP per image (FlopCounterMode); bf16 dense peak of "
          f"{info['device']}: {f'{peak:.0f} TFLOP/s' if peak else 'unknown'}")

    variants = []
    bss = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    big = max(bss)
    layouts = [t.strip() for t in args.layouts.split(",") if t.strip()]
    bad = [t for t in layouts if t not in ("channels_last", "contiguous")]
    if bad or not layouts:
        parser.error(f"--layouts takes channels_last and/or contiguous, got {args.layouts!r}")
    variants.append((f"fralkit eager step (cuda_graph=False), batch {big}", dict(batch_size=big, cuda_graph=False)))
    for layout in layouts:
        for bs in bss:
            tag = "" if layout == "channels_last" else ", contiguous"
            variants.append((f"fralkit, batch {bs}{tag}", dict(batch_size=bs, channels_last=layout == "channels_last")))
    if dev.type == "cuda" and args.compile:
        for bs in ([int(b) for b in args.compile_batch_sizes.split(",")] if args.compile_batch_sizes else [big]):
            mode = True if args.compile_mode == "default" else args.compile_mode
            variants.append((f"fralkit + torch.compile ({args.compile_mode}), batch {bs}",
                             dict(batch_size=bs, compile=mode)))
    data = train.to(dev)
    best = 0.0
    for name, kw in variants:
        try:
            model = fresh()
            t0 = time.perf_counter()
            fit(model, data, objective="trades", epochs=1, lr=0.1, weight_decay=2e-4, device=dev, seed=0,
                show_progress=False, **trades, **kw)
            warm_s = time.perf_counter() - t0
            res = fit(model, data, objective="trades", epochs=args.epochs, lr=0.1, weight_decay=2e-4, device=dev,
                      seed=1, show_progress=False, **trades, **kw)
            ips = res.images_per_s
            best = max(best, ips)
            tflops = ips * flops / 1e12
            share = tflops / peak if peak else float("nan")
            results.append({"variant": name, "images_per_s": ips, "ratio": ips / ref_ips, "warmup_s": warm_s,
                            "epoch_s": res.seconds / max(1, args.epochs), "tflops": tflops, "peak_share": share,
                            "graphed": res.graphed})
            print(f"{name:48s} {ips:10.0f} images/s  {ips / ref_ips:5.1f}x  {tflops:6.1f} TFLOP/s = "
                  f"{100 * share:4.1f} % of bf16 peak  graphed={res.graphed}  (epoch {res.seconds / args.epochs:.2f} s, "
                  f"warm-up epoch {warm_s:.1f} s)")
        except Exception as exc:  # a variant that fails on this machine is reported, not fatal
            results.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{name:48s} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3)
    ratio = best / ref_ips
    verdict = "met" if ratio >= 10 else "NOT met"
    print(f"best fralkit / reference: {ratio:.1f}x   target >= 10x: {verdict}"
          + ("" if dev.type == "cuda" else "  (CPU run: the target is for one H200)"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"run": info, "n": len(train), "backbone": args.backbone, "epochs": args.epochs,
                       "flops_per_image": flops, "bf16_peak_tflops": peak, "results": results, "best_ratio": ratio},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
