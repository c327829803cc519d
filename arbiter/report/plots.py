"""The plots of `arbiter report` that show its trials one by one (curves, weight norms, the phase
diagram, the metric against each parameter), drawn with matplotlib. The plots of seed groups and
parallel coordinates are `seed_curves`'s and `parallel_coordinates`'s.

Only `arbiter report` imports this module, so no other command pays for matplotlib. It uses
`matplotlib.figure.Figure` directly rather than pyplot: a figure rendered by the Agg canvas needs
no display and no global backend choice, and nothing outlives the function that drew it.

Per-trial curves are small multiples with shared axes, one panel per trial, so that 4 to 32
trials stay readable and comparable; when two parameters are swept over a full grid the panels
are laid out like the phase diagram (columns: the first parameter, rows: the second, larger
values on top).
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from arbiter.core.grokking import PHASES, THRESHOLD
from arbiter.experiments.trials import ERRORED, FINISHED
from arbiter.report.data import (
    Report,
    TrialReport,
    is_number,
    log_worthy,
    series,
    sort_values,
    value_key,
)
from arbiter.report.style import DPI, colors, step_axis
from arbiter.ui import show

FILES = {
    "grokking": "grokking_curves.png",
    "loss": "loss_curves.png",
    "weight_norm": "weight_norm.png",
    "phase_diagram": "phase_diagram.png",
    "metric_vs_params": "metric_vs_params.png",
    "data": "data_curves.png",
}
TRAIN, VAL = "tab:blue", "tab:orange"
PLATEAU = "0.88"  # light grey: between fitting the training set and generalising
PANEL_W, PANEL_H = 3.1, 2.3  # inches per small-multiples panel
TITLE_CHARS = 36  # characters of a 9-point panel title that fit in a panel's width
MAX_GRID_VALUES = 12  # more distinct values than this per axis: a scatter, not a grid
# Light tints of the Okabe-Ito colour-blind-safe palette, light enough for black text on them.
NO_PHASE = "no results yet"
PHASE_COLOURS = {
    "comprehension": "#8fd6be",  # green: generalises as soon as it fits
    "grokking": "#9fd3f2",  # blue: generalises long after it fits
    "memorization": "#f2cf80",  # orange: fits, never generalises
    "confusion": "#e5b3d1",  # pink: does not even fit
    NO_PHASE: "0.92",
}


def draw_all(report: Report, out: Path) -> dict[str, str]:
    """Draw every plot that applies into `out`; kind -> file name, in reading order."""
    figures: dict[str, Figure] = {
        "grokking": grokking_curves(report),
        "loss": loss_curves(report),
        "weight_norm": weight_norm(report),
    }
    if len(report.swept) == 2:
        figures["phase_diagram"] = phase_diagram(report)
    elif report.swept:
        figures["metric_vs_params"] = metric_vs_params(report)
    if any("tokens_seen" in r for t in report.trials for r in t.rows):
        figures["data"] = data_curves(report)
    for kind, fig in figures.items():
        fig.savefig(out / FILES[kind], dpi=DPI)
    # A report written earlier (while fewer trials had reported) may hold a sweep-wide plot
    # that no longer applies; only this module's own file names are ever removed.
    for kind, name in FILES.items():
        if kind not in figures:
            (out / name).unlink(missing_ok=True)
    return {kind: FILES[kind] for kind in figures}


def grokking_curves(report: Report) -> Figure:
    def draw(ax: Axes, t: TrialReport) -> None:
        _plateau(ax, t)
        ax.plot(*series(t.rows, "train/accuracy"), color=TRAIN, ls="--", lw=1.4)
        ax.plot(*series(t.rows, "val/accuracy"), color=VAL, lw=1.6)
        ax.set_ylim(-0.03, 1.03)
        fit, grok = t.measures.get("steps_to_fit"), t.measures.get("steps_to_grok")
        text = (f"fitted at {fit:,}" if fit is not None else "not fitted") + "\n"
        text += f"grokked at {grok:,}" if grok is not None else "not grokked"
        # upper left: early in training both accuracies are low, so the curves leave it free
        ax.text(
            0.04,
            0.95,
            text,
            transform=ax.transAxes,
            va="top",
            fontsize=7.5,
            color="0.25",
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5},
        )

    legend = [
        Line2D([], [], color=TRAIN, ls="--", label="train accuracy"),
        Line2D([], [], color=VAL, label="validation accuracy"),
        Patch(color=PLATEAU, label="fitted, not yet generalised"),
    ]
    return _small_multiples(
        report, draw, f"{report.name}: grokking curves", "accuracy", legend, log_y=False
    )


def loss_curves(report: Report) -> Figure:
    def draw(ax: Axes, t: TrialReport) -> None:
        _plateau(ax, t)
        ax.plot(*_positive(*series(t.rows, "train/loss")), color=TRAIN, ls="--", lw=1.4)
        ax.plot(*_positive(*series(t.rows, "val/loss")), color=VAL, lw=1.6)

    legend = [
        Line2D([], [], color=TRAIN, ls="--", label="train loss"),
        Line2D([], [], color=VAL, label="validation loss"),
        Patch(color=PLATEAU, label="fitted, not yet generalised"),
    ]
    return _small_multiples(
        report, draw, f"{report.name}: loss curves", "cross-entropy loss (log)", legend, True
    )


def weight_norm(report: Report) -> Figure:
    """Every trial on one axes: weight norms share a scale, and weight decay shows as the gap."""
    trials = [t for t in _ordered(report) if series(t.rows, "weight_norm")[0]]
    labels = _labels(report, trials)
    fig = Figure(figsize=(8.5 if len(trials) <= 16 else 10.5, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for t, color in zip(trials, colors(len(trials)), strict=True):
        steps, norms = series(t.rows, "weight_norm")
        ax.plot(steps, norms, color=color, lw=1.5, label=labels[t.id])
        grok = t.measures.get("steps_to_grok")
        if grok in steps:  # a dot where this trial generalised
            ax.plot(grok, norms[steps.index(grok)], "o", color=color, ms=6, mec="black", mew=0.6)
    _step_axis(ax, report)
    ax.set_xlabel("step (log scale)")
    ax.set_ylabel("L2 norm of all weights")
    ax.set_title(f"{report.name}: weight norm (dot: the step it grokked)")
    ax.grid(True, which="both", alpha=0.25)
    if trials:
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=8,
            ncols=1 if len(trials) <= 16 else 2,
            title="trial",
            title_fontsize=8,
        )
    else:
        _empty(ax)
    return fig


def phase_diagram(report: Report) -> Figure:
    """Liu et al.'s phases over the two swept parameters: each cell of the grid coloured and
    labelled by its phase, with its steps to grok where it got there, or a scatter when the
    values are draws (too many distinct values for a readable grid)."""
    kx, ky = report.swept
    xs = sort_values(t.config.get(kx) for t in report.trials)
    ys = sort_values(t.config.get(ky) for t in report.trials)
    numeric = all(is_number(v) for v in xs + ys)
    if numeric and max(len(xs), len(ys)) > MAX_GRID_VALUES:
        return _phase_scatter(report, kx, ky)
    cells: dict[tuple[int, int], list[TrialReport]] = {}
    x_at = {value_key(v): i for i, v in enumerate(xs)}
    y_at = {value_key(v): i for i, v in enumerate(ys)}
    for t in report.trials:
        where = (y_at[value_key(t.config.get(ky))], x_at[value_key(t.config.get(kx))])
        cells.setdefault(where, []).append(t)
    grid = np.full((len(ys), len(xs)), np.nan)  # index into PHASES; NaN: no results yet
    texts: dict[tuple[int, int], str] = {}
    for where, trials in cells.items():
        # the regime by Liu et al.'s criteria: the most common among repeats (ties: the first)
        phases = Counter(t.phase for t in trials if t.phase)
        common = phases.most_common(1)[0][0] if phases else NO_PHASE
        lines = [common]
        if common != NO_PHASE:
            grid[where] = PHASES.index(common)
        grokked = [t.measures["steps_to_grok"] for t in trials if "steps_to_grok" in t.measures]
        if grokked:
            # repeats of a grid point (num_samples > 1): the median, and how many grokked
            share = f" ({len(grokked)}/{len(trials)})" if len(grokked) < len(trials) else ""
            lines.append(f"{THRESHOLD:.0%} at {statistics.median(grokked):,.0f}{share}")
        elif not all(_ended(t) for t in trials):
            lines.append("running")
        texts[where] = "\n".join(lines)

    fig = Figure(
        figsize=(max(5.5, 1.25 * len(xs) + 3.0), max(4.0, 0.85 * len(ys) + 2.2)),
        dpi=DPI,
        layout="constrained",
    )
    ax = fig.add_subplot()
    ax.imshow(
        np.ma.masked_invalid(grid),
        origin="lower",
        aspect="auto",
        cmap=_phase_cmap(),
        vmin=-0.5,
        vmax=len(PHASES) - 0.5,
        interpolation="nearest",
    )
    for (iy, ix), text in texts.items():
        ax.text(ix, iy, text, ha="center", va="center", fontsize=10)
    ax.set_xticks(range(len(xs)), [show(v) for v in xs])
    ax.set_yticks(range(len(ys)), [show(v) for v in ys])
    ax.set_xlabel(kx)
    ax.set_ylabel(ky)
    reached = f"{THRESHOLD:.0%} at N: validation accuracy >= {THRESHOLD} from step N"
    ax.set_title(f"{report.name}: phases (Liu et al. 2022)\n{reached}")
    _phase_legend(ax, {PHASES[int(i)] for i in grid[~np.isnan(grid)]})
    return fig


def metric_vs_params(report: Report) -> Figure:
    """The experiment's metric at each trial's last report, against each swept parameter."""
    keys = report.swept
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.2 * ncols + 0.4, 3.4 * nrows + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    trials = [t for t in report.trials if t.rows]
    for ax, key in zip(axes, keys, strict=False):
        values = [t.config.get(key) for t in trials]
        x, ticks = _positions(values)
        final = [_last(t, report.metric) for t in trials]
        best = [t.best if t.best is not None else np.nan for t in trials]
        ax.scatter(x, best, s=60, facecolors="none", edgecolors="tab:green", label="best")
        ax.scatter(x, final, s=24, color="tab:purple", zorder=3, label="final")
        if ticks is None:
            if log_worthy(values):
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(ticks)), [show(v) for v in ticks])
        ax.set_xlabel(key)
        ax.grid(True, alpha=0.25)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for row in range(nrows):
        axes[row * ncols].set_ylabel(report.metric)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report.name}: {report.metric} against each swept parameter")
    return fig


def data_curves(report: Report) -> Figure:
    """Token runs: validation loss against the tokens seen and against the epochs they make
    over the distinct training tokens, one line per trial, so that repeated data (epochs > 1,
    Muennighoff et al. 2023) shows where the curves flatten."""
    fig = Figure(figsize=(2 * PANEL_W + 2.4, PANEL_H + 1.4), dpi=DPI, layout="constrained")
    by_tokens, by_epochs = fig.subplots(1, 2, sharey=True)
    trials = [t for t in _ordered(report) if any("tokens_seen" in r for r in t.rows)]
    labels = _labels(report, trials)
    for t, color in zip(trials, colors(len(trials)), strict=True):
        rows = [r for r in t.rows if "tokens_seen" in r and "val/loss" in r]
        loss = [r["val/loss"] for r in rows]
        by_tokens.plot([r["tokens_seen"] for r in rows], loss, color=color, label=labels[t.id])
        by_epochs.plot([r["epochs"] for r in rows], loss, color=color)
    for ax, name in ((by_tokens, "tokens seen"), (by_epochs, "epochs over the training tokens")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # the minor ticks' labels would overlap
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{name} (log scale)", fontsize=9)
        ax.grid(True, which="major", alpha=0.25)
    by_epochs.axvline(1.0, color="0.5", ls=":", lw=1)  # from here on, every token is a repeat
    by_tokens.set_ylabel("validation loss (log)", fontsize=9)
    fig.suptitle(f"{report.name}: validation loss against the data seen", fontsize=12)
    fig.legend(loc="outside lower center", ncols=min(4, len(trials)), fontsize=8, frameon=False)
    return fig


def _small_multiples(
    report: Report,
    draw: Callable[[Axes, TrialReport], None],
    title: str,
    ylabel: str,
    legend: list[Any],
    log_y: bool,
) -> Figure:
    """One panel per trial (shared axes), drawn by `draw`, with one legend for the figure."""
    layout = _layout(report)
    nrows, ncols = len(layout), len(layout[0])
    fig = Figure(
        figsize=(PANEL_W * ncols + 0.6, PANEL_H * nrows + 1.1), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    labels = _labels(report, [t for row in layout for t in row if t is not None])
    for row, panels in zip(axes, layout, strict=True):
        for ax, t in zip(row, panels, strict=True):
            if t is None:
                ax.set_visible(False)
                continue
            _step_axis(ax, report)
            if log_y:
                ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.25)
            # three or more swept values overflow one line into the neighbouring titles
            ax.set_title(
                textwrap.fill(labels[t.id], TITLE_CHARS, break_long_words=False), fontsize=9
            )
            if t.rows:
                draw(ax, t)
            else:
                _empty(ax)
    for column in range(ncols):
        # the lowest panel of each column carries the step axis; shared axes hide the tick
        # labels of the others, and a last row that is not full leaves some columns shorter
        lowest = max(r for r in range(nrows) if layout[r][column] is not None or r == 0)
        axes[lowest, column].xaxis.set_tick_params(labelbottom=True)
        axes[lowest, column].set_xlabel("step (log scale)", fontsize=9)
    fig.suptitle(title, fontsize=12)
    fig.supylabel(ylabel, fontsize=10)
    # below the panels: above them it would collide with the title
    fig.legend(
        handles=legend, loc="outside lower center", ncols=len(legend), fontsize=9, frameon=False
    )
    return fig


def _layout(report: Report) -> list[list[TrialReport | None]]:
    """Panels in rows: a full two-parameter grid as the phase diagram shows it, else the trials
    ordered by their swept values, filling rows of about sqrt(n) panels."""
    trials = _ordered(report)
    if len(report.swept) == 2:
        kx, ky = report.swept
        xs = sort_values(t.config.get(kx) for t in trials)
        ys = sort_values(t.config.get(ky) for t in trials)
        points = {(value_key(t.config.get(kx)), value_key(t.config.get(ky))): t for t in trials}
        if len(points) == len(trials) == len(xs) * len(ys) and len(xs) <= 6:
            return [
                [points[(value_key(x), value_key(y))] for x in xs] for y in reversed(ys)
            ]  # larger values of the second parameter on top, as in the phase diagram
    ncols = min(6, max(1, math.ceil(math.sqrt(len(trials)))))
    rows: list[list[TrialReport | None]] = [
        list(trials[i : i + ncols]) for i in range(0, len(trials), ncols)
    ]
    rows[-1] += [None] * (ncols - len(rows[-1]))
    return rows


def _ordered(report: Report) -> list[TrialReport]:
    """Trials sorted by their swept values (numbers by size), then by id."""
    orders = {
        k: {
            value_key(v): i
            for i, v in enumerate(sort_values(t.config.get(k) for t in report.trials))
        }
        for k in report.swept
    }
    return sorted(
        report.trials,
        key=lambda t: (*(orders[k][value_key(t.config.get(k))] for k in report.swept), t.id),
    )


def _labels(report: Report, trials: Sequence[TrialReport]) -> dict[str, str]:
    """Trial id -> its swept values with short key names ("weight_decay=1, train_fraction=0.3");
    the id where nothing is swept or where two trials share their values (repeats)."""
    short = {k: k.rsplit(".", 1)[-1] for k in report.swept}
    if len(set(short.values())) < len(short):
        short = {k: k for k in report.swept}  # two keys end alike: keep them apart
    labels = {
        t.id: ", ".join(f"{short[k]}={show(t.config.get(k), digits=3)}" for k in report.swept)
        for t in trials
    }
    seen = list(labels.values())
    for t in trials:
        if not labels[t.id]:
            labels[t.id] = t.id
        elif seen.count(labels[t.id]) > 1:
            labels[t.id] += f" ({t.id})"
    return labels


def _step_axis(ax: Axes, report: Report) -> None:
    """The log step axis (`style.step_axis`) over every step the trials reported."""
    step_axis(ax, (r["step"] for t in report.trials for r in t.rows))


def _plateau(ax: Axes, t: TrialReport) -> None:
    """Shade the steps between fitting the training set and generalising (to the last report
    when it has not generalised yet): the memorization plateau grokking is about."""
    fit = t.measures.get("steps_to_fit")
    if fit is None:
        return
    end = t.measures.get("steps_to_grok", t.step)
    if end is not None and end > fit:
        ax.axvspan(fit, end, color=PLATEAU, lw=0, zorder=0)


def _phase_scatter(report: Report, kx: str, ky: str) -> Figure:
    fig = Figure(figsize=(6.5, 5.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for name, colour in PHASE_COLOURS.items():
        trials = [t for t in report.trials if (t.phase or NO_PHASE) == name]
        if trials:
            ax.scatter(
                [t.config[kx] for t in trials],
                [t.config[ky] for t in trials],
                s=60,
                color=colour,
                edgecolors="black",
                linewidths=0.5,
                label=name,
            )
    for key, set_scale in ((kx, ax.set_xscale), (ky, ax.set_yscale)):
        if log_worthy([t.config[key] for t in report.trials]):
            set_scale("log")
    ax.set_xlabel(kx)
    ax.set_ylabel(ky)
    ax.set_title(f"{report.name}: phases (Liu et al. 2022)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.grid(True, alpha=0.25)
    return fig


def _phase_legend(ax: Axes, shown: set[str]) -> None:
    handles = [Patch(color=PHASE_COLOURS[p], label=p) for p in PHASES if p in shown]
    if handles:
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=9,
            title="phase",
            title_fontsize=9,
        )


def _phase_cmap() -> ListedColormap:
    # index i of the map is PHASES[i]; bad: a cell with no results yet
    return ListedColormap([PHASE_COLOURS[p] for p in PHASES]).with_extremes(
        bad=PHASE_COLOURS[NO_PHASE]
    )


def _positions(values: list[Any]) -> tuple[list[float], list[Any] | None]:
    """x positions for config values: the numbers themselves, or the index of each value among
    the sorted distinct ones (then also those values, for the tick labels)."""
    if all(is_number(v) for v in values):
        return [float(v) for v in values], None
    ticks = sort_values(values)
    at = {value_key(v): i for i, v in enumerate(ticks)}
    return [float(at[value_key(v)]) for v in values], ticks


def _positive(steps: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """Points a log axis can show (a loss of exactly 0 cannot be drawn there)."""
    kept = [(s, v) for s, v in zip(steps, values, strict=True) if v > 0]
    return [s for s, _ in kept], [v for _, v in kept]


def _last(t: TrialReport, key: str) -> float:
    value = t.rows[-1].get(key) if t.rows else None
    return float(value) if is_number(value) else np.nan


def _ended(t: TrialReport) -> bool:
    """A trial that will not report again: finished or errored (not running, not pending)."""
    return t.status in (FINISHED, ERRORED)


def _empty(ax: Axes) -> None:
    ax.text(
        0.5, 0.5, "no results yet", transform=ax.transAxes, ha="center", va="center", color="0.5"
    )
