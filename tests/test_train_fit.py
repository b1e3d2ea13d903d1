"""fralkit.train.fit: errors before work, subsets and oversampling, checkpoints and resume, the recipe."""
import importlib

import pytest
import torch

from fralkit.train import Recipe, fit
from train_helpers import TinyNet, learnable


def test_fit_refuses_unknown_names_with_the_valid_ones(tiny_groups):
    with pytest.raises(ValueError, match=r"unknown objective 'madry'.*'fairat', 'farmur', 'grad', 'pgd_at', 'standard', 'trades'"):
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
    with pytest.raises(ValueError, match=r"compile must be True, False or one of \['default', 'max-autotune-no-cudagraphs'\]"):
        fit(TinyNet(), tiny_groups, compile="reduce-overhead", device="cpu")  # its own CUDA graphs: not capturable
    # a valid mode is a speed setting: on the CPU it is ignored and the run trains as without it
    runs = []
    for mode in (False, "max-autotune-no-cudagraphs"):
        torch.manual_seed(0)
        model = TinyNet()
        fit(model, tiny_groups, epochs=1, batch_size=8, compile=mode, device="cpu", show_progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_fit_on_a_subset_with_oversampling_and_val_history(tiny_groups):
    data = learnable()
    idx = torch.tensor([0, 3, 6, 9, 12, 1, 4, 2])  # class counts 5 / 2 / 1
    res = fit(TinyNet(), data, idx=idx, epochs=2, batch_size=4, oversample=True, val=data, val_robust=True, steps=1,
              device="cpu", show_progress=False)
    assert res.images == 2 * 15  # 3 classes x 5 (the largest class)
    assert len(res.history["val_acc"]) == 2 and len(res.history["val_rob_acc"]) == 2
    assert all(0 <= v <= 1 for v in res.history["val_acc"] + res.history["acc"])


def test_checkpoint_of_a_finished_run_restores_it_without_training(tmp_path):
    data = learnable(n=30)
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
    tr = importlib.import_module("fralkit.train.fit")  # the module (the package's ``fit`` is the function)

    data = learnable(n=30)
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


def test_fit_accepts_an_existing_optimizer_and_keeps_its_state():
    data = learnable(n=30)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit(model, data, epochs=1, batch_size=10, lr=0.05, optimizer=opt, device="cpu", show_progress=False)
    assert all("momentum_buffer" in opt.state[p] for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("before", [False, True])
def test_fit_restores_the_cudnn_autotuner_setting(before):
    """``cudnn_benchmark`` holds for the call only: inference after ``fit`` runs under the caller's setting."""
    data = learnable(n=40)
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before
    try:
        fit(TinyNet(), data, epochs=1, batch_size=16, lr=0.05, device="cuda", show_progress=False,
            cudnn_benchmark=not before)
        assert torch.backends.cudnn.benchmark is before
    finally:
        torch.backends.cudnn.benchmark = old


def test_a_checkpoint_of_another_alpha_or_other_objective_options_is_refused_naming_the_fields(tmp_path):
    """The checkpoint key holds every recipe field that changes the result: a stale one never resumes silently."""
    data = learnable(n=30)
    kw = dict(epochs=1, batch_size=10, steps=1, seed=0, device="cpu", show_progress=False)
    ckpt = tmp_path / "trades.pt"
    fit(TinyNet(), data, objective="trades", alpha=2 / 255, checkpoint=ckpt, **kw)
    with pytest.raises(ValueError, match=r"another run \(differs in \['alpha'\]"):
        fit(TinyNet(), data, objective="trades", alpha=1 / 255, checkpoint=ckpt, **kw)
    with pytest.raises(ValueError, match=r"differs in \['momentum', 'weight_decay'\]"):
        fit(TinyNet(), data, objective="trades", alpha=2 / 255, momentum=0.5, weight_decay=0.0, checkpoint=ckpt, **kw)
    ckpt = tmp_path / "fairat.pt"
    fit(TinyNet(), data, objective="fairat", hard_frac=0.2, checkpoint=ckpt, **kw)
    with pytest.raises(ValueError, match=r"differs in \['options'\].*'hard_frac': 0.5"):
        fit(TinyNet(), data, objective="fairat", hard_frac=0.5, checkpoint=ckpt, **kw)
    # speed settings are not part of the key: the finished run is restored
    res = fit(TinyNet(), data, objective="fairat", hard_frac=0.2, fold_bn=False, amp=False, checkpoint=ckpt, **kw)
    assert res.images == 0 and len(res.history["loss"]) == 1


def test_a_recipe_and_keyword_overrides_train_the_same_model():
    data = learnable(n=30)
    recipe = Recipe(objective="fairat", epochs=2, batch_size=10, steps=1, options={"hard_frac": 0.3})
    states = []
    for args, kw in (((recipe,), {}), ((), recipe.kwargs()), ((Recipe(objective="fairat"),),
                                                                 {"epochs": 2, "batch_size": 10, "steps": 1, "hard_frac": 0.3})):
        torch.manual_seed(0)
        model = TinyNet()
        fit(model, data, *args, seed=2, device="cpu", show_progress=False, **kw)
        states.append(model.state_dict())
    for other in states[1:]:
        for k, v in states[0].items():
            assert torch.equal(v, other[k])


def test_recipe_replace_routes_fields_and_options_and_the_key_skips_speed_settings():
    r = Recipe().replace(objective="grad", lr=0.05, group_weight=0.5)
    assert (r.objective, r.lr, r.options) == ("grad", 0.05, {"group_weight": 0.5})
    assert r.replace(group_weight=2.0).options == {"group_weight": 2.0}
    assert Recipe(**{k: v for k, v in r.kwargs().items() if k != "group_weight"}, options={"group_weight": 0.5}) == r
    key = r.key(r.check())
    assert {"alpha", "momentum", "weight_decay", "augment", "oversample", "schedule", "warmup_epochs", "grad_clip",
            "optimizer", "nesterov", "options"} <= set(key)
    assert not {"amp", "channels_last", "compile", "cuda_graph", "fold_bn", "cudnn_benchmark"} & set(key)
    assert key["options"] == {"group_weight": 0.5}
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['hard_frac'\]"):
        Recipe(options={"hard_frac": 0.1}).check()
