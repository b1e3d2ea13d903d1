"""Batched DeepFool: closed form on linear classifiers, batched == per-sample, flags, clamping, options."""
import pytest
import torch
import torch.nn as nn

from fralkit.attacks import DeepFoolResult, deepfool


def _linear(num_classes=4, dim=3 * 4 * 4, seed=0, scale=3.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(dim, num_classes))
    with torch.no_grad():
        model[1].weight.mul_(scale)  # ||w_l - w_k|| far from 1, so Eq. 7's squared norm would be visibly wrong
    return model


def _closed_form(model, x, classes=None):
    """|f_l - f_k| / ||w_l - w_k||_2 minimised over l != k (k = predicted), optionally over ``classes[n]`` only."""
    W, b = model[1].weight.detach(), model[1].bias.detach()
    f = x.flatten(1) @ W.T + b
    k = f.argmax(1)
    out, out_sq = [], []
    for n in range(x.shape[0]):
        cands = range(W.shape[0]) if classes is None else classes[n]
        dist = [((f[n, c] - f[n, k[n]]).abs() / (W[c] - W[k[n]]).norm()).item() for c in cands if c != k[n]]
        dist_sq = [((f[n, c] - f[n, k[n]]).abs() / (W[c] - W[k[n]]).norm() ** 2).item() for c in cands if c != k[n]]
        out.append(min(dist))
        out_sq.append(min(dist_sq))
    return torch.tensor(out), torch.tensor(out_sq)


