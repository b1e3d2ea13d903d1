"""Attacks in pixel space ([0, 1] inputs): L-inf PGD (CE or KL objective) and batched L2 DeepFool."""
# Modules first: the star imports then rebind `pgd` and `deepfool` to the functions of the same names.
from . import pgd as _pgd, deepfool as _deepfool
from .pgd import *  # noqa: F401,F403
from .deepfool import *  # noqa: F401,F403

__all__ = [*_pgd.__all__, *_deepfool.__all__]
