"""Convolutions near fp32 accuracy on TF32 tensor cores: the "3xTF32" split, for DeepFool's input gradients.

A TF32 tensor core multiplies operands rounded to 10 mantissa bits (fp32 has 23) and accumulates in fp32. Split
every fp32 operand into a TF32-exact high part and the remainder::

    a = a_hi + a_lo,   a_hi = a with its 13 low mantissa bits cleared,   |a_lo| <= 2^-10 |a|

then ``a * b ~= a_hi b_hi + a_hi b_lo + a_lo b_hi``: the first product is exact on the tensor core, the other two
carry relative errors near ``2^-11`` of terms already ``2^-10`` small, and the dropped ``a_lo b_lo`` is below
``2^-20``. Three TF32 convolutions then give a result close to one fp32 convolution (relative error near
``2^-20`` where plain TF32 has ``2^-11``), at a fraction of its cost where tensor cores are several times faster
than the fp32 units (an H200's data sheet: about 495 dense TF32 TFLOP/s against 67 fp32).

**Short sums.** A tensor core accumulates without IEEE rounding: on one H200 the split convolution's error grew in
proportion to the length ``K = channels x kernel area`` of its sums (about ``2.6e-9 K`` relative to the largest
output: 1.9e-6 at K = 576, 1.2e-5 at K = 4,608, where cuDNN's fp32 kernels stayed at 2e-7 to 3e-6). So every
product here sums at most ``MAX_K`` terms: the input channels of the forward pass (the output channels of the
input gradient) are cut into chunks of ``MAX_K // kernel area`` and the chunks' results are added in fp32. Even so
DeepFool's distances on that H200 carried about 20 times fp32's rounding noise (``benchmarks/deepfool_speed.py``).

``split_convolutions(module)`` replaces, in place, the dense convolutions (``groups == 1``, zero padding, numeric
padding) of an attack-only copy (``fralkit.models.frozen_copy``) by ``SplitTF32Conv2d``, which computes that way in
the forward pass and in the input gradient of the backward pass; depthwise and grouped convolutions, linear layers
and everything else stay as they are (fp32 under ``deepfool``'s arithmetic). The split convolutions take no
parameter gradient: the input gradient is what DeepFool needs. On the CPU, where
TF32 does not exist, the three convolutions are fp32 and the result equals the plain convolution up to rounding.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MAX_K", "split_tf32", "SplitTF32Conv2d", "split_convolutions"]

# The longest sum one tensor-core product computes (channels x kernel area): the default of ``max_k``, read when a
# convolution is split.
MAX_K = 576

_LOW_BITS = -(1 << 13)  # int32 mask 0xFFFFE000: keeps sign, exponent and the 10 mantissa bits of TF32


def split_tf32(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hi, lo)`` with ``hi + lo == t`` exactly (fp32): ``hi`` is ``t`` truncated to TF32's 10 mantissa bits."""
    if t.dtype != torch.float32:
        raise ValueError(f"split_tf32: fp32 tensors only, got {t.dtype}")
    hi = (t.view(torch.int32) & _LOW_BITS).view(torch.float32)
    return hi, t - hi


@contextlib.contextmanager
def _tf32_convolutions():
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


class _SplitConv(torch.autograd.Function):
    """``conv2d(x, w)`` (no bias) as TF32 products of split operands, forward and input gradient; ``w_hi`` and
    ``w_lo`` are lists of the weight's input-channel chunks, ``v_hi`` and ``v_lo`` of its output-channel chunks."""

    @staticmethod
    def forward(ctx, x, stride, padding, dilation, w_hi, w_lo, v_hi, v_lo):
        ctx.conv = (x.shape, stride, padding, dilation, v_hi, v_lo)
        y, c0 = None, 0
        with _tf32_convolutions():
            for wh, wl in zip(w_hi, w_lo):
                x_hi, x_lo = split_tf32(x[:, c0:c0 + wh.shape[1]])
                c0 += wh.shape[1]
                part = F.conv2d(x_lo, wh, None, stride, padding, dilation)
                part += F.conv2d(x_hi, wl, None, stride, padding, dilation)
                part += F.conv2d(x_hi, wh, None, stride, padding, dilation)
                y = part if y is None else y.add_(part)
        return y

    @staticmethod
    def backward(ctx, g):
        shape, stride, padding, dilation, v_hi, v_lo = ctx.conv
        gx, o0 = None, 0
        with _tf32_convolutions():
            for vh, vl in zip(v_hi, v_lo):
                g_hi, g_lo = split_tf32(g[:, o0:o0 + vh.shape[0]])
                o0 += vh.shape[0]
                part = torch.nn.grad.conv2d_input(shape, vh, g_lo, stride, padding, dilation)
                part += torch.nn.grad.conv2d_input(shape, vl, g_hi, stride, padding, dilation)
                part += torch.nn.grad.conv2d_input(shape, vh, g_hi, stride, padding, dilation)
                gx = part if gx is None else gx.add_(part)
        return gx, None, None, None, None, None, None, None


def _layout(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


class SplitTF32Conv2d(nn.Module):
    """A fixed ``nn.Conv2d`` (``groups == 1``) computed by the 3xTF32 split; the weight is split once, here, and
    every product sums at most ``max_k`` terms (``None``: ``MAX_K``)."""

    def __init__(self, conv: nn.Conv2d, max_k: int | None = None):
        super().__init__()
        if not SplitTF32Conv2d.supports(conv):
            raise ValueError(f"SplitTF32Conv2d: needs a dense fp32 Conv2d with zero, numeric padding, got {conv}")
        w = conv.weight.detach()
        hi, lo = split_tf32(w.contiguous())
        self.register_buffer("w_hi", hi)
        self.register_buffer("w_lo", lo)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.chunk = max(1, int(MAX_K if max_k is None else max_k) // (w.shape[2] * w.shape[3]))  # channels a product
        self._cache = None  # (input layout, the weight's chunk lists in that layout), built on the first call

    def _chunks(self, dim: int, layout: torch.memory_format) -> tuple[list, list]:
        """The split weight cut into chunks of ``self.chunk`` channels along ``dim`` (1: input, 0: output)."""
        cut = lambda t: [c.contiguous(memory_format=layout) for c in t.split(self.chunk, dim=dim)]
        return cut(self.w_hi), cut(self.w_lo)

    def _apply(self, fn, *args, **kwargs):  # .to(device / memory_format): the chunk lists follow the buffers
        out = super()._apply(fn, *args, **kwargs)
        self._cache = None
        return out

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str) and conv.weight.dtype == torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = _layout(x)
        if self._cache is None or self._cache[0] != layout:
            self._cache = (layout, *self._chunks(1, layout), *self._chunks(0, layout))
        y = _SplitConv.apply(x, self.stride, self.padding, self.dilation, *self._cache[1:])
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def split_convolutions(module: nn.Module, max_k: int | None = None) -> int:
    """Replace, in place, every convolution of ``module`` that ``SplitTF32Conv2d`` supports; returns their number.
    Meant for an attack-only copy (``fralkit.models.frozen_copy``): the replacements hold fixed weights."""
    edits = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
             if SplitTF32Conv2d.supports(child)]
    for parent, name, child in edits:
        setattr(parent, name, SplitTF32Conv2d(child, max_k))
    return len(edits)
