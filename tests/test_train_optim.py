"""fralkit.train.optim: the learning-rate schedules."""
import pytest

from fralkit.train import lr_at


def test_lr_schedules():
    assert lr_at(0, 100, lr=0.1, schedule="constant") == 0.1
    assert lr_at(0, 100, lr=0.1, schedule="cosine") == pytest.approx(0.1)
    assert lr_at(50, 100, lr=0.1, schedule="cosine") == pytest.approx(0.05)
    assert lr_at(80, 100, lr=0.1, schedule="step") == pytest.approx(0.01)
    assert lr_at(95, 100, lr=0.1, schedule="step") == pytest.approx(0.001)
    assert lr_at(24, 100, lr=0.1, schedule="onecycle") == pytest.approx(0.1)
    assert lr_at(4, 100, lr=0.1, schedule="cosine", warmup=10) == pytest.approx(0.05)
