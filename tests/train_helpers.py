"""Tiny models and data shared by the tests of ``fralkit.train`` (imported by tests/test_train_*.py)."""
import torch
import torch.nn as nn

from fralkit.data import GroupDataset


class TinyNet(nn.Module):
    """features / head like fralkit.models, BatchNorm so eval/train modes differ."""

    def __init__(self, num_classes=3, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class TinyGRAD(nn.Module):
    def __init__(self, base, num_groups=2):
        super().__init__()
        self.base = base
        self.group_head = nn.Linear(8, num_groups)

    def forward(self, x):
        return self.base(x)

    def forward_with_group(self, x):
        z = self.base.features(x)
        return self.base.head(z), self.group_head(_Reverse.apply(z))


def learnable(n=60, num_classes=3, size=8, seed=0):
    """Class c = a brighter colour channel c (learnable in a few epochs); group = a darker half."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    g = (torch.arange(n) // num_classes) % 2
    x = 60 + 40 * torch.rand(n, 3, size, size, generator=gen)
    x[torch.arange(n), y] += 80
    x = x / (1 + g[:, None, None, None].float())
    return GroupDataset(x.round().to(torch.uint8), y, g, [f"c{i}" for i in range(num_classes)], ["g0", "g1"], name="learnable")
