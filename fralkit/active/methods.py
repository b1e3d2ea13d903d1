"""The Table 1 methods of BALD+GRAD (Branchaud-Charron et al.) by name: a query heuristic, optionally trained
with GRAD, or the REPAIR reference.

``"bald+grad0.5"`` is BALD queries with a gradient-reversal head of weight 0.5; ``"repair"`` trains once on a
reweighted full training set. Used by the BALD+GRAD study and its plots alike.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HEURISTIC_NAMES", "TABLE1_METHODS", "MethodSpec", "parse_method", "method_label"]

# The query heuristics of Table 1: keys of fralkit.active.STRATEGIES.
HEURISTIC_NAMES = ("uniform", "balanced", "bald")

# Every row of the paper's Table 1, in its order: "<heuristic>[+grad<lambda>]" or "repair".
TABLE1_METHODS = ("uniform", "uniform+grad0.5", "uniform+grad1", "bald", "bald+grad0.5", "bald+grad1",
                  "balanced", "balanced+grad0.5", "repair")


@dataclass(frozen=True)
class MethodSpec:
    """A Table 1 row: the query heuristic and the training (``lambd`` = 0: standard; > 0: GRAD), or REPAIR."""

    name: str
    heuristic: str | None
    lambd: float = 0.0
    repair: bool = False

    @property
    def grad(self) -> bool:
        return self.lambd > 0


def parse_method(name: str) -> MethodSpec:
    """``"bald+grad0.5"`` -> ``MethodSpec(heuristic="bald", lambd=0.5)``; ``"repair"``; heuristics: ``HEURISTIC_NAMES``."""
    key = str(getattr(name, "value", name)).strip().lower().replace(" ", "")
    if key == "repair":
        return MethodSpec(key, None, 0.0, True)
    head, _, grad = key.partition("+")
    valid = f"'<heuristic>' or '<heuristic>+grad<lambda>' with heuristic in {list(HEURISTIC_NAMES)}, or 'repair' (Table 1: {list(TABLE1_METHODS)})"
    if head not in HEURISTIC_NAMES:
        raise ValueError(f"unknown method {name!r}; valid: {valid}")
    lambd = 0.0
    if grad:
        try:
            if not grad.startswith("grad"):
                raise ValueError
            lambd = float(grad[4:])
        except ValueError:
            raise ValueError(f"unknown method {name!r}; valid: {valid}") from None
        if not lambd > 0:
            raise ValueError(f"method {name!r}: the GRAD weight lambda must be > 0")
    return MethodSpec(key, head, lambd, False)


def method_label(name: str) -> str:
    """Human label in the paper's words: ``"bald+grad0.5"`` -> ``"BALD + GRAD λ=0.5"``."""
    spec = parse_method(name)
    if spec.repair:
        return "REPAIR (full labels)"
    base = {"uniform": "Uniform", "balanced": "Balanced uniform (oracle)", "bald": "BALD"}[spec.heuristic]
    return f"{base} + GRAD λ={spec.lambd:g}" if spec.grad else base
