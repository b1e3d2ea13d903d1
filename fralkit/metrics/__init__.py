"""Metrics: group/class reports (JIN Worst/Disp/Avg, FairAT worst-class), fairness in robustness
(FARMUR I_P(tau), Rob(P), V_f(P)) and group fairness (predictive parity, equalized odds)."""
from .groups import *  # noqa: F401,F403
from .robustness import *  # noqa: F401,F403
from .fairness import *  # noqa: F401,F403
from . import groups as _groups, robustness as _robustness, fairness as _fairness

__all__ = [*_groups.__all__, *_robustness.__all__, *_fairness.__all__]
