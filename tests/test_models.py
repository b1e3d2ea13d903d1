"""Models: shapes of every backbone at 28/32/64 px, the features/head split, normalisation inside the model,
MC dropout modes, gradient reversal against hand-computed gradients, and the error messages."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.models import (MODELS, Classifier, GRADModel, grad_reverse, has_dropout_only_in_head, make_model,
                            mc_dropout)

torch.set_num_threads(1)

SIZES = (28, 32, 64)


def _images(n=2, c=3, size=32, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def built():
    """One model per (name, size), built once for the module (seeded)."""
    cache = {}

    def get(name, size, in_channels=3):
        key = (name, size, in_channels)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = make_model(name, 5, in_channels=in_channels, image_size=size).eval()
        return cache[key]

    return get


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_backbone_gives_logits_and_features_of_the_right_shape(built, name, size):
    model = built(name, size)
    x = _images(size=size)
    with torch.no_grad():
        z = model.features(x)
        logits = model(x)
    assert isinstance(model, Classifier)
    assert z.shape == (2, model.feature_dim) and model.feature_dim > 0
    assert logits.shape == (2, 5) and model.num_classes == 5
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["lenet5", "alexnet_small"])
def test_grey_28px_models_take_one_channel(built, name):
    model = built(name, 28, in_channels=1)
    with torch.no_grad():
        assert model(_images(c=1, size=28)).shape == (2, 5)
    assert model.mean.shape == (1, 1, 1, 1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_head_of_features_equals_forward_in_eval_mode(built, name):
    model = built(name, 32)
    x = _images(size=32, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.features(x)), model(x), rtol=0, atol=0)


def test_hand_computed_feature_map_sizes():
    # LeNet-5 reaches the classic 16 x 5 x 5 map at 28 px (padding 2) and at 32 px (no padding)
    for size in (28, 32):
        lenet = make_model("lenet5", 3, image_size=size)
        assert lenet.trunk[:-2](_images(size=size)).shape == (2, 16, 5, 5)
    # MobileNetV2 and ResNet-18 keep a total stride of 8: 32 px -> 4 x 4 before the global pool
    mnet = make_model("mobilenetv2", 3, image_size=32)
    assert mnet.trunk[0](_images(size=32)).shape == (2, 1280, 4, 4)
    rnet = make_model("resnet18", 3, image_size=32)
    assert rnet.trunk[:-2](_images(size=32)).shape == (2, 512, 4, 4)
    # Nanda et al.'s UTKFace CNN: s -> (s - 2) // 2 -> // 2; 64 channels flattened
    for size, s in ((28, 6), (32, 7), (64, 15)):
        assert make_model("utkface_cnn", 3, image_size=size).feature_dim == 64 * s * s


def test_normalisation_happens_inside_with_mean_std_buffers():
    torch.manual_seed(0)
    model = make_model("small_cnn", 3, mean=(0.1, 0.2, 0.3), std=0.25).eval()
    assert {"mean", "std"} <= set(dict(model.named_buffers()))
    assert model.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert model.std.shape == (1, 3, 1, 1) and (model.std == 0.25).all()
    default = make_model("small_cnn", 3)
    assert (default.mean == 0.5).all() and (default.std == 0.5).all()
    x = _images(size=16, seed=2)
    with torch.no_grad():
        expected = model.trunk((x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.25)
        torch.testing.assert_close(model.features(x), expected)
        before = model.features(x)
        model.mean.fill_(0.9)
        assert not torch.allclose(model.features(x), before)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model 'vgg99'") as err:
        make_model("vgg99", 3)
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("kw, message", [
    (dict(num_classes=1), "num_classes must be an integer >= 2"),
    (dict(num_classes=2.5), "num_classes must be an integer"),
    (dict(num_classes=3, in_channels=0), "in_channels must be an integer >= 1"),
    (dict(num_classes=3, in_channels=True), "in_channels must be an integer"),
    (dict(num_classes=3, image_size=4), "image_size must be an integer >= 8"),
    (dict(num_classes=3, std=0.0), "std must be positive"),
    (dict(num_classes=3, mean=(0.5, 0.5)), "mean must be a number or 3 per-channel values"),
    (dict(num_classes=3, dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (dict(num_classes=3, depth=12), "depth must be one of"),
])
def test_bad_arguments_say_what_was_expected(kw, message):
    num_classes = kw.pop("num_classes")
    name = "vgg_mc" if "depth" in kw else "small_cnn"
    with pytest.raises(ValueError, match=message):
        make_model(name, num_classes, **kw)


def test_unknown_option_lists_the_model_options():
    with pytest.raises(ValueError, match="takes no option 'dropout'.*its options: mean, std") as err:
        make_model("resnet18", 3, dropout=0.5)
    assert "dropout" not in str(err.value).split("its options:")[1]


def test_wrong_input_shape_is_reported():
    model = make_model("utkface_cnn", 3, image_size=32)
    with pytest.raises(ValueError, match=r"expects images \[N, 3, H, W\]"):
        model(_images(c=1, size=32))
    with pytest.raises(ValueError, match="built for 32 x 32 images, got 28 x 28"):
        model(_images(size=28))
    with pytest.raises(ValueError, match="at least 12 px"):
        make_model("lenet5", 3, image_size=8)


def test_pretrained_trunk_loads_into_a_model_with_another_head():
    torch.manual_seed(0)
    src = make_model("vgg_mc", 8, image_size=32, width=0.25)
    trunk = {k: v for k, v in src.state_dict().items() if not k.startswith("head")}
    dst = make_model("vgg_mc", 2, image_size=32, width=0.25)
    result = dst.load_state_dict(trunk, strict=False)
    assert not result.unexpected_keys and all(k.startswith("head") for k in result.missing_keys)
    x = _images(size=32)
    with torch.no_grad():
        torch.testing.assert_close(dst.eval().features(x), src.eval().features(x))


# ------------------------------------------------------------------------------------------ MC dropout
def test_mc_dropout_samples_differ_but_eval_passes_are_identical():
    torch.manual_seed(0)
    model = make_model("vgg_mc", 3, image_size=28, width=0.25, dropout=0.5)
    x = _images(size=28, seed=3)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        with mc_dropout(model):
            a, b = model(x), model(x)
            za, zb = model.features(x), model.features(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(za, zb, rtol=0, atol=0)  # the trunk has no dropout


def test_mc_dropout_keeps_batchnorm_in_eval_and_restores_modes():
    torch.manual_seed(0)
    model = make_model("vgg_mc", 3, image_size=28, width=0.25)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [(bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)) for bn in bns]
    with torch.no_grad(), mc_dropout(model) as same:
        assert same is model
        model(_images(size=28, seed=4))
        assert not model.training and all(not bn.training for bn in bns)
        assert all(m.training for m in model.modules() if isinstance(m, nn.Dropout))
    for bn, (mean, var, n) in zip(bns, stats):
        torch.testing.assert_close(bn.running_mean, mean, rtol=0, atol=0)
        torch.testing.assert_close(bn.running_var, var, rtol=0, atol=0)
        assert int(bn.num_batches_tracked) == n
    assert all(m.training for m in model.modules())
    model.eval()
    with pytest.raises(RuntimeError, match="boom"), mc_dropout(model):
        raise RuntimeError("boom")
    assert not any(m.training for m in model.modules())


def test_dropout_only_in_head():
    assert has_dropout_only_in_head(make_model("vgg_mc", 3, width=0.25))
    assert has_dropout_only_in_head(make_model("small_cnn", 3, dropout=0.5))
    assert has_dropout_only_in_head(make_model("alexnet_small", 3))
    assert not has_dropout_only_in_head(make_model("utkface_cnn", 3))
    assert has_dropout_only_in_head(GRADModel(make_model("small_cnn", 3, dropout=0.5), 2, hidden=8))
    # a dropout-free small_cnn has no Dropout module at all (MC dropout would give equal samples)
    assert not any(isinstance(m, nn.Dropout) for m in make_model("small_cnn", 3).modules())


# ----------------------------------------------------------------------------------- gradient reversal
@pytest.mark.parametrize("lambd", [0.5, 1.0])
def test_grad_reverse_is_identity_forward_and_scales_the_gradient_by_minus_lambda(lambd):
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.5]], requires_grad=True)
    upstream = torch.tensor([[2.0, -1.0, 0.25], [4.0, 3.0, -2.0]])
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(grad, -lambd * upstream, rtol=0, atol=0)
    # through a loss: d/dx sum(x^2) = 2x, reversed
    (grad,) = torch.autograd.grad((grad_reverse(x, lambd) ** 2).sum(), x)
    torch.testing.assert_close(grad, -lambd * 2 * x.detach())


def _grad_model(lambd):
    torch.manual_seed(0)
    base = make_model("small_cnn", 3, image_size=16, width=4)
    torch.manual_seed(1)
    return GRADModel(base, 2, lambd=lambd, hidden=8).eval()


def test_grad_model_shapes_and_shared_parameters():
    model = _grad_model(1.0)
    x = _images(size=16, seed=5)
    with torch.no_grad():
        logits = model(x)
        cls, grp = model.forward_with_group(x)
        torch.testing.assert_close(logits, model.base(x), rtol=0, atol=0)
    assert logits.shape == (2, 3) and cls.shape == (2, 3) and grp.shape == (2, 2)
    torch.testing.assert_close(cls, logits, rtol=0, atol=0)
    assert model.head is model.base.head and model.feature_dim == model.base.feature_dim == 8
    assert isinstance(model, Classifier) and model.mean is model.base.mean
    keys = set(model.state_dict())
    assert any(k.startswith("base.head") for k in keys) and not any(k.startswith("head") for k in keys)
    model.lambd = 0.25
    assert model.lambd == 0.25
    with pytest.raises(ValueError, match="lambd must be a finite number >= 0"):
        model.lambd = -1.0
    with pytest.raises(ValueError, match="base must be a fralkit.models.Classifier"):
        GRADModel(nn.Linear(3, 3), 2)


def test_group_loss_gradient_reaching_the_trunk_is_reversed():
    x = _images(size=16, seed=6)
    g = torch.tensor([0, 1])

    def grads(model, reverse: bool):
        model.zero_grad()
        z = model.features(x)
        group_logits = model.group_logits(z) if reverse else model.group_head(z)  # plain head: no reversal
        F.cross_entropy(group_logits, g).backward()
        trunk = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.base.trunk.parameters()]
        head = [p.grad.clone() for p in model.group_head.parameters()]
        return trunk, head

    plain_trunk, plain_head = grads(_grad_model(1.0), reverse=False)
    assert any(t.abs().sum() > 0 for t in plain_trunk)
    for lambd in (1.0, 0.5, 0.0):
        trunk, head = grads(_grad_model(lambd), reverse=True)
        for t, p in zip(trunk, plain_trunk):
            torch.testing.assert_close(t, -lambd * p, rtol=1e-5, atol=1e-7)
        for h, p in zip(head, plain_head):  # the group head itself learns the group: unreversed gradient
            torch.testing.assert_close(h, p)


# ---------------------------------------------------------------------------- formats and precisions
def test_channels_last_and_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    model = make_model("small_cnn", 3, image_size=32).eval().to(memory_format=torch.channels_last)
    x = _images(size=32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x.contiguous())
        assert model.normalize(x).is_contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.shape == (2, 3)
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1)


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_backbone_trains_with_channels_last_and_bf16_on_cuda(name):
    torch.manual_seed(0)
    model = make_model(name, 4, image_size=32).cuda().to(memory_format=torch.channels_last)
    x = _images(n=8, size=32).cuda().contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x).float(), torch.arange(8, device="cuda") % 4)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