class _SmallCNN(nn.Module):
    def __init__(self, num_classes=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 6, 3, padding=1, stride=2),
                                 nn.Softplus(), nn.Flatten(), nn.Linear(6 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.net(x)


def _reference_deepfool(model, image, *, num_classes, overshoot=0.02, max_iter=50):
    """The original algorithm, one image at a time: one backward per candidate logit per iteration."""
    with torch.no_grad():
        f0 = model(image[None])[0]
    order = f0.argsort(descending=True)[:num_classes]
    label = order[0]
    x = image.clone()
    r_tot = torch.zeros_like(image)
    loop_i = 0
    k_i = label
    while k_i == label and loop_i < max_iter:
        xv = x[None].clone().requires_grad_(True)
        fs = model(xv)[0]
        grads = []
        for c in order:
            (gr,) = torch.autograd.grad(fs[c], xv, retain_graph=True)
            grads.append(gr[0])
        pert = float("inf")
        w = None
        for j in range(1, len(order)):
            w_k = grads[j] - grads[0]
            f_k = (fs[order[j]] - fs[order[0]]).detach()
            pert_k = f_k.abs() / w_k.norm()
            if pert_k < pert:
                pert, w = pert_k, w_k
        r_i = (pert + 1e-4) * w / w.norm()
        r_tot = r_tot + r_i
        x = image + (1 + overshoot) * r_tot
        with torch.no_grad():
            k_i = model(x[None])[0].argmax()
        loop_i += 1
    d = 0.5 * (r_tot.norm() + (1 + overshoot) * r_tot.norm())
    return float(d), loop_i, bool(k_i != label)


def test_linear_distance_equals_closed_form_within_overshoot():
    model = _linear()
    x = torch.rand(40, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    res = deepfool(model, x)
    exact, exact_sq = _closed_form(model, x)
    assert isinstance(res, DeepFoolResult) and len(res) == 40
    assert res.flipped.all() and (res.iters == 1).all()  # a linear boundary is reached in one step
    # Eq. 8 with before="boundary": mean of (d + 1e-4) and (1 + eta)(d + 1e-4)
    torch.testing.assert_close(res.d_theta, 1.01 * (exact + 1e-4), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(res.r_after, 1.02 * (exact + 1e-4), rtol=1e-4, atol=1e-6)
    assert ((res.d_theta - exact).abs() <= 0.02 * exact + 2e-4).all()
    assert not torch.allclose(res.d_theta, exact_sq, rtol=0.05)  # the plain norm, not Eq. 7's squared one


def test_x_adv_changes_label_and_has_the_reported_norm():
    model = _SmallCNN()
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    res = deepfool(model, x, return_adv=True)
    assert res.flipped.all()
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1), res.adv_label)
        assert torch.equal(model(x).argmax(1), res.label)
    assert (res.adv_label != res.label).all()
    torch.testing.assert_close(res.r_after, (res.x_adv - x).flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
    assert (res.r_before <= res.r_after + 1e-7).all() and (res.d_theta > 0).all()


def test_batched_and_single_sample_results_agree():
    model = _SmallCNN()
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    whole = deepfool(model, x, batch_size=None)
    chunked = deepfool(model, x, batch_size=5)
    singles = [deepfool(model, x[i:i + 1]) for i in range(12)]
    single_d = torch.cat([s.d_theta for s in singles])
    single_it = torch.cat([s.iters for s in singles])
    assert (whole.iters > 1).any(), "the test model should need more than one step for some samples"
    torch.testing.assert_close(whole.d_theta, single_d, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(chunked.d_theta, whole.d_theta, rtol=1e-4, atol=1e-6)
    assert torch.equal(whole.iters, single_it) and torch.equal(whole.iters, chunked.iters)


def test_matches_one_image_at_a_time_reference():
    model = _SmallCNN(num_classes=4, seed=1)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    res = deepfool(model, x)
    for i in range(8):
        d, loops, flipped = _reference_deepfool(model, x[i], num_classes=4)
        assert flipped == bool(res.flipped[i]) and loops == int(res.iters[i])
        assert abs(d - float(res.d_theta[i])) <= 1e-4 * d + 1e-7


def test_batched_grad_mode_matches_loop():
    model = _SmallCNN()
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    a = deepfool(model, x, grad_mode="loop")
    b = deepfool(model, x, grad_mode="batched")
    torch.testing.assert_close(a.d_theta, b.d_theta, rtol=1e-5, atol=1e-7)
    assert torch.equal(a.iters, b.iters)


def test_top_k_candidates_restrict_the_target_classes():
    model = _linear(num_classes=6, seed=3)
    x = torch.rand(30, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        top2 = model(x).topk(2, dim=1).indices.tolist()
    res = deepfool(model, x, candidates=2)
    exact_top2, _ = _closed_form(model, x, classes=top2)
    exact_all, _ = _closed_form(model, x)
    torch.testing.assert_close(res.d_theta, 1.01 * (exact_top2 + 1e-4), rtol=1e-4, atol=1e-6)
    assert (exact_top2 >= exact_all - 1e-7).all()
    assert torch.equal(res.adv_label, torch.tensor([t[1] for t in top2]))


def test_iterate_reading_of_eq8_halves_a_one_step_flip():
    model = _linear()
    x = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    res = deepfool(model, x, before="iterate")
    assert (res.r_before == 0).all()
    torch.testing.assert_close(res.d_theta, res.r_after / 2)


def test_never_flipped_samples_are_flagged_not_dropped():
    class Flat(nn.Module):  # zero input gradient: DeepFool cannot move
        def forward(self, x):
            return 0.0 * x.flatten(1).sum(1, keepdim=True) + torch.tensor([1.0, 0.0])

    x = torch.rand(5, 3, 4, 4)
    res = deepfool(Flat(), x)
    assert len(res) == 5 and not res.flipped.any()
    assert (res.iters == 0).all() and (res.d_theta == 0).all()
    assert res.summary()["n_unflipped"] == 5


def test_clamp_keeps_iterates_in_the_box_and_flags_unreachable_boundaries():
    # Two classes, boundary at x.mean() = 2: outside [0, 1]^D, so a clamped DeepFool can never cross it.
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(12), torch.full((12,), 1 / 12)]))
        model[1].bias.copy_(torch.tensor([0.0, -2.0]))
    x = torch.rand(6, 3, 2, 2)
    free = deepfool(model, x, max_iter=5)
    boxed = deepfool(model, x, max_iter=5, clamp=True, return_adv=True)
    assert free.flipped.all()
    assert not boxed.flipped.any() and (boxed.iters == 5).all()
    assert boxed.x_adv.min() >= 0 and boxed.x_adv.max() <= 1


def test_model_mode_is_restored_and_attack_runs_in_eval_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 3))
    model.train()
    x = torch.rand(6, 3, 2, 2)
    a = deepfool(model, x)
    b = deepfool(model, x)
    assert model.training
    torch.testing.assert_close(a.d_theta, b.d_theta)  # dropout off during the attack: deterministic


def test_bad_inputs_raise_clear_errors():
    model = _linear()
    with pytest.raises(ValueError, match="float"):
        deepfool(model, torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="before=.*valid"):
        deepfool(model, torch.rand(2, 3, 4, 4), before="mid")
    with pytest.raises(ValueError, match="grad_mode"):
        deepfool(model, torch.rand(2, 3, 4, 4), grad_mode="vmap")
    with pytest.raises(ValueError, match="candidates"):
        deepfool(model, torch.rand(2, 3, 4, 4), candidates=1)


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18"])
def test_folded_batch_norm_gives_the_distances_of_the_model(backbone):
    from fralkit.models import make_model

    # float64: in float32 a ReLU input that rounds across 0 can switch a gradient path and move a distance
    torch.manual_seed(0)
    model = make_model(backbone, 5, image_size=8).train().double()
    model(torch.rand(16, 3, 8, 8, dtype=torch.float64))  # running statistics that are not the identity
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    plain = deepfool(model, x, fold_bn=False)
    folded = deepfool(model, x, fold_bn=True)
    assert model.training and all(p.requires_grad for p in model.parameters())  # the model is not touched
    assert folded.d_theta.dtype == torch.float64
    torch.testing.assert_close(folded.d_theta, plain.d_theta, rtol=1e-9, atol=1e-12)
    assert torch.equal(folded.iters, plain.iters) and torch.equal(folded.label, plain.label)
    assert torch.equal(deepfool(model, x).d_theta, plain.d_theta)  # on the CPU the default attacks the model itself


