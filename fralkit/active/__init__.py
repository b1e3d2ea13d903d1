"""Active learning: one strategy registry (``STRATEGIES``: JIN (Wu et al.) and its baselines, and the uniform,
balanced and BALD heuristics of BALD+GRAD (Branchaud-Charron et al.)), the probability scores they share (BALD,
entropy) and one resumable active loop (``run_active_loop``, fine-tune or reset policy) that the FRAL run (JIN
Algorithm 1) and the BALD+GRAD study drive."""
from .bald import *  # noqa: F401,F403
from .strategies import *  # noqa: F401,F403
from .loop import *  # noqa: F401,F403
from . import bald as _bald, strategies as _strategies, loop as _loop

__all__ = [*_bald.__all__, *_strategies.__all__, *_loop.__all__]
