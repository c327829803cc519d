"""Draws the plots across trials into a report's folder: `seed_curves.png` and
`parallel_coordinates.png` for one experiment, `seed_curves.png` for a comparison of two.

Kept apart from `plots.draw_all` (the per-trial plots and the phase diagram), whose set of
files is its own; like it, a plot that no longer applies is removed from the folder.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from arbiter.report.analysis import Analysis
from arbiter.report.compare import Comparison
from arbiter.report.data import Report
from arbiter.report.parallel_coordinates import parallel_coordinates
from arbiter.report.seed_curves import compared_seed_curves, seed_curves
from arbiter.report.style import DPI

FILES = {
    "seed_curves": "seed_curves.png",
    "parallel_coordinates": "parallel_coordinates.png",
}


def draw_analysis(report: Report, analysis: Analysis, out: Path) -> dict[str, str]:
    """Draw the plots across trials that apply into `out`; kind -> file name."""
    figures: dict[str, Figure] = {}
    if any("val/accuracy" in r for t in report.trials for r in t.rows):
        figures["seed_curves"] = seed_curves(report, analysis.groups)
    if report.swept and sum(t.best is not None for t in report.trials) >= 2:
        figures["parallel_coordinates"] = parallel_coordinates(report)
    return _save(figures, out)


def draw_comparison(comparison: Comparison, out: Path) -> dict[str, str]:
    """The plot of a comparison: both experiments' seed groups."""
    return _save({"seed_curves": compared_seed_curves(comparison)}, out)


def _save(figures: dict[str, Figure], out: Path) -> dict[str, str]:
    for kind, fig in figures.items():
        fig.savefig(out / FILES[kind], dpi=DPI)
    for kind, name in FILES.items():  # only this module's own file names are ever removed
        if kind not in figures:
            (out / name).unlink(missing_ok=True)
    return {kind: FILES[kind] for kind in figures}
