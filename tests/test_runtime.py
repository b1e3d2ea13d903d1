"""fralkit.runtime: the named seed schedules keep today's formulas; autocast, layout and eval mode on CPU."""
import pytest
import torch
import torch.nn as nn

from fralkit import runtime as rt


def test_seed_schedules_equal_the_formulas_at_hand_computed_points():
    # (seed * 1_000_003 + epoch * 7_919 + 12_345) mod (2^31 - 1)
    assert rt.epoch_seed(0, 0) == 12_345
    assert rt.epoch_seed(3, 2) == 3_000_009 + 15_838 + 12_345 == 3_028_192
    assert rt.epoch_seed(5_000, 1) == (5_000_015_000 + 7_919 + 12_345) % 2_147_483_647 == 705_067_970
    # (seed * 1_000_003 + round * 7_919 + stage * 104_729) mod (2^31 - 1)
    assert rt.stage_seed(0, 0, 0) == 0
    assert rt.stage_seed(1, 2, 3) == 1_000_003 + 15_838 + 314_187 == 1_330_028
    assert rt.stage_seed(2_200, 5, 7) == (2_200_006_600 + 39_595 + 733_103) % 2_147_483_647 == 53_295_651
    # seed * 1_000_003 + round * 7_919 + salt (no modulus)
    assert rt.round_seed(2, 3, 17) == 2_000_006 + 23_757 + 17 == 2_023_780
    assert rt.round_seed(1, 1) == 1_007_922
    assert rt.std_fit_seed(2, 3) == 2_000_009
    assert rt.step_seed(3, 4) == 3_004
    assert rt.query_seed(2, 5) == 200_011
    assert rt.offset_seed(7, 12) == 19 and rt.offset_seed(0, 7_919) == 7_919


def test_set_seed_fixes_torch_and_returns_a_seeded_generator():
    gen = rt.set_seed(3)
    a = torch.rand(3)
    b = torch.rand(3, generator=gen)
    rt.set_seed(3)
    assert torch.equal(a, torch.rand(3))
    assert torch.equal(b, torch.rand(3, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="non-negative integer"):
        rt.set_seed(-1)


def test_resolve_device():
    assert rt.resolve_device("cpu").type == "cpu"
    assert rt.resolve_device("auto").type in ("cpu", "cuda")
    dev = torch.device("cpu")
    assert rt.resolve_device(dev) is dev


def test_autocast_is_a_no_op_on_cpu():
    lin = nn.Linear(4, 3)
    x = torch.rand(2, 4)
    with rt.autocast("cpu", amp=True):
        out = lin(x)
    assert out.dtype == torch.float32 and not torch.is_autocast_enabled()
    torch.testing.assert_close(out, lin(x), rtol=0, atol=0)
    rt.sync("cpu")  # no-op


def test_channels_last_only_when_asked():
    x = torch.rand(2, 3, 4, 4)
    assert rt.channels_last(x, False) is x
    assert rt.channels_last(x, True).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_also_after_an_error(training):
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with rt.eval_mode(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training is training
    with pytest.raises(RuntimeError):
        with rt.eval_mode(model):
            raise RuntimeError("boom")
    assert model.training is training
