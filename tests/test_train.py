"""fit and its objectives: TRADES by hand, FairAT's hard examples, every objective learns, errors, resume."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.data import GroupDataset
from fralkit.train import (OBJECTIVES, FitResult, augment_hard, class_balanced_indices, cutmix, cutout, fairat_loss,
                           fit, lr_at, random_crop, select_hard, trades_loss)


class TinyNet(nn.Module):
    """features / head like fralkit.models, BatchNorm so eval/train modes differ."""

    def __init__(self, num_classes=3, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class TinyGRAD(nn.Module):
    def __init__(self, base, num_groups=2):
        super().__init__()
        self.base = base
        self.group_head = nn.Linear(8, num_groups)

    def forward(self, x):
        return self.base(x)

    def forward_with_group(self, x):
        z = self.base.features(x)
        return self.base.head(z), self.group_head(_Reverse.apply(z))


def _learnable(n=60, num_classes=3, size=8, seed=0):
    """Class c = a brighter colour channel c (learnable in a few epochs); group = a darker half."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    g = (torch.arange(n) // num_classes) % 2
    x = 60 + 40 * torch.rand(n, 3, size, size, generator=gen)
    x[torch.arange(n), y] += 80
    x = x / (1 + g[:, None, None, None].float())
    return GroupDataset(x.round().to(torch.uint8), y, g, [f"c{i}" for i in range(num_classes)], ["g0", "g1"], name="learnable")


def test_trades_loss_equals_hand_computation_on_two_layer_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.rand(4, 3, 2, 2)
    delta = (torch.rand(4, 3, 2, 2) * 2 - 1) * (4 / 255)
    x_adv = (x + delta).clamp(0, 1)
    y = torch.tensor([0, 2, 1, 2])
    loss, logits = trades_loss(model, x, y, beta=6.0, x_adv=x_adv)

    w1, b1, w2, b2 = model[1].weight, model[1].bias, model[3].weight, model[3].bias
    f = lambda z: torch.relu(z.flatten(1) @ w1.T + b1) @ w2.T + b2  # noqa: E731
    p, q = torch.softmax(f(x), 1), torch.softmax(f(x_adv), 1)
    ce = -torch.log(p[torch.arange(4), y]).mean()
    kl = (p * (torch.log(p) - torch.log(q))).sum() / 4
    torch.testing.assert_close(loss, ce + 6.0 * kl)
    torch.testing.assert_close(logits, f(x))
    # the natural branch is not detached: the KL term sends gradient through f(x) as well
    gx = torch.autograd.grad(loss, model[1].weight)[0]
    assert gx.abs().sum() > 0


def test_trades_loss_attacks_in_eval_mode_and_is_seeded():
    import copy

    model = TinyNet().train()
    twin = copy.deepcopy(model)  # the train-mode forward updates batch-norm statistics: compare fresh copies
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 3, (6,))
    torch.manual_seed(1)
    a, _ = trades_loss(model, x, y, steps=2)
    torch.manual_seed(1)
    b, _ = trades_loss(twin, x, y, steps=2)
    torch.testing.assert_close(a, b)
    assert model.training
    # beta = 0 leaves the natural cross-entropy
    l0, logits = trades_loss(model, x, y, beta=0.0, steps=1)
    torch.testing.assert_close(l0, F.cross_entropy(logits, y))


def test_select_hard_takes_exactly_the_highest_cross_entropy():
    ce = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.2, 1.0, 0.0, 0.7, 0.3, 0.4])
    assert select_hard(ce, 0.2).tolist() == [3, 1]
    assert select_hard(ce, 0.25).tolist() == [3, 1, 5]  # ceil(2.5)
    assert select_hard(ce, 0.0).numel() == 0
    assert sorted(select_hard(ce, 1.0).tolist()) == list(range(10))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        select_hard(ce, 1.5)


