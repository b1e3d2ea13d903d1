"""Batched DeepFool (``fralkit.attacks.deepfool``) against a one-image-at-a-time reference loop.

Targets on one H200: 10,000 images at 32 px through ResNet-18 in at most 10 s, and at least 50x the reference,
with every distance within 1e-3 relative of the reference's. Both run in the same process on the same trained
ResNet-18 and the same test images; the reference in fp32 with TF32 off. The verdict is that of ``deepfool``'s
defaults (the model as is, fp32); ``--variants`` also times batch norm folded into the convolutions, TF32, bf16,
the active batch padded to recurring shapes, cuDNN's autotuner and the 3xTF32 split convolutions (``VARIANTS``),
each with its agreement. The first ``--ref64-n`` images are also attacked by the reference in float64, and every
row says how far it is from those exact distances, the fp32 reference's own row included: a distance whose
iteration count hangs on the last bits moves by more than 1e-3 under any change of rounding. ``--model
mobilenetv2`` times the backbone of notebook 03, whose depthwise convolutions cost cuDNN a set-up per new batch
shape. The model gets standard training on ``synbols-cinic`` (10 classes) with notebook 04's gpu recipe (lr 0.05,
1-epoch warm-up, gradient clip 5; that run reached 94 % on 8,000 images in 12 epochs). A model near chance has
every boundary close, so DeepFool needs few iterations and both timings flatter the attack: the script warns below
50 % test accuracy. The reference works the way the original DeepFool code does: one image per forward pass and one
backward pass per candidate logit per iteration. It is timed on a subset (``--ref-n``) and extrapolated to ``--n``;
the output says so. On the reference subset the two distances must agree within 1e-3 relative.

    python benchmarks/deepfool_speed.py                 # GPU: the targets above
    python benchmarks/deepfool_speed.py --tiny          # CPU check at tiny size (a few seconds)
    python benchmarks/deepfool_speed.py --variants all  # also folded, tf32, bf16, cuDNN's autotuner
    python benchmarks/deepfool_speed.py --json out.json # also write the numbers
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch


def reference_deepfool(model, image: torch.Tensor, *, num_classes: int = 10, overshoot: float = 0.02,
                       max_iter: int = 50) -> tuple[float, int, bool]:
    """One image (``[C, H, W]``): returns ``(d_theta (Eq. 8, boundary reading), iterations, flipped)``."""
    with torch.no_grad():
        f0 = model(image[None])[0]
    order = f0.argsort(descending=True)[:num_classes]
    label = order[0]
    r_tot = torch.zeros_like(image)
    x = image.clone()
    loop_i, k_i = 0, label
    while k_i == label and loop_i < max_iter:
        xv = x[None].clone().requires_grad_(True)
        fs = model(xv)[0]
        grads = [torch.autograd.grad(fs[c], xv, retain_graph=True)[0][0] for c in order]
        pert, w = float("inf"), None
        for j in range(1, len(order)):
            w_k = grads[j] - grads[0]
            pert_k = float((fs[order[j]] - fs[label]).detach().abs() / w_k.norm())
            if pert_k < pert:
                pert, w = pert_k, w_k
        r_tot = r_tot + (pert + 1e-4) * w / w.norm()
        x = image + (1 + overshoot) * r_tot
        with torch.no_grad():
            k_i = model(x[None])[0].argmax()
        loop_i += 1
    norm = float(r_tot.norm())
    return 0.5 * (norm + (1 + overshoot) * norm), loop_i, bool(k_i != label)


# deepfool options of each variant; "default" is deepfool's defaults, whose numbers give the verdict ("fp32" the same
# options, named). The autotuned ones are timed twice: the first call tunes every new shape, the second finds them
# tuned.
VARIANTS = {
    "default": {},
    "fp32": dict(precision="fp32"),
    "folded": dict(precision="fp32", fold_bn=True),
    "tf32": dict(precision="tf32", fold_bn=True),
    "tf32-cl": dict(precision="tf32", fold_bn=True, channels_last=True),
    "bf16": dict(precision="bf16", fold_bn=True),
    "padded": dict(precision="fp32", pad=True),
    "batched": dict(grad_mode="batched"),
    "padded-batched": dict(pad=True, grad_mode="batched"),
    "autotune": dict(precision="fp32", autotune=True),
    "autotune-cl": dict(precision="fp32", autotune=True, channels_last=True),
    "folded-autotune-cl": dict(precision="fp32", fold_bn=True, autotune=True, channels_last=True),
    "3xtf32-folded": dict(precision="3xtf32", fold_bn=True),
    "3xtf32-cl": dict(precision="3xtf32", channels_last=True),
    "3xtf32-folded-cl": dict(precision="3xtf32", fold_bn=True, channels_last=True),
    "3xtf32-padded": dict(precision="3xtf32", pad=True),
    "3xtf32-folded-autotune-cl": dict(precision="3xtf32", fold_bn=True, autotune=True, channels_last=True),
    # split_max_k: fralkit.attacks.split_tf32.MAX_K for this row (the longest tensor-core sum; 576 by default)
    "3xtf32-k288-cl": dict(precision="3xtf32", channels_last=True, split_max_k=288),
    "3xtf32-k1152-cl": dict(precision="3xtf32", channels_last=True, split_max_k=1152),
    "3xtf32-k4608-cl": dict(precision="3xtf32", channels_last=True, split_max_k=4608),
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images attacked by the batched DeepFool")
    parser.add_argument("--ref-n", type=int, default=200, help="images attacked by the reference loop (extrapolated)")
    parser.add_argument("--ref64-n", type=int, default=50, help="of those, images also attacked by the reference loop "
                        "in float64: how far each fp32 computation, the reference's included, is from exact arithmetic")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--train-n", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=12, help="standard training epochs before the attack")
    parser.add_argument("--batch", type=int, default=2500, help="DeepFool batch size")
    parser.add_argument("--grad-mode", default="loop", choices=["loop", "batched"])
    parser.add_argument("--variants", default="", help="also time these variants (comma separated, or all: "
                        "see VARIANTS), each against the reference")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized check: 48 images at 16 px, 8 for the reference")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.n, args.ref_n, args.size, args.train_n, args.epochs, args.batch = 48, 8, 16, 300, 1, 48
        args.ref64_n = min(args.ref64_n, 4)

    from fralkit.attacks.deepfool import _arithmetic, deepfool
    from fralkit.data import load_dataset
    from fralkit.models import make_model
    from fralkit.train import fit
    from fralkit.runtime import resolve_device, set_seed
    from fralkit.utils import device_name

    dev = resolve_device(args.device)
    # Generate before CUDA work starts (the generator is single-process; cached by config).
    splits = load_dataset("synbols-cinic", seed=0, n=args.train_n, n_test=args.n, size=args.size)
    set_seed(0)
    model = make_model(args.model, splits.train.num_classes, in_channels=3, image_size=args.size).to(dev)
    t0 = time.perf_counter()
    fit(model, splits.train.to(dev), objective="standard", epochs=args.epochs, batch_size=256, lr=0.05,
        warmup_epochs=0.0 if args.tiny else 1.0, grad_clip=5.0, seed=0, device=dev, show_progress=False)
    train_s = time.perf_counter() - t0
    model.eval()
    x = splits.test.float_images().to(dev)
    with torch.no_grad():
        acc = float((torch.cat([model(b).argmax(1) for b in x.split(1024)]).cpu() == splits.test.y).float().mean())
    print(f"device: {device_name(dev)}; {args.model} trained {args.epochs} epochs on {len(splits.train)} synbols-cinic "
          f"images ({train_s:.1f} s), clean test accuracy {100 * acc:.1f} %")
    if acc < 0.5 and not args.tiny:
        print(f"WARNING: the model is at {100 * acc:.1f} % test accuracy: its boundaries are close, DeepFool needs few "
              "iterations and both timings below flatter the attack; train longer (--epochs)")

    m = min(args.ref_n, len(x))
    ref_d, ref_it, ref_fl = [], [], []
    with _arithmetic(dev):
        reference_deepfool(model, x[0], num_classes=splits.train.num_classes)  # warm-up
        _sync(dev)
        t0 = time.perf_counter()
        for i in range(m):
            d, it, fl = reference_deepfool(model, x[i], num_classes=splits.train.num_classes)
            ref_d.append(d), ref_it.append(it), ref_fl.append(fl)
        _sync(dev)
        ref_s = time.perf_counter() - t0
    ref_rate = m / ref_s
    print(f"reference loop  : {m} images in {ref_s:.2f} s = {ref_rate:.2f} images/s (one image at a time; timed on "
          f"{m} of the {len(x)} images and extrapolated: {len(x) / ref_rate:.1f} s for all)")
    ref_d_t = torch.tensor(ref_d, dtype=torch.float64)

    # The same reference in float64 on the first images: the distances of exact arithmetic, up to 1e-16.
    m64 = min(args.ref64_n, m)
    model64 = copy.deepcopy(model).double()
    x64 = x[:m64].double()
    t0 = time.perf_counter()
    exact = torch.tensor([reference_deepfool(model64, x64[i], num_classes=splits.train.num_classes)[0]
                          for i in range(m64)], dtype=torch.float64)
    del model64

    def off64(d: torch.Tensor) -> float:
        return float(((d[:m64] - exact).abs() / exact.clamp_min(1e-12)).max()) if m64 else float("nan")

    ref_off64 = off64(ref_d_t)
    print(f"float64 reference: {m64} images in {time.perf_counter() - t0:.1f} s; the fp32 reference's max rel. diff "
          f"from it {ref_off64:.2e}")

    chosen = ["default"] + [v for v in (VARIANTS if args.variants == "all" else (args.variants or "").split(","))
                            if v and v != "default"]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; valid: {sorted(VARIANTS)}")
    rows = {}
    runs = [(name, 1) for name in chosen]
    runs += [(name, 2) for name in chosen if VARIANTS[name].get("autotune")]  # tuned: the shapes recur
    import fralkit.attacks.split_tf32 as split_tf32

    default_max_k = split_tf32.MAX_K
    for name, call in runs:
        kw = VARIANTS[name]
        opts = {"batch_size": args.batch, "grad_mode": args.grad_mode, **kw}
        split_tf32.MAX_K = opts.pop("split_max_k", default_max_k)
        if call == 1:
            deepfool(model, x[: min(64, len(x))], **opts)  # warm-up (kernels, cuDNN)
        name = name if call == 1 else f"{name}, 2nd call"
        _sync(dev)
        t0 = time.perf_counter()
        res = deepfool(model, x, **opts)
        _sync(dev)
        ours_s = time.perf_counter() - t0
        summ = res.summary()
        ours_d = res.d_theta[:m].double().cpu()
        rel = (ours_d - ref_d_t).abs() / ref_d_t.clamp_min(1e-12)
        same_iters = int((res.iters[:m].cpu() == torch.tensor(ref_it)).sum())
        same_flip = int((res.flipped[:m].cpu() == torch.tensor(ref_fl)).sum())
        rate = len(x) / ours_s
        rows[name] = {"options": kw, "seconds": ours_s, "img_s": rate, "ratio": rate / ref_rate,
                      "max_rel_diff": float(rel.max()), "median_rel_diff": float(rel.median()),
                      "max_rel_diff_float64": off64(ours_d),
                      "agree": bool((rel <= 1e-3).all()), "same_iters": same_iters, "same_flip": same_flip,
                      "mean_iters": summ["mean_iters"], "max_iters": summ["max_iters"], "n_unflipped": summ["n_unflipped"]}
        print(f"fralkit {name:<26}: {len(x)} images in {ours_s:6.2f} s = {rate:8.1f} images/s = {rate / ref_rate:6.1f}x;"
              f" max rel. diff {float(rel.max()):.2e} (median {float(rel.median()):.2e}; from float64 "
              f"{off64(ours_d):.2e}), same iterations "
              f"{same_iters}/{m}, same flip {same_flip}/{m} -> {'PASS' if rows[name]['agree'] else 'FAIL'} (<= 1e-3); "
              f"mean {summ['mean_iters']:.2f} / max {summ['max_iters']} iterations")

    d = rows["default"]
    ratio, agree, at_10k = d["ratio"], d["agree"], 10_000 / d["img_s"]
    print(f"default call (batch {args.batch}, grad_mode {args.grad_mode}): {ratio:.1f}x the reference, agreement "
          f"{'PASS' if agree else 'FAIL'}")
    if dev.type == "cuda":
        print(f"speed-up        : target >= 50x: {'met' if ratio >= 50 else 'NOT met'}")
        if args.size == 32:
            print(f"10,000 images   : {at_10k:.1f} s at this rate (target <= 10 s on one H200: "
                  f"{'met' if at_10k <= 10 else 'NOT met'})")
    else:
        print("the targets are for one H200")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device_name(dev), "model": args.model, "size": args.size, "n": len(x), "ref_n": m,
                       "ref_s": ref_s, "ref_img_s": ref_rate,
                       "ref64_n": m64, "ref_max_rel_diff_float64": ref_off64, "ratio": ratio, "agree": agree,
                       "accuracy": acc,
                       "batch": args.batch, "grad_mode": args.grad_mode, "variants": rows}, fh, indent=2)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
