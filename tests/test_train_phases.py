"""fralkit.train.fit as one phase of a longer schedule: ``Recipe.start_epoch`` and ``Recipe.schedule_epochs``."""
import importlib

import pytest
import torch

from fralkit.train import Recipe, fit, lr_at
from train_helpers import TinyNet, learnable


def _lrs(monkeypatch) -> list[float]:
    """Record every lr that ``fit`` schedules (the lr set before each optimiser step)."""
    seen: list[float] = []
    fit_module = importlib.import_module("fralkit.train.fit")  # the module, not the function of that name
    real = fit_module.lr_at

    def spy(step, total, **kw):
        seen.append(real(step, total, **kw))
        return seen[-1]

    monkeypatch.setattr(fit_module, "lr_at", spy)
    return seen


@pytest.mark.parametrize("schedule", ["cosine", "step", "onecycle"])
def test_two_phases_give_the_lr_sequence_and_the_weights_of_one_run(monkeypatch, schedule):
    data = learnable(n=30)
    kw = dict(objective="trades", batch_size=10, steps=1, lr=0.1, schedule=schedule, warmup_epochs=0.5, seed=2,
              device="cpu", show_progress=False)
    seen = _lrs(monkeypatch)
    torch.manual_seed(0)
    one = TinyNet()
    init = {k: v.clone() for k, v in one.state_dict().items()}
    fit(one, data, epochs=5, **kw)
    whole = list(seen)
    seen.clear()

    two = TinyNet()
    two.load_state_dict(init)
    opt = torch.optim.SGD(two.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    fit(two, data, epochs=3, schedule_epochs=5, optimizer=opt, **kw)
    fit(two, data, epochs=2, start_epoch=3, schedule_epochs=5, optimizer=opt, **kw)
    assert seen == whole and len(whole) == 5 * 3
    for k, v in one.state_dict().items():  # same batches, same optimiser state: the same model
        torch.testing.assert_close(two.state_dict()[k], v, rtol=0, atol=0)


def test_a_phase_with_another_sampler_continues_the_schedule_by_its_fraction(monkeypatch):
    data = learnable(n=30)
    seen = _lrs(monkeypatch)
    model = TinyNet()
    # 3 steps per epoch over 30 examples at batch 10; the second phase has 5 (batch 6): epoch 4 of 5 at 5 steps.
    fit(model, data, epochs=1, batch_size=6, start_epoch=3, schedule_epochs=4, lr=0.1, device="cpu",
        show_progress=False)
    assert seen == [lr_at(3 * 5 + s, 4 * 5, lr=0.1) for s in range(5)]
    assert seen[0] == pytest.approx(lr_at(9, 12, lr=0.1))  # where the 3-step sampler's epoch 3 starts


def test_the_optimizer_state_carries_over_between_phases():
    data = learnable(n=30)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fit(model, data, epochs=1, schedule_epochs=2, batch_size=10, optimizer=opt, device="cpu", show_progress=False)
    after_one = {p: opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    fit(model, data, objective="farmur", vulnerable=(0,), epochs=1, start_epoch=1, schedule_epochs=2, batch_size=10,
        steps=1, optimizer=opt, device="cpu", show_progress=False)
    for p in model.parameters():  # the second phase kept and updated the first one's momentum
        assert opt.state[p]["momentum_buffer"] is not None
        assert not torch.equal(opt.state[p]["momentum_buffer"], after_one[p])


def test_a_plain_call_is_the_whole_schedule_and_phases_enter_the_checkpoint_key(tmp_path):
    r = Recipe(epochs=4)
    assert r.total_epochs() == 4 and r.replace(start_epoch=2).total_epochs() == 6
    key = r.key(r.check())
    assert (key["start_epoch"], key["schedule_epochs"]) == (0, 4)
    assert Recipe(epochs=4, schedule_epochs=4).key({}) == r.key({})  # the same schedule, the same key
    with pytest.raises(ValueError, match="must lie in the schedule's 0..5"):
        Recipe(epochs=3, start_epoch=3, schedule_epochs=5).check()
    data = learnable(n=30)
    kw = dict(epochs=1, batch_size=10, device="cpu", show_progress=False)
    ckpt = tmp_path / "phase.pt"
    fit(TinyNet(), data, **kw, start_epoch=1, schedule_epochs=2, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2  # counted on the whole schedule
    with pytest.raises(ValueError, match=r"another run.*schedule_epochs.*start_epoch"):
        fit(TinyNet(), data, **kw, checkpoint=ckpt)