@pytest.mark.parametrize("hard_by", ["clean", "adv"])
def test_fairat_adds_copies_of_exactly_the_hardest_examples(hard_by):
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = torch.rand(10, 3, 8, 8), torch.randint(0, 3, (10,))
    attacked = []

    def attack(m, xx, t):  # a recorded, deterministic attack
        attacked.append(xx.clone())
        return (xx + 0.01).clamp(0, 1)

    loss, logits, labels, hard = fairat_loss(model, x, y, hard_frac=0.3, hard_by=hard_by, hard_aug="none", crop_pad=0,
                                             base="pgd_at", attack=attack)
    model.eval()
    with torch.no_grad():
        probe = x if hard_by == "clean" else (x + 0.01).clamp(0, 1)
        ce = F.cross_entropy(model(probe), y, reduction="none")
    assert hard.tolist() == ce.topk(3).indices.tolist()
    assert logits.shape == (13, 3)
    assert labels.tolist() == y.tolist() + y[hard].tolist()
    # with no augmentation the copies are the hard examples themselves
    copies = attacked[-1][-3:]
    torch.testing.assert_close(copies, x[hard])
    assert torch.isfinite(loss)


def test_fairat_augmentations_keep_shape_labels_and_never_flip_by_default():
    x = torch.zeros(5, 3, 8, 8)
    x[..., :4] = 1.0  # left half white: a flip would move it right
    t = F.one_hot(torch.arange(5) % 3, 3).float()
    xa, ta = augment_hard(x, t, kind="none", crop_pad=0)
    torch.testing.assert_close(xa, x)
    xc, tc = augment_hard(x, t, kind="cutout", strength=0.5, crop_pad=0)
    torch.testing.assert_close(tc, t)
    changed = (xc != x).any(1)
    assert changed.flatten(1).sum(1).max() <= 16  # at most a 4 x 4 square (0.5 x 8 px)
    assert set(torch.unique(xc[x != xc]).tolist()) <= {0.5}
    xm, tm = cutmix(x, t, 1 - x, t.roll(1, 0), strength=0.5)
    assert torch.allclose(tm.sum(1), torch.ones(5))
    area = (xm != x).any(1).flatten(1).float().mean(1)
    torch.testing.assert_close(tm, (1 - area[:, None]) * t + area[:, None] * t.roll(1, 0))
    with pytest.raises(ValueError, match="valid"):
        augment_hard(x, t, kind="mixup")


