"""Synbols generator throughput on one CPU core, against drawing each glyph with a matplotlib figure.

Target: at least 2,000 images/s at 32 px on one core. The reference renders every image the obvious way
(one matplotlib text draw per image, rasterised by Agg), measured in the same run on a smaller count.

    python benchmarks/synbols_speed.py [--n 20000] [--ref-n 300]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def reference_render(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """One figure draw per image: random char, colour, rotation; rasterised by matplotlib's Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig = plt.figure(figsize=(1, 1), dpi=size)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        fig.clear()
        fig.patch.set_facecolor(rng.uniform(0, 1, 3))
        fig.text(0.5, 0.5, "abcd"[rng.integers(4)], color=rng.uniform(0, 1, 3), fontsize=rng.uniform(16, 24),
                 rotation=rng.uniform(-20, 20), ha="center", va="center")
        fig.canvas.draw()
        out[i] = np.asarray(fig.canvas.buffer_rgba())[:size, :size, :3]
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--ref-n", type=int, default=300)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from fralkit.data import preset_configs, render_synbols

    cfg = preset_configs("synbols-utk", n=args.n, size=args.size)[0]
    render_synbols(preset_configs("synbols-utk", n=16, size=args.size)[0])  # font atlas built once, not timed
    t0 = time.perf_counter()
    render_synbols(cfg)
    ours = args.n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    reference_render(args.ref_n, args.size)
    ref = args.ref_n / (time.perf_counter() - t0)
    print(f"fralkit synbols : {ours:9.0f} images/s ({args.n} images, {args.size} px, 1 thread)")
    print(f"matplotlib ref  : {ref:9.0f} images/s ({args.ref_n} images)")
    print(f"ratio           : {ours / ref:9.1f}x   target >= 2000 images/s: {'met' if ours >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
