"""What every benchmark script hands to `scripts/bench.py`: figures, each a ratio against a baseline
measured in the same run, with the issue's target beside it so a miss is visible in the table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure. `value` is usually a ratio (measured ÷ baseline); `unit` says what it is.

    `target` is the bound the issue sets, `better` says which side of it passes ("lower": value ≤ target,
    "higher": value ≥ target); `detail` carries the raw numbers behind the ratio (ms, counts, …)."""

    benchmark: str
    measure: str
    value: float
    unit: str = "×"
    target: float | None = None
    better: str = "lower"
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value <= self.target if self.better == "lower" else self.value >= self.target


def interleaved(sides: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each side, the sides taking turns round by round (so load that comes and goes
    falls on all of them alike)."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, call in sides.items():
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