def test_precision_tf32_is_fp32_on_the_cpu_and_bf16_stays_close():
    model = _SmallCNN()
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    fp32 = deepfool(model, x)
    assert torch.equal(deepfool(model, x, precision="tf32").d_theta, fp32.d_theta)
    low = deepfool(model, x, precision="bf16")
    assert low.d_theta.dtype == torch.float32 and bool(low.flipped.all())
    # bf16 keeps 8 bits of mantissa: a distance of a smooth model moves by about 2^-8 relative, not more than 5 %
    torch.testing.assert_close(low.d_theta, fp32.d_theta, rtol=5e-2, atol=1e-4)
    with pytest.raises(ValueError, match="precision"):
        deepfool(model, x, precision="fp16")


def test_padded_active_batches_give_the_same_results():
    from fralkit.attacks.deepfool import _bucket, _deepfool_chunk

    assert [_bucket(m) for m in (1, 64, 65, 97, 129, 193, 257, 1024)] == [64, 64, 96, 128, 192, 256, 384, 1024]
    assert all(m <= _bucket(m) <= max(64, 1.5 * m) for m in range(1, 3000))
    model = _SmallCNN()
    x = torch.rand(70, 3, 8, 8, generator=torch.Generator().manual_seed(11))  # 70 -> 96 rows, then fewer
    kw = dict(overshoot=0.02, max_iter=50, candidates=None, clamp=False, before="boundary", grad_mode="loop",
              return_adv=True)
    plain = _deepfool_chunk(model.eval(), x, **kw)
    padded = _deepfool_chunk(model, x, pad=True, **kw)
    assert (plain.iters > 1).any()
    torch.testing.assert_close(padded.d_theta, plain.d_theta, rtol=1e-5, atol=1e-7)
    assert torch.equal(padded.iters, plain.iters) and torch.equal(padded.adv_label, plain.adv_label)
    torch.testing.assert_close(padded.x_adv, plain.x_adv)


def test_pad_is_cuda_only_and_leaves_the_autotuner_off():
    """``pad`` pads the active batch on CUDA alone (the CPU computes the default call exactly) and never turns cuDNN's
    autotuner on: that is ``autotune``'s, which pads too."""
    import torch.backends.cudnn as cudnn

    seen = []

    class Recording(_SmallCNN):
        def forward(self, x):
            seen.append(cudnn.benchmark)
            return super().forward(x)

    model = Recording()
    x = torch.rand(20, 3, 8, 8, generator=torch.Generator().manual_seed(12))
    plain = deepfool(model, x)
    before = cudnn.benchmark
    padded = deepfool(model, x, pad=True)
    assert torch.equal(padded.d_theta, plain.d_theta) and torch.equal(padded.iters, plain.iters)
    assert not any(seen) and cudnn.benchmark == before


def test_empty_input_gives_empty_result():
    res = deepfool(_linear(), torch.rand(0, 3, 4, 4))
    assert len(res) == 0 and res.summary()["n"] == 0


@pytest.mark.gpu
def test_cuda_matches_cpu():
    model = _SmallCNN()
    x = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    cpu = deepfool(model, x)
    gpu = deepfool(model.cuda(), x.cuda())
    torch.testing.assert_close(gpu.d_theta.cpu(), cpu.d_theta, rtol=1e-3, atol=1e-6)
    gpu_cl = deepfool(model, x.cuda(), fold_bn=False, channels_last=True)
    torch.testing.assert_close(gpu_cl.d_theta.cpu(), cpu.d_theta, rtol=1e-3, atol=1e-6)
    tuned = deepfool(model, x.cuda(), autotune=True)
    torch.testing.assert_close(tuned.d_theta.cpu(), cpu.d_theta, rtol=1e-3, atol=1e-6)
    padded = deepfool(model, x.cuda(), pad=True)
    torch.testing.assert_close(padded.d_theta.cpu(), cpu.d_theta, rtol=1e-3, atol=1e-6)
