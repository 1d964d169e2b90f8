"""Medians with their spread: one figure from a shared, noisy machine means little alone."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def spread(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median, min and max of the runs, and the runs themselves."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(value, digits) for value in values]}


def ratios(measured: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Each run's ratio against the baseline measured next to it, then their spread."""
    return spread([m / b for m, b in zip(measured, baseline, strict=True)], 2)


def text(figure: dict[str, Any], unit: str = " s", digits: int = 3) -> str:
    """`0.512 s (0.498-0.530)`: the median, then min-max."""
    return (f"{figure['median']:.{digits}f}{unit} "
            f"({figure['min']:.{digits}f}-{figure['max']:.{digits}f})")


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ys over xs (None with fewer than two points)."""
    if len(xs) < 2:
        return None
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    spread_x = sum((x - mean_x) ** 2 for x in xs)
    if spread_x == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread_x
