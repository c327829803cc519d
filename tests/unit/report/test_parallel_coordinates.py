"""`parallel_coordinates.png`: an axis per swept key and one for the metric, a line per trial
coloured by the metric, on trials built from hand-made result rows."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from helpers import trial
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from arbiter.report.analysis import analyse
from arbiter.report.analysis_plots import FILES, draw_analysis
from arbiter.report.data import make_report
from arbiter.report.parallel_coordinates import parallel_coordinates

KEYS = ["training.learning_rate", "training.loss", "training.weight_decay"]


def rows(val: float) -> list[dict]:
    return [{"step": s, "val/accuracy": val, "train/accuracy": 1.0} for s in (100, 200)]


def three_point_report(tmp_path):
    """Three trials, each at the bottom, the middle or the top of every axis: the learning
    rate on a log axis (1e-3 is halfway from 1e-4 to 1e-2), the loss as three evenly spaced
    categories, the weight decay and the metric on linear ones; and one trial without results."""
    points = [
        ("low", 1e-4, "softmax", 0.1, 0.2),
        ("mid", 1e-3, "sparsemax", 0.55, 0.6),
        ("top", 1e-2, "stablemax", 1.0, 1.0),
    ]
    trials = [
        trial(tid, dict(zip(KEYS, (lr, loss, wd), strict=True)), rows(val))
        for tid, lr, loss, wd, val in points
    ]
    trials.append(trial("none", dict(zip(KEYS, (1e-3, "softmax", 0.1), strict=True)), []))
    return make_report(tmp_path / "pc", "pc.toml", "val/accuracy", "max", trials)


def trial_lines(figure) -> list:
    """The trials' lines: those that cross every axis (the axes themselves are vertical)."""
    n_axes = len(figure.axes[0].get_xticks())
    return [
        line for line in figure.axes[0].get_lines() if list(line.get_xdata()) == list(range(n_axes))
    ]


def test_each_trial_is_a_line_across_scaled_axes(tmp_path):
    figure = parallel_coordinates(three_point_report(tmp_path))
    ax, bar = figure.axes  # the plot and its colour bar
    # the names wrap after their dots and between words
    names = [t.get_text().replace(".\n", ".").replace("\n", " ") for t in ax.get_xticklabels()]
    assert names == [*KEYS, "val/accuracy (best per trial)"]
    lines = trial_lines(figure)
    assert len(lines) == 3  # the trial without a result has no line
    # worst first, best on top; each one at the same height on every axis
    heights = [list(line.get_ydata()) for line in lines]
    assert heights == [[0.0] * 4, pytest.approx([0.5] * 4), [1.0] * 4]
    viridis = colormaps["viridis"]
    assert to_rgba(lines[-1].get_color()) == viridis(1.0)  # the best: the bright end
    assert to_rgba(lines[0].get_color()) == viridis(0.0)
    assert bar.get_ylabel() == "val/accuracy (best per trial)"
    # the log axis labels 1e-3 halfway up; the categories in their natural order
    labels = {(round(t.get_position()[0]), t.get_text()): t.get_position()[1] for t in ax.texts}
    assert labels[(0, "0.001")] == 0.5 and labels[(0, "0.0001")] == 0.0
    assert [labels[(1, c)] for c in ("softmax", "sparsemax", "stablemax")] == [0.0, 0.5, 1.0]
    assert ax.get_title().endswith("(3 trials with a result)")


def test_a_metric_to_minimise_keeps_the_best_trial_bright_and_on_top(tmp_path):
    report = replace(three_point_report(tmp_path), mode="min")  # now 0.2 is the best
    lines = trial_lines(parallel_coordinates(report))
    assert list(lines[-1].get_ydata()) == [0.0] * 4
    assert to_rgba(lines[-1].get_color()) == colormaps["viridis"](1.0)


def test_many_drawn_values_get_round_ticks_and_their_ends(tmp_path):
    trials = [
        trial(f"t{i:02d}", {"training.learning_rate": 1e-4 * 1.3**i}, rows(i / 40))
        for i in range(30)
    ]
    report = make_report(tmp_path / "many", "many.toml", "val/accuracy", "max", trials)
    ax = parallel_coordinates(report).axes[0]
    heights = {
        t.get_text(): t.get_position()[1] for t in ax.texts if round(t.get_position()[0]) == 0
    }
    # the ends, 1e-4 and 1e-4 * 1.3**29, and the decades between them, on a log scale
    decades = 29 * math.log10(1.3)
    ends = {"0.0001": 0.0, "0.202": 1.0}
    assert heights == pytest.approx(
        {**ends, "0.001": 1 / decades, "0.01": 2 / decades, "0.1": 3 / decades}
    )


def test_the_plot_is_written_only_where_it_applies(tmp_path):
    report = three_point_report(tmp_path)
    plots = draw_analysis(report, analyse(report), tmp_path)
    assert plots["parallel_coordinates"] == FILES["parallel_coordinates"]
    png = tmp_path / "parallel_coordinates.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(png).shape[:2] == (624, 1212)  # 4 axes: 10.1 x 5.2 inches at 120 dpi
    one = make_report(tmp_path / "one", "one.toml", "val/accuracy", "max", report.trials[:1])
    plots = draw_analysis(one, analyse(one), tmp_path)  # nothing swept: no axes to draw
    assert list(plots) == ["seed_curves"] and not png.exists()  # the older one is removed
