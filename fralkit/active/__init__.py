"""Active learning: acquisition strategies (JIN and its baselines, BALD), the FRAL loop (JIN Algorithm 1)
and the BALD + GRAD study of paper 004."""
from .bald import *  # noqa: F401,F403
from .strategies import *  # noqa: F401,F403
from .loop import *  # noqa: F401,F403
from . import bald as _bald, strategies as _strategies, loop as _loop

__all__ = [*_bald.__all__, *_strategies.__all__, *_loop.__all__]
