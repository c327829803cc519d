"""`seed_curves.png`: each seed group's validation accuracy against step, the median over its
trials with their min-max band, for one experiment or two side by side.

Per-trial curves mislead when the grokking step moves 2x with the seed: one seed's early grok
looks like a better configuration. The band shows how far the seed alone moves the curve, and the
dot where the group's median trial grokked puts the configurations' typical steps side by side.
With two experiments a configuration keeps its colour in both (matched as in `compare`) and each
experiment has its line style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from arbiter.core.grokking import THRESHOLD
from arbiter.report.compare import Comparison
from arbiter.report.data import Report
from arbiter.report.groups import Group, band, median_of
from arbiter.report.style import DPI, colors, step_axis
from arbiter.ui import show

STYLES = (("-", "o"), ("--", "s"))  # per experiment: line style, marker of the median grok
MAX_LEGEND_ROWS = 16  # more groups than this: a second legend column


@dataclass
class Curve:
    """One group's line: its colour and its experiment's style (line, marker)."""

    group: Group
    color: Any
    style: tuple[str, str]


def seed_curves(report: Report, groups: Sequence[Group]) -> Figure:
    """One experiment: a colour per group, labelled with its values and how many grokked."""
    groups = [g for g in groups if band(g).steps]  # groups with no result yet have no line
    curves = [
        Curve(g, color, STYLES[0]) for g, color in zip(groups, colors(len(groups)), strict=True)
    ]
    legend = [
        Line2D(
            [],
            [],
            color=c.color,
            lw=1.8,
            label=f"{label}: {len(c.group.grok_steps)}/{len(c.group.trials)} grokked",
        )
        for c, label in zip(curves, group_labels([g.config for g in groups]), strict=True)
    ]
    return _draw(f"{report.name}: validation accuracy by seed group", curves, legend)


def compared_seed_curves(comparison: Comparison) -> Figure:
    """Two experiments: a colour per row of the comparison, a line style per experiment."""
    configs = [comparison.config(row) for row in comparison.rows]
    palette = colors(len(configs))
    curves: list[Curve] = []
    drawn: set[tuple[int, int]] = set()  # a group in two rows (one-to-many) is drawn once
    for row, color in zip(comparison.rows, palette, strict=True):
        for side, index in enumerate(row):
            if index is None or (side, index) in drawn:
                continue
            drawn.add((side, index))
            curves.append(Curve(comparison.groups[side][index], color, STYLES[side]))
    names = comparison.names()
    # the legend: a colour per configuration, then a line style per experiment
    legend: list[Artist] = [
        Patch(color=color, label=label)
        for color, label in zip(palette, group_labels(configs), strict=True)
    ]
    legend += [
        Line2D([], [], color="0.2", ls=line, marker=marker, label=name)
        for name, (line, marker) in zip(names, STYLES, strict=True)
    ]
    title = f"{names[0]} and {names[1]}: validation accuracy by seed group"
    return _draw(title, curves, legend)


def group_labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Each configuration as "weight_decay=1, train_fraction=0.3": short key names where they
    stay apart, only the keys whose values differ between the configurations shown."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    keys = [k for k in keys if len({show(c.get(k)) for c in configs}) > 1] or keys
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    if len(set(short.values())) < len(short):
        short = {k: k for k in keys}  # two keys end alike: keep them apart
    return [
        ", ".join(f"{short[k]}={show(c[k], digits=3)}" for k in keys if k in c) or "all trials"
        for c in configs
    ]


def _draw(title: str, curves: list[Curve], legend: Sequence[Artist]) -> Figure:
    fig = Figure(figsize=(9.5, 5.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    every_step: list[int] = []
    for curve in curves:
        line, marker = curve.style
        b = band(curve.group)
        shown = [i for i, s in enumerate(b.steps) if s > 0]  # a log axis has no step 0
        steps = [b.steps[i] for i in shown]
        every_step += steps
        if not steps:
            continue
        low, high = [b.low[i] for i in shown], [b.high[i] for i in shown]
        ax.fill_between(steps, low, high, color=curve.color, alpha=0.18, lw=0)
        median = [b.median[i] for i in shown]
        ax.plot(steps, median, color=curve.color, ls=line, lw=1.8)
        grok = median_of(curve.group.grok_steps)
        if grok is not None and grok > 0:  # where the group's median grokking trial got there
            ax.plot(grok, THRESHOLD, marker, color=curve.color, ms=7, mec="black", mew=0.6)
    ax.axhline(THRESHOLD, color="0.5", ls=":", lw=1)
    step_axis(ax, every_step)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("step (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(
        f"{title}\nline: median over the group's trials; band: min to max; "
        f"dot: median step to {THRESHOLD:.0%}",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.25)
    if legend:
        ax.legend(
            handles=list(legend),
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=8,
            ncols=1 if len(legend) <= MAX_LEGEND_ROWS else 2,
            title="group",
            title_fontsize=8,
        )
    return fig
