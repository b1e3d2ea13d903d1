"""fralkit.train.fast: the whole step as one CUDA graph, the batch-norm-folded twin, the CUDA-graph PGD, bf16
TRADES on CUDA."""
import pytest
import torch
import torch.nn as nn

from fralkit.train import OBJECTIVES, Recipe, fit
from fralkit.train.fast import CapturedStep, graph_safe_optimizer
from train_helpers import TinyNet, learnable


def five_steps(objective: str, **options):
    """Five one-batch epochs of ``fit`` on CUDA from the same seed: the result, the final weights in fp32 and the
    frames dynamo compiled during the run."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = TinyNet()
    frames = counters["frames"]["ok"]
    res = fit(model, learnable(n=32), objective=objective, epochs=5, batch_size=32, steps=2, lr=0.05, seed=3,
              device="cuda", show_progress=False, **options)
    return res, {k: v.float() for k, v in model.state_dict().items()}, counters["frames"]["ok"] - frames


def assert_same_run(run, reference):
    """Losses, learning rates and weights of ``run`` equal ``reference``'s within bf16 tolerance."""
    (res, w, _), (ref, w_ref, _) = run, reference
    assert res.history["loss"] == pytest.approx(ref.history["loss"], rel=2e-2, abs=1e-3)
    assert res.history["lr"] == pytest.approx(ref.history["lr"], rel=1e-6)
    for k in w_ref:
        torch.testing.assert_close(w[k], w_ref[k], rtol=2e-2, atol=2e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("objective", ["standard", "trades"])
def test_graphed_step_gives_the_eager_loss_and_update(objective):
    """One batch per epoch: steps 1-2 are the eager warm-up, step 3 is captured, 4-5 are replays; the cosine
    schedule changes the lr every step, so matching the eager run also shows that the lr reaches the graph."""
    eager, graphed = five_steps(objective, cuda_graph=False), five_steps(objective, cuda_graph=True)
    assert graphed[0].graphed and not eager[0].graphed
    assert_same_run(graphed, eager)


@pytest.mark.gpu
def test_compiled_graphed_trades_step_gives_the_eager_loss_and_update_and_is_reused_by_a_new_model():
    """``compile=True`` inside the captured step (the FRAL loop's CUDA default): the same five TRADES steps as the
    eager path within bf16 tolerance; a second model of the same architecture runs the code compiled for the first
    (the loop trains many such models in one process), so dynamo compiles no new frame for it."""
    eager = five_steps("trades", cuda_graph=False, compile=False)
    first, second = (five_steps("trades", cuda_graph=True, compile=True) for _ in range(2))
    assert first[0].graphed and not eager[0].graphed
    assert first[2] > 0 and second[2] == 0
    assert_same_run(first, eager)
    assert_same_run(second, eager)


@pytest.mark.gpu
def test_graphed_optimiser_follows_the_lr_tensor():
    """A linear loss has a constant gradient: two replays at lr 0.1 and 0.025 move the weights 4:1."""
    torch.manual_seed(0)
    model = nn.Linear(5, 3).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0)  # not fused: the graph runs it fused
    restore, reason = graph_safe_optimizer(opt)
    assert restore is not None, reason
    x = torch.rand(8, 5, device="cuda")

    def one_step():
        opt.zero_grad(set_to_none=True)
        model(x).sum().backward()
        opt.step()

    step = CapturedStep(one_step, warmup=1)
    lr = opt.param_groups[0]["lr"]
    step()  # eager warm-up
    deltas = []
    for value in (0.1, 0.025):
        before = model.weight.detach().clone()
        lr.fill_(value)
        step()
        deltas.append(model.weight.detach() - before)
    assert step.graph is not None
    torch.testing.assert_close(deltas[0], 4 * deltas[1], rtol=1e-5, atol=1e-7)
    restore()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025) and not opt.param_groups[0]["fused"]


