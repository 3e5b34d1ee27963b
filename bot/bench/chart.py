"""The quality-against-cost chart as a PNG: mean total score against mean cost per cell, one labelled
point per finished pairing, with ±1 sd error bars when a pairing has several finished cells.

Matplotlib is imported when a chart is drawn, not at import time, and only through its Agg canvas: no
display, no pyplot global state. Same summary, same bytes: fixed size and dpi, and no `Software` metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.bench.aggregate import BenchSummary, PairingSummary, Stat

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SIZE_IN = (7.0, 4.5)
DPI = 100


def quality_cost_png(summary: BenchSummary, path: Path | str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE_IN, dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finished = [p for p in summary.pairings if p.total is not None and p.cost_usd is not None]
    for pairing in finished:
        _plot(axes, pairing)
    top = max((_cost(p).mean + _cost(p).sd for p in finished), default=0.0)
    axes.set_xlim(0, top * 1.2 if top > 0 else 1.0)
    axes.set_ylim(0, summary.out_of)
    axes.set_xlabel("Mean cost per cell (USD)")
    axes.set_ylabel(f"Mean total score (out of {summary.out_of})")
    axes.set_title(f"Archon bench: {summary.spec.repo}" + ("" if finished else " (no cell finished)"))
    axes.grid(alpha=0.3)
    if finished:
        axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    canvas.print_png(path, metadata={"Software": None})
    return path


def _plot(axes: Axes, pairing: PairingSummary) -> None:
    cost, total = _cost(pairing), pairing.total
    assert total is not None
    several = total.n > 1
    axes.errorbar(
        cost.mean,
        total.mean,
        xerr=cost.sd if several else None,
        yerr=total.sd if several else None,
        fmt="o",
        capsize=4,
        label=f"{pairing.code}: plan {pairing.plan}, implement {pairing.impl}",
    )
    axes.annotate(pairing.code, (cost.mean, total.mean), xytext=(6, 6), textcoords="offset points")


def _cost(pairing: PairingSummary) -> Stat:
    assert pairing.cost_usd is not None
    return pairing.cost_usd
