"""One training engine: ``fit`` with pluggable objectives (standard, PGD-AT, TRADES, FairAT, GRAD, FARMUR).

| module | holds |
|---|---|
| ``fit`` | ``Recipe`` (the hyperparameters in one table), ``fit``, ``FitResult``, checkpoints |
| ``objectives`` | ``OBJECTIVES`` and the losses of the papers |
| ``samplers`` | the per-epoch order, class-balanced oversampling, FARMUR's pairing |
| ``augment`` | crop / flip and FairAT's hard-example augmentation, on the device |
| ``optim`` | optimisers and learning-rate schedules |
| ``fast`` | the CUDA fast path: ``FoldedTwin``, the CUDA-graph PGD, ``torch.compile`` |
"""
# Modules first: the imports below then rebind ``fit`` to the function of the same name.
from . import augment, fast, objectives, optim, samplers
from .augment import (AUGMENTATIONS, HARD_AUGMENTATIONS, augment_hard, cutmix, cutout, random_crop, random_flip,
                      select_hard)
from .fast import FoldedTwin, _GraphedAttack
from .fit import FitResult, Recipe, fit
from .objectives import (OBJECTIVES, Objective, Step, fairat_loss, farmur_loss, grad_loss, pgd_at_loss, standard_loss,
                         trades_loss)
from .optim import OPTIMIZERS, SCHEDULES, lr_at
from .samplers import PAIRINGS, EpochSampler, PairedSampler, class_balanced_indices

__all__ = [
    "fit", "FitResult", "Recipe", "FoldedTwin", "Objective", "Step", "OBJECTIVES", "OPTIMIZERS", "SCHEDULES",
    "AUGMENTATIONS", "HARD_AUGMENTATIONS", "PAIRINGS",
    "standard_loss", "pgd_at_loss", "trades_loss", "fairat_loss", "grad_loss", "farmur_loss",
    "select_hard", "augment_hard", "random_crop", "random_flip", "cutout", "cutmix",
    "class_balanced_indices", "EpochSampler", "PairedSampler", "lr_at",
]
