import pytest
import torch

from fralkit.data import DataSplits, GroupDataset, fral_split, iterate_batches, split_indices, stratified_split


def test_group_dataset_validates_input():
    with pytest.raises(ValueError, match="uint8"):
        GroupDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2), torch.zeros(2), ["a"], ["g"])
    with pytest.raises(ValueError, match="labels must lie"):
        GroupDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), torch.zeros(2), ["a", "b"], ["g"])
    with pytest.raises(ValueError, match="group ids"):
        GroupDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2), torch.tensor([0, 1]), ["a"], ["g"])


def test_subset_counts_and_resize(tiny_groups):
    sub = tiny_groups.subset(torch.tensor([0, 1, 2, 3]))
    assert len(sub) == 4 and sub.counts().sum() == 4
    assert sub.counts().shape == (3, 2)
    mask = tiny_groups.g == 1
    assert len(tiny_groups.subset(mask)) == int(mask.sum())
    assert tiny_groups.resized(16).x.shape == (48, 3, 16, 16)
    f = tiny_groups.float_images()
    assert f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1


def test_split_indices_partition_and_seed():
    a = split_indices(100, [0.7, 0.1, 0.2], seed=3)
    b = split_indices(100, [0.7, 0.1, 0.2], seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [len(p) for p in a] == [70, 10, 20]
    assert torch.equal(torch.cat(a).sort().values, torch.arange(100))
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(10, [0.5, 0.6])


def test_stratified_split_keeps_proportions():
    strata = torch.tensor([0] * 50 + [1] * 50)
    tr, te = stratified_split(strata, [0.8, 0.2], seed=0)
    assert (strata[te] == 1).sum() == 10 and (strata[te] == 0).sum() == 10


def test_fral_split_is_20_percent_and_disjoint(tiny_groups):
    lab, pool = fral_split(tiny_groups, init_frac=0.25, seed=1)
    assert len(lab) == 12 and len(pool) == 36
    assert not set(lab.tolist()) & set(pool.tolist())
    lab2, _ = fral_split(tiny_groups, init_frac=0.25, seed=1)
    assert torch.equal(lab, lab2)
    with pytest.raises(ValueError, match="init_frac"):
        fral_split(tiny_groups, init_frac=1.5)


def test_iterate_batches_covers_every_index_once(tiny_groups):
    seen = []
    for x, y, g, idx in iterate_batches(tiny_groups, 10, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 8, 8)
        assert torch.equal(y, tiny_groups.y[idx])
        seen.append(idx)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(48))
    sub = list(iterate_batches(tiny_groups, 4, idx=torch.tensor([5, 6, 7])))
    assert len(sub) == 1 and sub[0][3].tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(tiny_groups, 0))


def test_data_splits_sizes(tiny_groups):
    s = DataSplits(tiny_groups, tiny_groups.subset(torch.arange(4)), tiny_groups.subset(torch.arange(6)))
    assert s.sizes() == {"train": 48, "val": 4, "test": 6}
