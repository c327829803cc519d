"""`parallel_coordinates.png`: every trial as one line across a vertical axis per swept key and
a last one for the sweep's metric, coloured by that metric.

Each axis is scaled to the same height: categories (and bools, lists) evenly spaced in their
natural order, numbers by value, on a log scale when they are positive and span more than 10x.
Lines of good trials are drawn last, on top, and in the colour map's bright end whichever way
the metric is better, so the values the best trials share show as a bright bundle.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from arbiter.report.data import Report, is_number, log_worthy, sort_values, value_key
from arbiter.report.style import DPI
from arbiter.ui import show

NUMBER_TICKS = 5  # at most this many ticks on a number axis with more values than MAX_LABELLED
MAX_LABELLED = 8  # up to this many distinct values, each one is labelled
NAME_CHARS = 14  # an axis name wraps to lines of about this many characters
# tick labels sit on the lines: a light box keeps them readable
LABEL_BOX = {"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5}


@dataclass
class Axis:
    """One vertical axis: its name, where a value sits on it (0 to 1), and its tick labels."""

    name: str
    place: Callable[[Any], float]
    ticks: list[tuple[float, str]]


def parallel_coordinates(report: Report) -> Figure:
    """One line per trial with a metric, across the swept keys' axes and the metric's."""
    trials = [t for t in report.trials if t.best is not None]
    metric_name = f"{report.metric}\n(best per trial)"
    axes = [axis(k, [t.config.get(k) for t in trials]) for k in report.swept]
    axes.append(axis(metric_name, [t.best for t in trials], labelled=False))
    best = [float(t.best) for t in trials if t.best is not None]  # all of them; for the types
    low, high = (min(best), max(best)) if best else (0.0, 1.0)
    if low == high:  # one value: a colour bar needs a range
        low, high = low - 0.5, high + 0.5
    norm = Normalize(low, high)
    # the bright end is the good end: viridis for a metric to maximise, reversed to minimise
    cmap = colormaps["viridis" if report.mode == "max" else "viridis_r"]

    fig = Figure(figsize=(max(6.5, 1.9 * len(axes) + 2.5), 5.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    worst_first = sorted(trials, key=lambda t: t.best if report.mode == "max" else -t.best)
    for t in worst_first:
        values = [t.config.get(k) for k in report.swept] + [t.best]
        heights = [a.place(v) for a, v in zip(axes, values, strict=True)]
        ax.plot(range(len(axes)), heights, color=cmap(norm(t.best)), lw=1.6, alpha=0.85)
    for x, a in enumerate(axes):
        ax.axvline(x, color="0.3", lw=1)
        for height, label in a.ticks:
            ax.text(x - 0.04, height, label, ha="right", va="center", fontsize=8, bbox=LABEL_BOX)
    ax.set_xticks(range(len(axes)), [_wrap(a.name) for a in axes], fontsize=9)
    ax.set_xlim(-0.45, len(axes) - 1 + 0.15)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.tick_params(axis="x", length=0)
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{report.name}: parallel coordinates ({len(trials)} trials with a result)")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(f"{report.metric} (best per trial)")
    return fig


def axis(name: str, values: Sequence[Any], labelled: bool = True) -> Axis:
    """An axis for `values`: numbers by value (log when log-worthy), anything else as evenly
    spaced categories. `labelled`: label each distinct value while there are few of them."""
    if values and all(is_number(v) for v in values):
        log = log_worthy(values)
        scale = (lambda v: math.log10(v)) if log else (lambda v: float(v))
        low, high = scale(min(values)), scale(max(values))

        def place(v: Any) -> float:
            return 0.5 if high == low else (scale(v) - low) / (high - low)

        distinct = sort_values(values)
        if labelled and len(distinct) <= MAX_LABELLED:
            return Axis(name, place, [(place(v), show(v, digits=3)) for v in distinct])
        if high == low:
            return Axis(name, place, [(0.5, show(values[0], digits=3))])
        # the ends, and round numbers between them (decades on a log axis) not too near them
        inner = [
            10**s if log else s
            for s in MaxNLocator(NUMBER_TICKS, integer=log).tick_values(low, high)
            if low <= s <= high
        ]
        ends = [min(values), max(values)]
        marks = ends + [m for m in inner if min(abs(place(m) - place(e)) for e in ends) > 0.08]
        # numpy's floats would show as np.float64(...)
        plain = [m if isinstance(m, int) else float(m) for m in marks]
        return Axis(name, place, [(place(m), show(m, digits=3)) for m in plain])
    categories = sort_values(values)
    at = {value_key(v): i for i, v in enumerate(categories)}
    spacing = max(1, len(categories) - 1)

    def place_category(v: Any) -> float:
        return 0.5 if len(categories) == 1 else at[value_key(v)] / spacing

    every = math.ceil(len(categories) / (2 * MAX_LABELLED))  # thin out a crowd of labels
    ticks = [(place_category(v), show(v)) for v in categories[::every]]
    return Axis(name, place_category, ticks)


def _wrap(name: str) -> str:
    """A dotted key over lines, broken after its dots ("training." / "weight_decay")."""
    return "\n".join(
        textwrap.fill(line, NAME_CHARS, break_long_words=False)
        for line in name.replace(".", ".\n").splitlines()
    )
