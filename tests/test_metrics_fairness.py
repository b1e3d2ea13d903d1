"""Group-fairness metrics of the BALD + GRAD paper (§2) on hand-made predictions."""
import math

import numpy as np
import pytest
import torch

from fralkit.metrics.fairness import (demographic_parity, equal_opportunity, equalized_odds, fairness_report,
                                      group_accuracy, group_means, nll, predictive_parity, uncertainty_gap)

# Two groups of four: group 0 is always right; group 1 has one false positive.
Y = [0, 0, 1, 1, 0, 0, 1, 1]
G = [0, 0, 0, 0, 1, 1, 1, 1]
PRED = [0, 0, 1, 1, 1, 0, 1, 1]


def test_group_accuracy_and_predictive_parity_by_hand():
    acc = group_accuracy(PRED, Y, G)
    assert acc.tolist() == [1.0, 0.75]
    assert predictive_parity(PRED, Y, G) == pytest.approx(0.25)


def test_equalized_odds_takes_the_larger_of_tpr_and_fpr_gaps():
    # TPR: 1 vs 1 (gap 0); FPR: 0 vs 0.5 (gap 0.5).
    assert equalized_odds(PRED, Y, G, positive=1) == pytest.approx(0.5)
    # Equal opportunity looks at the TPR of the positive class only.
    assert equal_opportunity(PRED, Y, G, positive=1) == pytest.approx(0.0)
    # With class 0 as the positive one, its TPR is 1 - FPR of class 1: gap 0.5.
    assert equal_opportunity(PRED, Y, G, positive=0) == pytest.approx(0.5)
    assert equal_opportunity(PRED, Y, G, positive=None) == pytest.approx(0.5)


def test_equalized_odds_tpr_gap_case():
    pred = [0, 0, 1, 1, 0, 0, 0, 1]  # group 1 misses one positive: TPR 1 vs 0.5, FPR 0 vs 0
    assert equalized_odds(pred, Y, G, positive=1) == pytest.approx(0.5)
    assert equal_opportunity(pred, Y, G, positive=1) == pytest.approx(0.5)


def test_demographic_parity_by_hand():
    # P(y_hat = 1 | a): 0.5 vs 0.75.
    assert demographic_parity(PRED, G, positive=1) == pytest.approx(0.25)
    assert demographic_parity(PRED, G) == pytest.approx(0.25)


def test_perfect_predictions_are_fair():
    assert predictive_parity(Y, Y, G) == 0.0
    assert equalized_odds(Y, Y, G) == 0.0
    assert equal_opportunity(Y, Y, G) == 0.0


def test_binary_equalized_odds_does_not_depend_on_the_positive_class():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = torch.randint(0, 2, (60,), generator=gen)
        g = torch.randint(0, 2, (60,), generator=gen)
        pred = torch.randint(0, 2, (60,), generator=gen)
        a = equalized_odds(pred, y, g, positive=0)
        assert a == pytest.approx(equalized_odds(pred, y, g, positive=1))
        assert a == pytest.approx(equalized_odds(pred, y, g))


def test_metrics_match_a_plain_loop_on_random_multiclass_data():
    rng = np.random.default_rng(1)
    y, g, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    accs = [np.mean(pred[g == a] == y[g == a]) for a in range(3)]
    assert predictive_parity(pred, y, g) == pytest.approx(max(accs) - min(accs))
    eo = 0.0
    for c in range(3):
        for cond in (y == c, y != c):
            rates = [np.mean(pred[cond & (g == a)] == c) for a in range(3)]
            eo = max(eo, max(rates) - min(rates))
    assert equalized_odds(pred, y, g) == pytest.approx(eo)


def test_gaps_are_invariant_to_order_and_group_names():
    rng = np.random.default_rng(2)
    y, g, pred = rng.integers(0, 2, 100), rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    perm = rng.permutation(100)
    for fn in (predictive_parity, equalized_odds, equal_opportunity):
        base = fn(pred, y, g)
        assert fn(pred[perm], y[perm], g[perm]) == pytest.approx(base)
        assert fn(pred, y, 1 - g) == pytest.approx(base)


def test_empty_group_is_nan_and_skipped():
    acc = group_accuracy([0, 1, 1], [0, 1, 0], [0, 0, 2], num_groups=3)
    assert acc[0] == 1.0 and math.isnan(acc[1]) and acc[2] == 0.0
    assert predictive_parity([0, 1, 1], [0, 1, 0], [0, 0, 2], num_groups=3) == 1.0
    assert predictive_parity([0, 1], [0, 0], [0, 0]) == 0.0  # one group: no gap


def test_nll_by_hand():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    assert nll(probs, [0, 1]) == pytest.approx(-(math.log(0.5) + math.log(0.1)) / 2)


def test_uncertainty_gap_by_hand():
    assert uncertainty_gap([0.1, 0.3, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.5)
    assert group_means([0.1, 0.3, 0.5, 0.9], [0, 0, 1, 1]).tolist() == pytest.approx([0.2, 0.7])


def test_fairness_report_is_consistent_with_the_single_metrics():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9],
                          [0.4, 0.6], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    scores = torch.tensor([0.0, 0.1, 0.0, 0.1, 0.4, 0.2, 0.3, 0.5])
    rep = fairness_report(probs, Y, G, scores=scores)
    assert rep["accuracy"] == pytest.approx(7 / 8)
    assert rep["acc_g0"] == 1.0 and rep["acc_g1"] == 0.75
    assert rep["parity"] == pytest.approx(0.25)
    assert rep["eq_odds"] == pytest.approx(0.5) and rep["eq_opp"] == pytest.approx(0.0)
    assert rep["nll"] == pytest.approx(nll(probs, Y))
    assert rep["bald_g0"] == pytest.approx(0.05) and rep["bald_g1"] == pytest.approx(0.35)
    assert rep["bald_gap"] == pytest.approx(0.3)
    assert all(isinstance(v, float) for v in rep.values())


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="same length"):
        predictive_parity([0, 1], [0, 1, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"1-D vector \[N\]"):
        group_accuracy([[0, 1]], [0, 1], [0, 1])
    with pytest.raises(ValueError, match="num_groups=2"):
        group_accuracy([0, 1, 1], [0, 1, 1], [0, 1, 2], num_groups=2)
    with pytest.raises(ValueError, match=r"probs must be \[N, C\]"):
        nll(torch.ones(3), [0, 1, 1])
    with pytest.raises(ValueError, match=r"probs must be \[N, C\]"):
        fairness_report(torch.ones(3), [0, 1, 1], [0, 1, 1])
