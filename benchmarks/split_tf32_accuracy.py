"""The error of each of ResNet-18's convolutions, forward and input gradient, against float64: cuDNN's fp32 kernels,
plain TF32 and the 3xTF32 split of ``fralkit.attacks.split_tf32`` with its sums cut at ``MAX_K`` terms and uncut.

Random inputs and output gradients at the shapes of a 32 px batch; each error is the largest absolute difference
relative to the largest float64 output. On the H200 the uncut split's error grew with the length of its sums
(``K = channels x kernel area``), which is why the split cuts them (README, Measured speed).

    python benchmarks/split_tf32_accuracy.py                 # GPU, batch 2500 and 512
    python benchmarks/split_tf32_accuracy.py --tiny          # CPU check (no TF32 there: every column is fp32)
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F


def _err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).abs().max() / ref.abs().max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="2500,512")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--tiny", action="store_true", help="CPU check at batch 2")
    args = parser.parse_args(argv)

    import fralkit.attacks.split_tf32 as st
    from fralkit.models import make_model
    from fralkit.runtime import resolve_device
    from fralkit.utils import device_name

    dev = torch.device("cpu") if args.tiny else resolve_device("auto")
    sizes = [2] if args.tiny else [int(b) for b in args.batch_sizes.split(",")]
    cudnn = torch.backends.cudnn
    old = cudnn.allow_tf32
    cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = make_model(args.model, 10, in_channels=3, image_size=32).to(dev).eval()
    convs: dict = {}

    def hook(m, i, o):
        convs.setdefault((tuple(i[0].shape[1:]), m.out_channels, m.kernel_size, m.stride), m)

    handles = [m.register_forward_hook(hook) for m in model.modules() if st.SplitTF32Conv2d.supports(m)]
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32, device=dev))
    for h in handles:
        h.remove()
    print(f"device: {device_name(dev)}; {args.model}'s {len(convs)} distinct dense convolutions; MAX_K {st.MAX_K}")
    print("batch  input          out  kernel  K      fwd / input-grad error: fp32 | tf32 | split | split uncut")
    try:
        for b in sizes:
            for (shape, out_ch, ks, stride), conv in convs.items():
                x = torch.randn((b,) + shape, device=dev, requires_grad=True)
                w = conv.weight.detach()
                kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
                ref = F.conv2d(x.detach().double(), w.double(), None, **kw)
                g = torch.randn_like(ref).float()
                gref = torch.nn.grad.conv2d_input(x.shape, w.double(), g.double(), **kw)
                cols = []
                for tf32 in (False, True):
                    cudnn.allow_tf32 = tf32
                    cols.append((_err(F.conv2d(x.detach(), w, None, **kw), ref),
                                 _err(torch.nn.grad.conv2d_input(x.shape, w, g, **kw), gref)))
                cudnn.allow_tf32 = False
                for max_k in (st.MAX_K, 1 << 30):
                    split = st.SplitTF32Conv2d(conv, max_k)
                    y = split(x) if conv.bias is None else split(x) - conv.bias.view(1, -1, 1, 1)
                    (gx,) = torch.autograd.grad(y, x, g)
                    cols.append((_err(y, ref), _err(gx, gref)))
                k = shape[0] * ks[0] * ks[1]
                print(f"{b:<6} {str(shape):<14} {out_ch:<4} {ks[0]}x{ks[1]}/{stride[0]}   {k:<6} "
                      + " | ".join(f"{f:.1e} / {gr:.1e}" for f, gr in cols))
    finally:
        cudnn.allow_tf32 = old
    return 0


if __name__ == "__main__":
    sys.exit(main())
