"""The 3xTF32 split: exact operand split, convolution and input gradient equal to fp32's, the twin, DeepFool."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.attacks import deepfool
from fralkit.attacks.split_tf32 import SplitTF32Conv2d, split_convolutions, split_tf32


def test_split_is_exact_and_the_high_part_has_tf32_mantissa():
    t = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 10.0 ** torch.randint(-8, 8, (10_000,))
    hi, lo = split_tf32(t)
    assert torch.equal(hi + lo, t)  # exact: hi and lo share t's exponent range, the sum rounds to nothing
    assert torch.equal(hi.view(torch.int32) & 0x1FFF, torch.zeros_like(t, dtype=torch.int32))  # 13 low bits clear
    assert bool((lo.abs() <= t.abs() * 2.0 ** -10).all())  # the remainder is below one TF32 ulp of t
    assert torch.equal(torch.sign(hi[hi != 0]), torch.sign(t[hi != 0]))
    # a number with 10 mantissa bits is its own high part
    exact = torch.tensor([1.0, -1.5, 0.75 + 2.0 ** -10, 3.0 * 2.0 ** 20])
    assert torch.equal(split_tf32(exact)[0], exact) and torch.equal(split_tf32(exact)[1], torch.zeros(4))
    with pytest.raises(ValueError, match="fp32"):
        split_tf32(t.double())


@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=0, bias=False), dict(padding=2, dilation=2)])
def test_split_convolution_and_input_gradient_equal_fp32(kw):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, **kw)
    x = torch.randn(3, 4, 9, 9, requires_grad=True)
    split = SplitTF32Conv2d(conv)
    y, y_ref = split(x), conv(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    # and against float64 the split is as close as fp32 itself
    y64 = F.conv2d(x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                   conv.stride, conv.padding, conv.dilation)
    assert (y.double() - y64).abs().max() <= 4 * (y_ref.double() - y64).abs().max() + 1e-6


def test_long_sums_are_cut_into_chunks_with_the_same_result(monkeypatch):
    import fralkit.attacks.split_tf32 as st

    torch.manual_seed(6)
    conv = nn.Conv2d(10, 7, 3, padding=1)
    x = torch.randn(2, 10, 6, 6, requires_grad=True)
    whole = SplitTF32Conv2d(conv)
    cut = SplitTF32Conv2d(conv, max_k=27)  # 3 channels of a 3 x 3 kernel per product: chunks of 3, 3, 3, 1
    monkeypatch.setattr(st, "MAX_K", 27)  # the module default, read when a convolution is split
    assert SplitTF32Conv2d(conv).chunk == 3
    assert (whole.chunk, cut.chunk) == (64, 3)
    assert [c.shape[1] for c in cut._chunks(1, torch.contiguous_format)[0]] == [3, 3, 3, 1]
    assert [c.shape[0] for c in cut._chunks(0, torch.contiguous_format)[0]] == [3, 3, 1]
    y, y_ref = cut(x), conv(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    (gx,), (gx_ref,) = torch.autograd.grad(y, x, g), torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)


def test_split_convolutions_replaces_dense_ones_only_in_the_frozen_copy():
    from fralkit.models import frozen_copy, make_model

    torch.manual_seed(2)
    model = make_model("mobilenetv2", 5, image_size=16).eval()
    dense = sum(1 for m in model.modules() if SplitTF32Conv2d.supports(m))
    depthwise = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
    assert dense > 0 and depthwise > 0
    twin = frozen_copy(model)
    assert split_convolutions(twin) == dense
    assert sum(1 for m in twin.modules() if isinstance(m, SplitTF32Conv2d)) == dense
    assert sum(1 for m in twin.modules() if isinstance(m, nn.Conv2d) and m.groups > 1) == depthwise
    assert not any(isinstance(m, SplitTF32Conv2d) for m in model.modules())
    assert not twin.training and not any(p.requires_grad for p in twin.parameters())
    assert all(p.requires_grad for p in model.parameters())
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=1e-4, atol=1e-5)


def test_deepfool_3xtf32_gives_the_fp32_distances_on_the_cpu():
    from fralkit.models import make_model

    torch.manual_seed(3)
    model = make_model("resnet18", 5, image_size=8).train()
    model(torch.rand(16, 3, 8, 8))  # running statistics that are not the identity
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    fp32 = deepfool(model, x)
    split = deepfool(model, x, precision="3xtf32", fold_bn=True)
    assert model.training  # mode restored, model untouched
    torch.testing.assert_close(split.d_theta, fp32.d_theta, rtol=1e-4, atol=1e-6)
    assert torch.equal(split.label, fp32.label)
    with pytest.raises(ValueError, match="3xtf32.*loop"):
        deepfool(model, x, precision="3xtf32", grad_mode="batched")


@pytest.mark.gpu
def test_3xtf32_on_cuda_is_fp32_accurate_where_tf32_is_not():
    """Also at K = 512 x 9 = 4,608, where one unchunked product's tensor-core sums were 50 times fp32's error."""
    torch.manual_seed(5)
    conv = nn.Conv2d(512, 512, 3, padding=1).cuda()
    x = torch.randn(256, 512, 4, 4, device="cuda", requires_grad=True)
    y64 = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    old = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        err_tf32 = float((conv(x).double() - y64).abs().max() / y64.abs().max())
        torch.backends.cudnn.allow_tf32 = False
        err_fp32 = float((conv(x).double() - y64).abs().max() / y64.abs().max())
        y = SplitTF32Conv2d(conv)(x)
        assert not torch.backends.cudnn.allow_tf32  # restored after the split convolutions
    finally:
        torch.backends.cudnn.allow_tf32 = old
    err_split = float((y.double() - y64).abs().max() / y64.abs().max())
    assert err_split < 4e-6 and err_split < 20 * err_fp32 + 1e-6 and err_split < err_tf32 / 20
    for fmt in (torch.contiguous_format, torch.channels_last):
        xs = x.detach().contiguous(memory_format=fmt).requires_grad_(True)
        g = torch.randn_like(y)
        (gx,) = torch.autograd.grad(SplitTF32Conv2d(conv.to(memory_format=fmt))(xs), xs, g)
        gx64 = torch.nn.grad.conv2d_input(x.shape, conv.weight.double(), g.double(), padding=1)
        assert float((gx.double() - gx64).abs().max() / gx64.abs().max()) < 4e-6
