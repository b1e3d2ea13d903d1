"""fralkit.inference: the one eval loop equals a plain model(x) loop, PGD then forward, MC samples; modes restored."""
import pytest
import torch
import torch.nn as nn

from fralkit.attacks import pgd
from fralkit.inference import attacked_logits, batches, clean_logits, embeddings, infer, mc_probs


class TinyNet(nn.Module):
    """features / head, BatchNorm (train and eval differ) and dropout in the head."""

    def __init__(self, num_classes=3, width=8, p=0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(p), nn.Linear(width, num_classes))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def _model(p=0.0):
    torch.manual_seed(0)
    model = TinyNet(p=p).train()
    model(torch.rand(16, 3, 8, 8))  # non-trivial batch-norm statistics
    return model


def test_clean_logits_equal_a_plain_loop_and_restore_train_mode(tiny_groups):
    model = _model()
    idx = torch.arange(3, 40)
    out = clean_logits(model, tiny_groups, idx, batch_size=10)
    assert model.training
    model.eval()
    with torch.no_grad():
        ref = torch.cat([model(tiny_groups.float_images(idx[i:i + 10])) for i in range(0, len(idx), 10)])
    assert torch.equal(out, ref)
    model.train()
    mask = torch.zeros(len(tiny_groups), dtype=torch.bool)
    mask[idx] = True
    assert torch.equal(clean_logits(model, tiny_groups, mask, batch_size=10), out)  # a bool mask reads the same rows


def test_attacked_logits_equal_pgd_then_forward_and_are_seeded(tiny_groups):
    model = _model()
    attack = {"eps": 8 / 255, "alpha": 2 / 255, "steps": 2, "loss": "ce"}
    out = infer(model, tiny_groups, batch_size=16, attack=attack, seed=3)
    assert model.training
    model.eval()
    torch.manual_seed(3)
    ref = []
    for i in range(0, len(tiny_groups), 16):
        b = torch.arange(i, min(i + 16, len(tiny_groups)))
        x_adv = pgd(model, tiny_groups.float_images(b), tiny_groups.y[b], **attack)
        with torch.no_grad():
            ref.append(model(x_adv))
    assert torch.equal(out.adv_logits, torch.cat(ref))
    with torch.no_grad():
        assert torch.equal(out.logits, model(tiny_groups.float_images()))
    again = attacked_logits(model, tiny_groups, attack=attack, batch_size=16, seed=3)
    assert torch.equal(again, out.adv_logits)  # the clean forward draws nothing: the same attack noise
    targets = torch.zeros(len(tiny_groups), dtype=torch.long)
    other = attacked_logits(model, tiny_groups, attack=attack, targets=targets, batch_size=16, seed=3)
    assert not torch.equal(other, out.adv_logits)


def test_embeddings_are_the_input_of_the_last_linear_layer(tiny_groups):
    model = _model().eval()
    emb = embeddings(model, tiny_groups, torch.arange(10), batch_size=4)
    with torch.no_grad():
        torch.testing.assert_close(emb, model.features(tiny_groups.float_images(torch.arange(10))))
    assert embeddings(model, tiny_groups, torch.arange(0), batch_size=4).shape == (0, 8)


def test_padded_batches_keep_every_real_row(tiny_groups):
    model = TinyNet().eval()
    idx = torch.arange(5, 45)
    chunks = list(batches(tiny_groups, idx, 32, pad=True))
    assert [(x.shape[0], n) for x, n, _ in chunks] == [(32, 32), (32, 8)]  # a set of >= 1 batch: the full batch
    small = list(batches(tiny_groups, idx[:20], 256, pad=True))  # a set below one batch: BUCKET * 2**k
    assert [(x.shape[0], n) for x, n, _ in small] == [(128, 20)]
    assert [x.shape[0] for x, _, _ in batches(tiny_groups, torch.arange(40), 1024, pad=True)] == [128]
    padded = torch.cat([model(x)[:n] for x, n, _ in chunks])
    assert torch.allclose(padded, model(tiny_groups.float_images(idx)), atol=1e-6)
    unpadded = infer(model, tiny_groups, idx, batch_size=32).logits
    torch.testing.assert_close(infer(model, tiny_groups, idx, batch_size=32, pad=True).logits, unpadded)


def test_mc_samples_have_shape_n_c_t_differ_across_t_and_restore_the_mode(tiny_groups):
    model = _model(p=0.5)
    probs = mc_probs(model, tiny_groups, T=5, batch_size=16, seed=1)
    assert probs.shape == (len(tiny_groups), 3, 5)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(tiny_groups), 5))
    assert not torch.allclose(probs[..., 0], probs[..., 1])
    assert model.training and model.head[0].training
    assert torch.equal(probs, mc_probs(model, tiny_groups, T=5, batch_size=16, seed=1))
    with pytest.raises(ValueError, match="Dropout"):
        mc_probs(nn.Sequential(nn.Flatten(), nn.Linear(192, 3)), tiny_groups, T=2)


def test_attack_on_the_folded_twin_is_the_same_attack_and_the_cpu_default_is_the_plain_one():
    from fralkit.models import FoldedTwin, make_model

    torch.manual_seed(0)
    model = make_model("resnet18", num_classes=4, in_channels=3, image_size=16)
    x = torch.rand(48, 3, 16, 16)
    with torch.no_grad():
        model.train()(x)  # running statistics away from 0 / 1, so folding changes the layers' weights
    model.eval()
    assert FoldedTwin(model).folded > 0
    y = torch.randint(0, 4, (48,))
    attack = dict(eps=4 / 255, alpha=2 / 255, steps=5, loss="ce")
    plain = infer(model, x, attack=attack, targets=y, seed=3, fold_bn=False)
    folded = infer(model, x, attack=attack, targets=y, seed=3, fold_bn=True)
    default = infer(model, x, attack=attack, targets=y, seed=3)  # CPU: the plain attack, bit for bit
    assert torch.equal(default.adv_logits, plain.adv_logits) and torch.equal(folded.logits, plain.logits)
    # the same function with fewer layers: float rounding may flip a sign step of PGD, nothing more
    assert (folded.adv_logits - plain.adv_logits).abs().max() < 2e-2
    assert torch.equal(folded.adv_logits.argmax(1), plain.adv_logits.argmax(1))
    assert not model.training and all(p.requires_grad for p in model.parameters())  # the model is left as it was


@pytest.mark.gpu
def test_cuda_default_attack_on_the_bf16_folded_twin_agrees_with_the_plain_bf16_attack():
    from fralkit.models import make_model

    torch.manual_seed(0)
    model = make_model("mobilenetv2", num_classes=10, in_channels=3, image_size=32).cuda()
    x = torch.rand(512, 3, 32, 32, device="cuda")
    with torch.no_grad():
        model.train()(x)
    model.eval()
    y = torch.randint(0, 10, (512,), device="cuda")
    attack = dict(eps=4 / 255, alpha=2 / 255, steps=5, loss="ce")
    plain = infer(model, x, attack=attack, targets=y, seed=3, fold_bn=False, pad=True)
    default = infer(model, x, attack=attack, targets=y, seed=3, pad=True)  # CUDA: the folded twin
    assert torch.equal(default.logits, plain.logits)
    agree = (default.adv_logits.argmax(1) == plain.adv_logits.argmax(1)).float().mean()
    assert agree >= 0.98, f"the folded attack's predictions agree on {agree:.3f} of the images"
