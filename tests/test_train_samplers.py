"""fralkit.train.samplers: class-balanced oversampling, the per-epoch order, FARMUR's pairing."""
import pytest
import torch

from fralkit.runtime import epoch_seed
from fralkit.train import EpochSampler, PairedSampler, class_balanced_indices
from train_helpers import learnable


def test_class_balanced_indices_tops_every_class_up_to_the_largest():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0, 1, 2])
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    out = class_balanced_indices(y, idx, torch.Generator().manual_seed(0))
    assert torch.bincount(y[out]).tolist() == [4, 4, 4]
    assert set(idx.tolist()) <= set(out.tolist()) and set(out.tolist()) <= set(idx.tolist())


def test_epoch_sampler_is_seeded_per_epoch_and_drops_a_last_batch_of_one():
    data = learnable(n=21)
    idx = torch.arange(21)
    a = EpochSampler(data, idx, batch_size=10, seed=4)
    assert a.steps_per_epoch == 2  # 21 = 10 + 10 + 1: the batch of one is dropped
    first = a.epoch(3)
    assert [len(b) for b in first] == [10, 10]
    assert all(torch.equal(u, v) for u, v in zip(first, EpochSampler(data, idx, batch_size=10, seed=4).epoch(3)))
    order = idx[torch.randperm(21, generator=torch.Generator().manual_seed(epoch_seed(4, 3)))]
    assert torch.equal(torch.cat(first), order[:20])
    assert not torch.equal(torch.cat(a.epoch(4)), torch.cat(first))


def test_paired_sampler_split_keeps_every_batch_of_d_and_drops_one_example_parts():
    data = learnable(n=30)  # groups alternate in runs of three: 15 vulnerable (g = 1), 15 robust
    idx = torch.arange(30)
    s = PairedSampler(data, idx, batch_size=7, seed=0, vulnerable=[1], pairing="split")
    assert s.steps_per_epoch == 5
    batches = s.epoch(0)
    seen = torch.cat(batches)
    assert len(torch.unique(seen)) == len(seen)  # one pass, no repeats
    for b in batches:
        vul = data.g[b] == 1
        assert len(b) >= 2 and int(vul.sum()) != 1 and int((~vul).sum()) != 1
    with pytest.raises(ValueError, match="unknown pairing"):
        PairedSampler(data, idx, batch_size=7, seed=0, vulnerable=[1], pairing="zip")


def test_paired_sampler_cycle_pairs_batch_size_of_each_part():
    data = learnable(n=30)
    idx = torch.cat([torch.arange(30)[data.g == 1][:12], torch.arange(30)[data.g == 0][:5]])  # 12 vulnerable, 5 robust
    s = PairedSampler(data, idx, batch_size=4, seed=1, vulnerable=[1], pairing="cycle")
    assert s.steps_per_epoch == 3  # one pass over the larger part
    batches = s.epoch(0)
    assert [int((data.g[b] == 1).sum()) for b in batches] == [4, 4, 4]
    # the robust stream gives 4, then 1 (a one-example part, dropped), then a reshuffled 4
    assert [int((data.g[b] == 0).sum()) for b in batches] == [4, 0, 4]
    assert torch.equal(torch.unique(torch.cat([b[data.g[b] == 1] for b in batches])), idx[:12].sort().values)