def test_random_crop_is_a_shift_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    out = random_crop(x, 2)
    assert out.shape == x.shape
    pad = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(6):
        assert any(torch.equal(out[i], pad[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    torch.testing.assert_close(random_crop(x, 0), x)
    assert (cutout(x, 0.0) == x).all()


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_lowers_the_training_loss(objective):
    data = _learnable()
    torch.manual_seed(0)
    model = TinyNet()
    if objective == "grad":
        model = TinyGRAD(model)
    kw = dict(eps=2 / 255, alpha=1 / 255, steps=2) if objective in ("pgd_at", "trades", "fairat") else {}
    res = fit(model, data, objective=objective, epochs=8, batch_size=20, lr=0.1, schedule="constant", seed=0,
              device="cpu", show_progress=False, **kw)
    assert isinstance(res, FitResult) and res.objective == objective
    loss = res.history["loss"]
    assert len(loss) == 8 and all(math.isfinite(v) for v in loss)
    assert loss[-1] < loss[0]
    assert res.seconds > 0 and res.images >= 8 * 60


def test_fit_refuses_unknown_names_with_the_valid_ones(tiny_groups):
    with pytest.raises(ValueError, match=r"unknown objective 'madry'.*'fairat', 'grad', 'pgd_at', 'standard', 'trades'"):
        fit(TinyNet(), tiny_groups, objective="madry", device="cpu")
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['hard_frac'\]"):
        fit(TinyNet(), tiny_groups, objective="trades", hard_frac=0.1, device="cpu")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        fit(TinyNet(), tiny_groups, optimizer="lbfgs", device="cpu")
    with pytest.raises(ValueError, match="unknown schedule"):
        fit(TinyNet(), tiny_groups, schedule="poly", device="cpu")
    with pytest.raises(ValueError, match="unknown augment 'flip'"):
        fit(TinyNet(), tiny_groups, augment="flip", device="cpu")
    with pytest.raises(ValueError, match="forward_with_group"):
        fit(TinyNet(), tiny_groups, objective="grad", epochs=1, device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(TinyNet(), tiny_groups, idx=torch.tensor([], dtype=torch.long), device="cpu")


def test_fit_on_a_subset_with_oversampling_and_val_history(tiny_groups):
    data = _learnable()
    idx = torch.tensor([0, 3, 6, 9, 12, 1, 4, 2])  # class counts 5 / 2 / 1
    res = fit(TinyNet(), data, idx=idx, epochs=2, batch_size=4, oversample=True, val=data, val_robust=True, steps=1,
              device="cpu", show_progress=False)
    assert res.images == 2 * 15  # 3 classes x 5 (the largest class)
    assert len(res.history["val_acc"]) == 2 and len(res.history["val_rob_acc"]) == 2
    assert all(0 <= v <= 1 for v in res.history["val_acc"] + res.history["acc"])


def test_class_balanced_indices_tops_every_class_up_to_the_largest():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0, 1, 2])
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    out = class_balanced_indices(y, idx, torch.Generator().manual_seed(0))
    assert torch.bincount(y[out]).tolist() == [4, 4, 4]
    assert set(idx.tolist()) <= set(out.tolist()) and set(out.tolist()) <= set(idx.tolist())


def test_checkpoint_of_a_finished_run_restores_it_without_training(tmp_path):
    data = _learnable(n=30)
    kw = dict(objective="trades", epochs=2, batch_size=10, steps=1, seed=3, device="cpu", show_progress=False)
    torch.manual_seed(0)
    straight = TinyNet()
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    fit(straight, data, **kw)

    ckpt = tmp_path / "run.pt"
    with_ckpt = TinyNet()
    with_ckpt.load_state_dict(init)
    fit(with_ckpt, data, **kw, checkpoint=ckpt)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 2
    for k, v in straight.state_dict().items():  # same seed, same run, with or without a checkpoint
        torch.testing.assert_close(saved["model"][k], v)
    restored = TinyNet()
    res = fit(restored, data, **kw, checkpoint=ckpt)
    assert res.images == 0 and len(res.history["loss"]) == 2
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[k], v)
    with pytest.raises(ValueError, match="another run"):
        fit(TinyNet(), data, **{**kw, "seed": 4}, checkpoint=ckpt)


def test_resume_after_a_cut_continues_exactly(tmp_path, monkeypatch):
    import fralkit.train as tr

    data = _learnable(n=30)
    kw = dict(objective="standard", epochs=3, batch_size=10, seed=5, device="cpu", show_progress=False)
    torch.manual_seed(0)
    ref = TinyNet()
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    fit(ref, data, **kw)

    calls = {"n": 0}
    real_save = tr.atomic_torch_save

    def cut_after_first(obj, path):
        real_save(obj, path)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(tr, "atomic_torch_save", cut_after_first)
    model = TinyNet()
    model.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        fit(model, data, **kw, checkpoint=tmp_path / "c.pt")
    monkeypatch.setattr(tr, "atomic_torch_save", real_save)
    model2 = TinyNet()
    res = fit(model2, data, **kw, checkpoint=tmp_path / "c.pt")
    assert len(res.history["loss"]) == 3
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model2.state_dict()[k], v)


def test_lr_schedules():
    assert lr_at(0, 100, lr=0.1, schedule="constant") == 0.1
    assert lr_at(0, 100, lr=0.1, schedule="cosine") == pytest.approx(0.1)
    assert lr_at(50, 100, lr=0.1, schedule="cosine") == pytest.approx(0.05)
    assert lr_at(80, 100, lr=0.1, schedule="step") == pytest.approx(0.01)
    assert lr_at(95, 100, lr=0.1, schedule="step") == pytest.approx(0.001)
    assert lr_at(24, 100, lr=0.1, schedule="onecycle") == pytest.approx(0.1)
    assert lr_at(4, 100, lr=0.1, schedule="cosine", warmup=10) == pytest.approx(0.05)


