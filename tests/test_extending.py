"""The README's "Extending" section, run: a new strategy is one function plus one registry line."""
import torch

from fralkit.active import strategies
from fralkit.active.loop import FRALConfig
from fralkit.models import make_model


def select_lowconf(ctx, budget):
    """Least confidence: the pool examples whose top class probability under M_R is lowest (README example)."""
    logits, _ = strategies.infer(ctx.model, ctx.train, ctx.pool, batch_size=ctx.batch_size)
    return ctx.pool[logits.softmax(1).max(1).values.argsort()[:budget].cpu()]


def test_a_new_strategy_is_one_function_and_one_registry_line(tiny_groups, monkeypatch):
    monkeypatch.setitem(strategies.STRATEGIES, "lowconf", select_lowconf)
    torch.manual_seed(0)
    model = make_model("small_cnn", 3, in_channels=3, image_size=8)
    ctx = strategies.SelectionContext(model=model, train=tiny_groups, pool=torch.arange(12, 48),
                                      labelled=torch.arange(12), worst_group=1)
    picked = strategies.select("lowconf", ctx, 5)
    model.eval()
    with torch.no_grad():
        conf = model(tiny_groups.x[12:48].float() / 255).softmax(1).max(1).values
    assert picked.tolist() == (12 + conf.argsort()[:5]).tolist()  # the five least confident, by hand
    assert FRALConfig(strategy="lowconf").record_config()["method"] == "lowconf"  # the loop accepts the name
