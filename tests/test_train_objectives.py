"""fralkit.train.objectives: TRADES by hand, FairAT's hard examples, FARMUR's objective, every objective learns."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.train import OBJECTIVES, FitResult, fairat_loss, farmur_loss, fit, trades_loss
from train_helpers import TinyGRAD, TinyNet, learnable


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


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_lowers_the_training_loss(objective):
    data = learnable()
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


def test_farmur_loss_returns_the_logits_it_trains_on_vulnerable_part_first():
    torch.manual_seed(0)
    model = TinyNet().eval()  # eval: the two forwards see the same batch-norm statistics
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    vul = torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.bool)
    loss, parts = farmur_loss(model, x, y, vul, eps=2 / 255, alpha=1 / 255, steps=1, beta=6.0)
    assert parts["labels"].tolist() == [1, 0, 1, 0, 2, 2]
    with torch.no_grad():
        torch.testing.assert_close(parts["logits"], torch.cat([model(x[vul]), model(x[~vul])]))
    torch.testing.assert_close(loss, parts["trades"] + parts["natural"])


def test_farmur_objective_logs_its_two_parts_per_epoch():
    data = learnable(n=30)
    torch.manual_seed(0)
    res = fit(TinyNet(), data, objective="farmur", vulnerable=(1,), pairing="cycle", epochs=2, batch_size=6, steps=1,
              eps=2 / 255, alpha=1 / 255, device="cpu", show_progress=False)
    h = res.history
    assert len(h["farmur_loss"]) == len(h["trades"]) == len(h["natural"]) == 2
    assert all(t > 0 for t in h["trades"]) and all(c > 0 for c in h["natural"])
    assert h["farmur_loss"][0] == pytest.approx(h["trades"][0] + h["natural"][0], rel=1e-5)
    with pytest.raises(ValueError, match="oversample"):
        fit(TinyNet(), data, objective="farmur", oversample=True, epochs=1, device="cpu", show_progress=False)
