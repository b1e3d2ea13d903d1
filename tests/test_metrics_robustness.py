"""FARMUR Defs. 1-5 on made-up distances, checked against hand computations."""
import numpy as np
import pytest
import torch

from fralkit.metrics import (auc_i_p, auc_step, i_f, i_p, rob_f, rob_p, robustness_report, tau_grid, v_f,
                             vulnerable_split)

# One sub-partition P of 5 points: 3 correctly classified at 0.5, 1.0, 0.8; the misclassified ones are not attacked.
D = [0.5, 1.0, 0.2, float("nan"), 0.8]
CORRECT = [True, True, False, False, True]


def test_i_p_on_made_up_distances():
    vals = i_p(D, CORRECT, [0.0, 0.3, 0.5, 0.79, 0.8, 0.9, 1.0, 5.0])
    # d > tau is strict: the point at 0.5 no longer counts at tau = 0.5; the misclassified 0.2 never counts.
    np.testing.assert_allclose(vals, [3 / 5, 3 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5, 0.0, 0.0])
    assert np.all(np.diff(i_p(D, CORRECT, tau_grid(2.0, 500))) <= 0)  # non-increasing


def test_auc_is_the_hand_sum_and_matches_fine_grid_integration():
    assert auc_i_p(D, CORRECT) == pytest.approx((0.5 + 1.0 + 0.8) / 5)
    tau = tau_grid(2.0, 20001)
    assert auc_step(tau, i_p(D, CORRECT, tau)) == pytest.approx(0.46, abs=3 / 5 * 1e-4 + 1e-12)


def test_per_group_i_p_rob_p_and_i_f():
    d = np.array([0.5, 1.0, 0.2, 0.4, 0.3, 0.9])
    correct = np.array([True, True, False, True, True, False])
    g = np.array([0, 0, 0, 1, 1, 1])
    tau = [0.0, 0.35, 0.45, 0.95]
    curves = i_p(d, correct, tau, groups=g)
    np.testing.assert_allclose(curves, [[2 / 3, 2 / 3, 2 / 3, 1 / 3], [2 / 3, 1 / 3, 0.0, 0.0]])
    np.testing.assert_allclose(rob_p(d, correct, g), [1.5 / 3, 0.7 / 3])
    np.testing.assert_allclose(i_f(d, correct, tau, g), curves.mean(0))
    # AUC(I_f) = mean of the AUCs = Rob(f) (Def. 3)
    grid = tau_grid(2.0, 40001)
    assert auc_step(grid, i_f(d, correct, grid, g)) == pytest.approx(rob_f(rob_p(d, correct, g)), abs=1e-4)


def test_rob_f_v_f_population_and_sample_variance():
    rob = [1.0, 2.0, 3.0, 4.0]
    assert rob_f(rob) == pytest.approx(2.5)
    assert v_f(rob) == pytest.approx(1.25)  # population variance over the partition (default)
    assert v_f(rob, ddof=1) == pytest.approx(5 / 3)
    assert v_f([0.7, 0.7, 0.7]) == pytest.approx(0.0, abs=1e-15)


def test_vulnerable_and_robust_split_on_constructed_rob():
    vul, robust = vulnerable_split([0.1, 0.5, 0.3, 0.3])  # Rob(f) = 0.3; ties with the mean are robust
    assert vul.tolist() == [0] and robust.tolist() == [1, 2, 3]
    vul, robust = vulnerable_split(np.array([0.2, 0.05, 0.9, 0.15]))
    assert vul.tolist() == [0, 1, 3] and robust.tolist() == [2]


def test_report_collects_definitions_and_accepts_tensors():
    d = torch.tensor([0.5, 1.0, 0.2, 0.4, 0.3, 0.9])
    correct = torch.tensor([True, True, False, True, True, False])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    rep = robustness_report(d, correct, g, group_names=["a", "b"])
    np.testing.assert_allclose(rep["rob_p"], [0.5, 0.7 / 3])
    assert rep["rob_f"] == pytest.approx((0.5 + 0.7 / 3) / 2)
    assert rep["v_f"] == pytest.approx(((0.5 - 0.7 / 3) / 2) ** 2)
    assert rep["vulnerable"] == [1] and rep["robust"] == [0]
    assert rep["accuracy"] == pytest.approx(4 / 6) and rep["acc_p"] == pytest.approx([2 / 3, 2 / 3])
    assert rep["sizes"] == [3, 3] and rep["group_names"] == ["a", "b"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=">= 0"):
        auc_i_p([-0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        auc_i_p([float("nan"), 0.2], [True, True])
    with pytest.raises(ValueError, match="empty"):
        rob_p([0.1, 0.2], [True, True], [0, 2])
    with pytest.raises(ValueError, match="samples"):
        rob_p([0.1, 0.2], [True], [0, 0])
    with pytest.raises(ValueError, match="ddof"):
        v_f([1.0, 2.0], ddof=2)
    with pytest.raises(ValueError, match="increasing"):
        auc_step([0.0, 0.0, 1.0], [1.0, 1.0, 0.0])
