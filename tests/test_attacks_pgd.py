"""PGD: stays in the eps-ball and [0, 1], handles the model's mode, and lowers the accuracy of a trained model."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fralkit.attacks import pgd
from fralkit.attacks.pgd import JIN_THREAT_MODEL, LinfStep, attack_loss


def _tiny_cnn(num_classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes))


def test_defaults_are_the_jin_threat_model():
    import inspect

    sig = inspect.signature(pgd).parameters
    assert (sig["eps"].default, sig["alpha"].default, sig["steps"].default) == (4 / 255, 2 / 255, 5)
    assert JIN_THREAT_MODEL == {"eps": 4 / 255, "alpha": 2 / 255, "steps": 5}
    assert all(p.kind == p.KEYWORD_ONLY for n, p in sig.items() if n not in ("model", "x", "y"))


@pytest.mark.parametrize("loss", ["ce", "kl"])
@pytest.mark.parametrize("start", [True, "uniform", "normal", False])
def test_pgd_stays_in_eps_ball_and_unit_box(loss, start):
    model = _tiny_cnn()
    gen = torch.Generator().manual_seed(3)
    # pixels at and near the box edges, where projection and clamping interact
    x = torch.rand(16, 3, 8, 8, generator=gen)
    x[:4] = 0.0
    x[4:8] = 1.0
    y = torch.randint(0, 3, (16,), generator=gen)
    eps = 8 / 255
    x_adv = pgd(model, x, y, eps=eps, alpha=5 / 255, steps=4, loss=loss, random_start=start)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv != x).any()


def test_linf_step_parts():
    x0 = torch.tensor([[0.0, 0.5, 1.0, 0.98]])
    t = LinfStep(x0, eps=0.1, alpha=0.3)
    torch.testing.assert_close(t.project(torch.tensor([[0.5, 0.0, 0.5, 1.5]])), torch.tensor([[0.1, 0.4, 0.9, 1.0]]))
    torch.testing.assert_close(t.step(x0, torch.tensor([[-2.0, 3.0, 0.0, -1e-9]])), torch.tensor([[-0.3, 0.8, 1.0, 0.68]]))
    r = t.random_perturb(x0.expand(1000, 4).clone(), "uniform")
    assert (r - x0).abs().max() <= 0.1 + 1e-7 and r.min() >= 0 and r.max() <= 1
    with pytest.raises(ValueError, match="random start"):
        t.random_perturb(x0, "laplace")


def test_model_mode_is_eval_during_attack_and_restored():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            seen.append(self.training)
            return self.lin(x)

    m = Spy().train()
    pgd(m, torch.rand(3, 4), torch.tensor([0, 1, 0]), steps=2)
    assert seen and not any(seen) and m.training
    m.eval()
    pgd(m, torch.rand(3, 4), torch.tensor([0, 1, 0]), steps=2)
    assert not m.training
    assert all(p.grad is None for p in m.parameters())  # only the input gradient is taken


def test_ce_attack_ascends_the_loss_of_a_linear_model():
    """On a linear model one signed step of size eps from no random start is the exact L-inf maximiser
    of the CE margin direction: the loss must not decrease, and here it strictly increases."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    x = torch.rand(32, 6) * 0.5 + 0.25
    y = torch.randint(0, 3, (32,))
    x_adv = pgd(lin, x, y, eps=0.05, alpha=0.05, steps=1, random_start=False)
    with torch.no_grad():
        assert F.cross_entropy(lin(x_adv), y) > F.cross_entropy(lin(x), y)
        grad_sign = torch.autograd.functional.jacobian(lambda z: F.cross_entropy(lin(z), y, reduction="sum"), x).sign()
    torch.testing.assert_close(x_adv, (x + 0.05 * grad_sign).clamp(0, 1))


def test_pgd_lowers_the_accuracy_of_a_trained_model():
    torch.manual_seed(0)
    n = 128
    y = torch.randint(0, 2, (n,))
    # class = which half of the image is brighter, with a small margin (0.03 per pixel): eps 8/255 can cross it
    x = torch.full((n, 3, 4, 4), 0.5) + 0.02 * torch.randn(n, 3, 4, 4)
    sign = (2 * y - 1).float()[:, None, None, None]
    x[:, :, :, :2] += 0.03 * sign
    x[:, :, :, 2:] -= 0.03 * sign
    x = x.clamp(0, 1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
    x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10)
    with torch.no_grad():
        robust = (model(x_adv).argmax(1) == y).float().mean()
    assert clean > 0.9
    assert robust < clean - 0.3


def test_kl_attack_without_labels_and_ce_with_soft_labels():
    model = _tiny_cnn()
    x = torch.rand(4, 3, 8, 8)
    x_kl = pgd(model, x, loss="kl", steps=2)
    assert (x_kl - x).abs().max() <= 4 / 255 + 1e-6
    soft = torch.softmax(torch.randn(4, 3), 1)
    x_soft = pgd(model, x, soft, steps=2)
    assert (x_soft - x).abs().max() <= 4 / 255 + 1e-6
    x_own = pgd(model, x, None, steps=2)  # CE against the model's own prediction
    assert (x_own - x).abs().max() <= 4 / 255 + 1e-6


def test_attack_loss_values():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    expected = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 0])
    torch.testing.assert_close(attack_loss(logits, y, "ce"), expected)
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    q = torch.softmax(logits, 1)
    torch.testing.assert_close(attack_loss(logits, p, "kl"), (p * (p.log() - q.log())).sum())


def test_bad_arguments_raise_with_the_valid_values():
    model = _tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"unknown PGD loss 'cw'.*'ce', 'kl'"):
        pgd(model, x, torch.tensor([0, 1]), loss="cw")
    with pytest.raises(ValueError, match="unknown threat model 'l2'.*linf"):
        pgd(model, x, torch.tensor([0, 1]), norm="l2")
    with pytest.raises(ValueError, match="non-negative"):
        pgd(model, x, torch.tensor([0, 1]), eps=-1.0)
    with pytest.raises(ValueError, match="float inputs"):
        pgd(model, (x * 255).to(torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="3 entries for 2 inputs"):
        pgd(model, x, torch.tensor([0, 1, 2]))
