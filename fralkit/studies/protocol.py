"""What every study shares beyond its own code: drawing and saving its ``FIGURES`` by name."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..plots import savefig

__all__ = ["draw"]


def draw(notebook: str, figures: dict[str, Callable[[Sequence[dict]], list]], records: Sequence[dict],
         names: Sequence[str]) -> list[Path]:
    """Draw each of ``names`` (default every one of ``figures``) from ``records`` and save it as
    ``<notebook>_<stem>``; ``figures[name](records)`` gives ``[(stem, matplotlib figure), ...]``."""
    paths: list[Path] = []
    for name in names or figures:
        if name not in figures:
            raise ValueError(f"unknown figure {name!r}; valid: {sorted(figures)}")
        for stem, fig in figures[name](records):
            paths += savefig(fig, f"{notebook}_{stem}")
    return paths
