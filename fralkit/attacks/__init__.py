"""Attacks in pixel space ([0, 1] inputs): L-inf PGD (CE or KL objective) and batched L2 DeepFool."""
from .pgd import *  # noqa: F401,F403
from .deepfool import *  # noqa: F401,F403
from . import pgd as _pgd, deepfool as _deepfool

__all__ = [*_pgd.__all__, *_deepfool.__all__]
