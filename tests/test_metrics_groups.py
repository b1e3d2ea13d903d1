"""Group / class reports: JIN Worst / Disp / Avg, macro-F1 and FairAT's class-wise numbers against hand values."""
import math

import pytest
import torch
import torch.nn as nn

from fralkit.metrics import group_report, macro_f1, per_class_f1, predict, report_from_logits, report_table
from fralkit.metrics.groups import worst_disp_avg

# Made-up predictions: 10 examples, 3 classes, 2 groups.
Y = torch.tensor([0, 0, 1, 1, 2, 0, 1, 2, 2, 0])
G = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
CLEAN = torch.tensor([0, 1, 1, 1, 2, 0, 0, 2, 1, 0])  # g0: 4/5 right, g1: 3/5 right
ADV = torch.tensor([1, 1, 1, 0, 2, 2, 0, 2, 1, 1])  # g0: 2/5, g1: 1/5


def test_worst_disp_avg_of_group_accuracy_by_hand():
    r = report_from_logits(Y, G, CLEAN, ADV, num_classes=3)
    assert r["std_group_0"] == pytest.approx(0.8) and r["std_group_1"] == pytest.approx(0.6)
    assert (r["std_worst"], r["std_disp"], r["std_avg"]) == pytest.approx((0.6, 0.2, 0.7))
    assert (r["rob_worst"], r["rob_disp"], r["rob_avg"]) == pytest.approx((0.2, 0.2, 0.3))
    assert r["std_acc"] == pytest.approx(0.7) and r["rob_acc"] == pytest.approx(0.3)
    assert r["std_worst_group"] == 1 and r["worst_group"] == 1
    assert (r["n"], r["n_group_0"], r["n_group_1"]) == (10, 5, 5)


def test_class_wise_robust_accuracy_fairat_measures():
    r = report_from_logits(Y, G, CLEAN, ADV, num_classes=3)
    # class 0: examples 0,1,5,9 -> adv preds 1,1,2,1 -> 0/4; class 1: 2,3,6 -> 1,0,0 -> 1/3; class 2: 4,7,8 -> 2,2,1 -> 2/3
    assert [r[f"rob_class_{c}"] for c in range(3)] == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert r["worst_class_rob"] == pytest.approx(0.0)
    assert r["avg_class_rob"] == pytest.approx(1 / 3)
    assert r["disp_class_rob"] == pytest.approx(2 / 3)
    # clean: class 0 -> 0,1,0,0 = 3/4; class 1 -> 1,1,0 = 2/3; class 2 -> 2,2,1 = 2/3
    assert r["worst_class_std"] == pytest.approx(2 / 3)
    assert r["rob_acc_g1_c2"] == pytest.approx(0.5)  # examples 7, 8 -> 2, 1


def test_macro_f1_by_hand():
    # group 0 clean: y = 0 0 1 1 2, pred = 0 1 1 1 2
    # class 0: TP 1, FP 0, FN 1 -> 2/3; class 1: TP 2, FP 1, FN 0 -> 4/5; class 2: TP 1 -> 1
    f1 = per_class_f1(CLEAN[:5], Y[:5], 3)
    torch.testing.assert_close(f1, torch.tensor([2 / 3, 4 / 5, 1.0], dtype=torch.float64))
    assert macro_f1(CLEAN[:5], Y[:5], 3) == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)
    # a class absent from labels and predictions is left out (scikit-learn's label set); present but never
    # predicted counts as 0
    assert math.isnan(per_class_f1(torch.tensor([0, 0]), torch.tensor([0, 0]), 3)[2])
    assert macro_f1(torch.tensor([0, 0]), torch.tensor([0, 1]), 3) == pytest.approx((2 / 3 + 0) / 2)


def test_f1_metric_drives_worst_disp_avg_and_table3_values():
    r = report_from_logits(Y, G, CLEAN, ADV, num_classes=3, metric="f1")
    g0 = (2 / 3 + 4 / 5 + 1) / 3
    # group 1 clean: y = 0 1 2 2 0, pred = 0 0 2 1 0: class 0 TP 2 FP 1 FN 0 -> 4/5; class 1 TP 0 FP 1 FN 1 -> 0;
    # class 2 TP 1 FN 1 -> 2/3
    g1 = (4 / 5 + 0 + 2 / 3) / 3
    assert r["std_group_0"] == pytest.approx(g0) and r["std_group_1"] == pytest.approx(g1)
    assert (r["std_worst"], r["std_disp"], r["std_avg"]) == pytest.approx((g1, g0 - g1, (g0 + g1) / 2))
    assert r["std_f1_g1_c1"] == 0.0 and r["std_f1_g1_c0"] == pytest.approx(0.8)
    assert r["std_acc_g0"] == pytest.approx(0.8)  # accuracy stays available
    table = report_table(r, kind="std", what="f1", classes=["a", "b", "c"], groups=["young", "old"])
    assert table.shape == (3, 2) and table.loc["b", "old"] == 0.0


def test_logits_and_predictions_give_the_same_report():
    logits = torch.nn.functional.one_hot(CLEAN, 3).float() * 3 + 0.1 * torch.randn(10, 3)
    a = report_from_logits(Y, G, logits, None)
    b = report_from_logits(Y, G, CLEAN, None, num_classes=3)
    assert a == b
    assert not any(k.startswith("rob_") for k in a)


def test_worst_disp_avg_skips_empty_groups():
    assert worst_disp_avg([0.5, float("nan"), 0.9]) == pytest.approx((0.5, 0.4, 0.7))


def test_report_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        report_from_logits(Y, G, CLEAN, metric="auc")
    with pytest.raises(ValueError, match="same length"):
        report_from_logits(Y, G[:5], CLEAN)


class _Fixed(nn.Module):
    """Predicts from the mean of channel c per class; batch norm to check the eval mode."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.lin = nn.Linear(3, 3)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(3) * 20)
            self.lin.bias.zero_()

    def forward(self, x):
        return self.lin(self.bn(x).mean((2, 3)))


def test_group_report_on_a_model_matches_predict_and_restores_mode(tiny_groups):
    model = _Fixed().train()
    r = group_report(model, tiny_groups, eps=8 / 255, alpha=4 / 255, steps=2, return_logits=True)
    assert model.training
    clean = predict(model, tiny_groups)
    adv = predict(model, tiny_groups, attack={"eps": 8 / 255, "alpha": 4 / 255, "steps": 2})
    torch.testing.assert_close(r["logits"]["clean"], clean)
    torch.testing.assert_close(r["logits"]["adv"], adv)  # same seed, same random start
    ref = report_from_logits(tiny_groups.y, tiny_groups.g, clean, adv, num_classes=3, num_groups=2)
    assert all(r[k] == ref[k] or (math.isnan(r[k]) and math.isnan(ref[k])) for k in ref)
    assert r["rob_acc"] <= r["std_acc"] + 1e-9
    sub = torch.tensor([1, 5, 7, 20])
    r_sub = group_report(model, tiny_groups, idx=sub, robust=False)
    assert r_sub["n"] == 4 and "rob_worst" not in r_sub
    assert r_sub["std_acc"] == pytest.approx(float((clean[sub].argmax(1) == tiny_groups.y[sub]).float().mean()))
    with pytest.raises(ValueError, match="unknown PGD option"):
        predict(model, tiny_groups, attack={"epsilon": 0.1})