@pytest.mark.gpu
def test_graphed_fit_fills_the_last_batch_and_keeps_an_optimizer_across_calls():
    data = learnable(n=40)
    torch.manual_seed(0)
    model = TinyNet().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(2):  # the FRAL loop's fine-tuning: one optimiser over several calls
        res = fit(model, data, objective="trades", epochs=3, batch_size=32, steps=2, optimizer=opt, device="cuda",
                  show_progress=False)
        assert res.graphed and res.images == 3 * 2 * 32  # 2 steps per epoch, the last one filled from 8 to 32
        assert isinstance(opt.param_groups[0]["lr"], float) and not opt.param_groups[0]["fused"]
        assert all(p.grad is None for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_graphable_objectives_and_eager_fallbacks_on_cpu():
    assert {k for k, o in OBJECTIVES.items() if o.graphable} == {"standard", "pgd_at", "trades", "grad"}
    res = fit(TinyNet(), learnable(n=20), Recipe(objective="trades", epochs=1, batch_size=10, steps=1), device="cpu",
              show_progress=False)
    assert not res.graphed and res.images == 20  # CPU: eager, the batches as they are


@pytest.mark.gpu
def test_cuda_graphed_attack_matches_eager_and_sees_weight_updates():
    from fralkit.attacks import pgd
    from fralkit.train.fast import _GraphedAttack

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
    data = learnable(n=120)
    torch.manual_seed(0)
    res = fit(TinyNet(), data, objective="trades", epochs=6, batch_size=40, steps=2, device="cuda", cuda_graph=cuda_graph,
              show_progress=False)
    assert res.history["loss"][-1] < res.history["loss"][0]


@pytest.mark.parametrize("backbone", ["tiny", "small_cnn", "mobilenetv2", "resnet18"])
def test_folded_twin_computes_the_eval_model_and_follows_updates(backbone):
    from fralkit.models import make_model
    from fralkit.train import FoldedTwin

    # float64: the fold is checked as math. In float32 a ReLU whose input rounds across 0 can switch one unit's
    # gradient path (ResNet-18 at 8 px: 1 element of 768 off by 1.1e-3 relative on one CPU).
    torch.manual_seed(0)
    model = (TinyNet() if backbone == "tiny" else make_model(backbone, 3, image_size=8)).train().double()  # tiny: conv biases
    model(torch.rand(8, 3, 8, 8, dtype=torch.float64))  # non-trivial running statistics
    twin = FoldedTwin(model)
    # ResNet-18: the stem, 2 per BasicBlock (8 blocks) and 3 shortcuts = 20, every batch norm of the model
    assert twin.folded >= {"tiny": 1, "small_cnn": 3, "mobilenetv2": 40, "resnet18": 20}[backbone]
    if backbone != "mobilenetv2":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.module.modules())
    assert all(not p.requires_grad for p in twin.module.parameters())

    def check():
        x = torch.rand(4, 3, 8, 8, dtype=torch.float64, requires_grad=True)
        model.eval()
        ref = model(x)
        g_ref, = torch.autograd.grad(ref.logsumexp(1).sum(), x)
        model.train()
        out = twin(x)
        g_out, = torch.autograd.grad(out.logsumexp(1).sum(), x)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(g_out, g_ref, rtol=1e-8, atol=1e-12)

    check()
    with torch.no_grad():  # an optimiser step and a train-mode forward change weights and statistics in place
        for p in model.parameters():
            p.mul_(1.05).add_(0.01)
    model(torch.rand(8, 3, 8, 8, dtype=torch.float64))
    twin.refresh()
    check()
    assert model.training and all(p.grad is None for p in model.parameters())


def test_fit_with_and_without_the_folded_twin_agree():
    data = learnable(n=40)
    runs = []
    for fold in (False, True):
        torch.manual_seed(0)
        model = TinyNet()
        res = fit(model, data, objective="trades", epochs=2, batch_size=20, steps=2, seed=1, fold_bn=fold, device="cpu",
                  show_progress=False)
        runs.append((res.history["loss"], model.state_dict()))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-3)


def test_folded_twin_of_a_compiled_model_folds_the_module_it_wraps():
    from fralkit.models import make_model
    from fralkit.train import FoldedTwin

    torch.manual_seed(0)
    model = make_model("small_cnn", 3, image_size=8).train()
    model(torch.rand(8, 3, 8, 8))
    model.eval()
    wrapped = torch.compile(model)  # only wrapped: nothing is compiled until it is called
    plain, twin = FoldedTwin(model), FoldedTwin(wrapped)
    assert twin.folded == plain.folded > 0
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(twin(x), plain(x))
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    twin.refresh()  # follows the wrapped model's updates
    model.eval()
    torch.testing.assert_close(twin(x), model(x), rtol=1e-4, atol=1e-5)


def test_compiled_falls_back_to_the_module_without_triton(monkeypatch):
    """Without Triton (torch.compile's GPU backend) ``compiled`` warns and returns the module itself; off, it never
    wraps."""
    from fralkit.train import fast

    model = TinyNet()
    assert fast.compiled(model, False) is model
    monkeypatch.setattr(fast, "compile_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="needs Triton"):
        assert fast.compiled(model, True) is model