def test_fit_accepts_an_existing_optimizer_and_keeps_its_state():
    data = _learnable(n=30)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit(model, data, epochs=1, batch_size=10, lr=0.05, optimizer=opt, device="cpu", show_progress=False)
    assert all("momentum_buffer" in opt.state[p] for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("before", [False, True])
def test_fit_restores_the_cudnn_autotuner_setting(before):
    """``cudnn_benchmark`` holds for the call only: inference after ``fit`` runs under the caller's setting."""
    data = _learnable(n=40)
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before
    try:
        fit(TinyNet(), data, epochs=1, batch_size=16, lr=0.05, device="cuda", show_progress=False,
            cudnn_benchmark=not before)
        assert torch.backends.cudnn.benchmark is before
    finally:
        torch.backends.cudnn.benchmark = old


@pytest.mark.gpu
def test_cuda_graphed_attack_matches_eager_and_sees_weight_updates():
    from fralkit.attacks import pgd
    from fralkit.train import _GraphedAttack

    torch.manual_seed(0)
    model = TinyNet().cuda().train()
    x, y = torch.rand(16, 3, 8, 8, device="cuda"), torch.randint(0, 3, (16,), device="cuda")
    graphed = _GraphedAttack("ce", "none", 8 / 255, 2 / 255, 3, amp=False)
    kw = dict(eps=8 / 255, alpha=2 / 255, steps=3, loss="ce", random_start="none")
    torch.testing.assert_close(graphed(model, x, y), pgd(model, x, y, **kw))
    assert model.training
    with torch.no_grad():  # an in-place update, as the optimiser does
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x2 = torch.rand(16, 3, 8, 8, device="cuda")
    torch.testing.assert_close(graphed(model, x2, y), pgd(model, x2, y, **kw))


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_trades_on_cuda_with_bf16_learns(cuda_graph):
    data = _learnable(n=120)
    torch.manual_seed(0)
    res = fit(TinyNet(), data, objective="trades", epochs=6, batch_size=40, steps=2, device="cuda", cuda_graph=cuda_graph,
              show_progress=False)
    assert res.history["loss"][-1] < res.history["loss"][0]


@pytest.mark.parametrize("backbone", ["tiny", "small_cnn", "mobilenetv2"])
def test_folded_twin_computes_the_eval_model_and_follows_updates(backbone):
    from fralkit.models import make_model
    from fralkit.train import FoldedTwin

    torch.manual_seed(0)
    model = (TinyNet() if backbone == "tiny" else make_model(backbone, 3, image_size=8)).train()  # tiny: conv biases
    model(torch.rand(8, 3, 8, 8))  # non-trivial running statistics
    twin = FoldedTwin(model)
    assert twin.folded >= {"tiny": 1, "small_cnn": 3, "mobilenetv2": 40}[backbone]
    if backbone != "mobilenetv2":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.module.modules())
    assert all(not p.requires_grad for p in twin.module.parameters())

    def check():
        x = torch.rand(4, 3, 8, 8, requires_grad=True)
        model.eval()
        ref = model(x)
        g_ref, = torch.autograd.grad(ref.logsumexp(1).sum(), x)
        model.train()
        out = twin(x)
        g_out, = torch.autograd.grad(out.logsumexp(1).sum(), x)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g_out, g_ref, rtol=1e-3, atol=1e-6)

    check()
    with torch.no_grad():  # an optimiser step and a train-mode forward change weights and statistics in place
        for p in model.parameters():
            p.mul_(1.05).add_(0.01)
    model(torch.rand(8, 3, 8, 8))
    twin.refresh()
    check()
    assert model.training and all(p.grad is None for p in model.parameters())


def test_fit_with_and_without_the_folded_twin_agree():
    data = _learnable(n=40)
    runs = []
    for fold in (False, True):
        torch.manual_seed(0)
        model = TinyNet()
        res = fit(model, data, objective="trades", epochs=2, batch_size=20, steps=2, seed=1, fold_bn=fold, device="cpu",
                  show_progress=False)
        runs.append((res.history["loss"], model.state_dict()))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-3)


def test_trades_gradient_finite_when_a_probability_underflows():
    """Logit gaps of 300 make softmax probabilities exactly 0 in fp32; the TRADES gradient must stay finite.

    Written with kl_div(log q, p) the gradient through the natural branch is NaN there (d(p log p)/dp = -inf at
    p = 0); that NaN killed bf16 TRADES runs of LeNet-5 (notebook 04)."""
    import torch.nn.functional as F

    lin = torch.nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[300.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
        lin.bias.zero_()
    x = torch.tensor([[1.0, 0.0]])
    x_adv = torch.tensor([[0.99, 0.01]])
    y = torch.tensor([0])
    assert (F.softmax(lin(x), 1)[0, 1:] == 0).all()  # the underflow really happens
    loss, _ = trades_loss(lin, x, y, beta=6.0, x_adv=x_adv)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in lin.parameters())
    # Hand value: KL(p || q) with p = (1, 0, 0) is -log q_0, q = softmax(297, 0, 0.01).
    q0 = F.softmax(torch.tensor([297.0, 0.0, 0.01]), 0)[0]
    assert loss.item() == pytest.approx(0.0 + 6.0 * (-torch.log(q0)).item(), abs=1e-6)
