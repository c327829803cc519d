"""Seed groups (`report.groups`), their section of summary.md and summary.json, and
`seed_curves.png`, on trials built from hand-made result rows as Tune writes them.

The sweep of most tests: weight decay 0.1 and 1.0, three seeds each. With 1.0 every seed groks,
at steps 1,200, 2,400 and 1,600 (the seed alone moves the step 2x); with 0.1 none does.
"""

from __future__ import annotations

import json
import statistics

import pytest
from helpers import trial
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from arbiter.report.analysis import analyse
from arbiter.report.analysis_plots import FILES, draw_analysis
from arbiter.report.data import make_report
from arbiter.report.groups import SEED_KEY, band, group_json, seed_groups
from arbiter.report.seed_curves import seed_curves
from arbiter.report.summary import summary_json, summary_markdown

GROKS = {0: 1200, 1: 2400, 2: 1600}  # weight decay 1.0: the step each seed groks at


def run_rows(grok: int | None, steps: int = 3000, every: int = 100) -> list[dict]:
    """Result rows of a run that fits the training set at step 100 and whose validation
    accuracy jumps from 0.2 to 1.0 at `grok` (None: never)."""
    return [
        {
            "step": step,
            "eval_step": step,
            "train/accuracy": 1.0,
            "val/accuracy": 1.0 if grok is not None and step >= grok else 0.2,
            "train/loss": 0.01,
            "val/loss": 0.1 if grok is not None and step >= grok else 3.0,
        }
        for step in range(every, steps + 1, every)
    ]


def body_rows(markdown: str) -> list[list[str]]:
    """The cells of the body rows of the first markdown table in `markdown`."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def seeds_report(tmp_path):
    """The weight decay x seed sweep: t0-t2 weight decay 0.1, t3-t5 weight decay 1.0."""
    trials = [
        trial(
            f"t{i}",
            {"training.weight_decay": wd, SEED_KEY: seed},
            run_rows(GROKS[seed] if wd == 1.0 else None),
        )
        for i, (wd, seed) in enumerate((wd, seed) for wd in (0.1, 1.0) for seed in (0, 1, 2))
    ]
    return make_report(tmp_path / "seeds", "seeds.toml", "val/accuracy", "max", trials)


def test_trials_that_differ_only_in_the_seed_form_one_group(tmp_path):
    groups = seed_groups(seeds_report(tmp_path))
    assert [g.config for g in groups] == [
        {"training.weight_decay": 0.1},
        {"training.weight_decay": 1.0},
    ]  # the seed is left out of a group's configuration
    assert [[t.id for t in g.trials] for g in groups] == [["t0", "t1", "t2"], ["t3", "t4", "t5"]]
    never, always = (group_json(g) for g in groups)
    json.dumps([never, always])  # plain JSON
    assert (never["n"], never["n_grokked"], never["steps_to_grok_median"]) == (3, 0, None)
    assert never["steps_to_grok_min"] is None and never["steps_to_grok_max"] is None
    assert (never["metric_median"], never["metric_min"], never["metric_max"]) == (0.2, 0.2, 0.2)
    assert never["phases"] == {"memorization": 3}
    assert (always["n"], always["n_grokked"], always["n_running"]) == (3, 3, 0)
    assert always["seeds"] == [0, 1, 2] and always["trials"] == ["t3", "t4", "t5"]
    assert always["steps_to_grok_median"] == statistics.median(GROKS.values()) == 1600
    assert (always["steps_to_grok_min"], always["steps_to_grok_max"]) == (1200, 2400)
    assert always["metric_median"] == 1.0


def test_repeats_of_one_point_group_by_their_values_and_count_what_grokked(tmp_path):
    """`sweep.num_samples` repeats a grid point without a seed key; a repeat still running
    counts as running, and steps to grok are over the repeats that grokked."""
    trials = [
        trial("a", {"data.operation": "mul", "model.n_layers": 2}, run_rows(300)),
        trial("b", {"data.operation": "add", "model.n_layers": 10}, run_rows(None)),
        trial("c", {"data.operation": "mul", "model.n_layers": 2}, run_rows(501, every=1)),
        trial("d", {"data.operation": "add", "model.n_layers": 2}, run_rows(700)),
        trial("e", {"data.operation": "mul", "model.n_layers": 2}, run_rows(None, 400), "RUNNING"),
    ]
    report = make_report(tmp_path / "rep", "rep.toml", "val/accuracy", "max", trials)
    groups = seed_groups(report)
    # natural order: "add" before "mul", then 2 before 10 (numbers by size, not as text)
    assert [g.config for g in groups] == [
        {"data.operation": "add", "model.n_layers": 2},
        {"data.operation": "add", "model.n_layers": 10},
        {"data.operation": "mul", "model.n_layers": 2},
    ]
    repeated = group_json(groups[2])
    assert repeated["trials"] == ["a", "c", "e"] and repeated["seeds"] == [None] * 3
    assert (repeated["n"], repeated["n_grokked"], repeated["n_running"]) == (3, 2, 1)
    assert repeated["steps_to_grok_median"] == statistics.median([300, 501]) == 400.5
    assert (repeated["steps_to_grok_min"], repeated["steps_to_grok_max"]) == (300, 501)
    assert (repeated["metric_min"], repeated["metric_max"]) == (0.2, 1.0)


def test_a_group_curve_is_the_median_and_range_over_its_trials(tmp_path):
    groups = seed_groups(seeds_report(tmp_path))
    b = band(groups[1])
    assert b.steps == list(range(100, 3001, 100))
    at = {step: (b.median[i], b.low[i], b.high[i]) for i, step in enumerate(b.steps)}
    assert at[1100] == (0.2, 0.2, 0.2)  # no seed has grokked
    assert at[1200] == (0.2, 0.2, 1.0)  # seed 0 has
    assert at[2000] == (1.0, 0.2, 1.0)  # seeds 0 and 2 have: the median has grokked
    assert at[2400] == (1.0, 1.0, 1.0)


def test_a_group_curve_reads_trials_at_each_others_steps(tmp_path):
    """Trials that report at different steps are interpolated; past its last report a finished
    trial (stopped by the scheduler, say) holds its value, a running one no longer counts."""
    stopped = [{"step": s, "val/accuracy": 1.0 if s >= 200 else 0.0} for s in (100, 200)]
    coarse = [{"step": s, "val/accuracy": s / 1000} for s in (100, 300, 500)]
    running = [{"step": s, "val/accuracy": 0.1} for s in (100, 200, 300, 400)]
    trials = [
        trial("stopped", {"x": 1}, stopped),
        trial("coarse", {"x": 1}, coarse),
        trial("running", {"x": 1}, running, status="RUNNING"),
    ]
    report = make_report(tmp_path / "mix", "mix.toml", "val/accuracy", "max", trials)
    b = band(seed_groups(report)[0])
    assert b.steps == [100, 200, 300, 400, 500]
    assert b.low == pytest.approx([0.0, 0.1, 0.1, 0.1, 0.5])
    assert b.high == pytest.approx([0.1, 1.0, 1.0, 1.0, 1.0])
    # step 200: 1.0, 0.2 (between coarse's 0.1 and 0.3), 0.1; step 500: 1.0 held, 0.5
    assert b.median == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.75])


def test_the_summaries_list_every_group(tmp_path):
    report = seeds_report(tmp_path)
    data = summary_json(report, {})
    assert [g["config"] for g in data["groups"]] == [
        {"training.weight_decay": 0.1},
        {"training.weight_decay": 1.0},
    ]
    assert data["groups"][1]["steps_to_grok_median"] == 1600
    text = summary_markdown(report, {})
    section = text.split("## Seed groups")[1].split("## ")[0]
    assert body_rows(section) == [
        ["0.1", "3", "0/3", "-", "0.2", "memorization 3"],
        ["1.0", "3", "3/3", "1600 (1200-2400)", "1.0", "grokking 3"],
    ]
    assert "Every group has one trial" not in section


def test_a_sweep_without_repeats_says_the_spread_between_seeds_is_unknown(tmp_path):
    trials = [
        trial("t0", {"training.weight_decay": 0.1}, run_rows(None)),
        trial("t1", {"training.weight_decay": 1.0}, run_rows(900)),
    ]
    report = make_report(tmp_path / "one", "one.toml", "val/accuracy", "max", trials)
    section = summary_markdown(report, {}).split("## Seed groups")[1].split("## ")[0]
    assert body_rows(section) == [
        ["0.1", "1", "0/1", "-", "0.2", "memorization 1"],
        ["1.0", "1", "1/1", "900", "1.0", "comprehension 1"],
    ]
    assert "Every group has one trial" in section


def test_seed_curves_draw_each_group_with_its_band(tmp_path):
    report = seeds_report(tmp_path)
    analysis = analyse(report)
    figure = seed_curves(report, analysis.groups)
    ax = figure.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["weight_decay=0.1: 0/3 grokked", "weight_decay=1.0: 3/3 grokked"]
    assert len(ax.collections) == 2  # one min-max band per group
    medians = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert [list(line.get_ydata()) for line in medians] == [band(g).median for g in analysis.groups]
    colours = [to_rgba(line.get_color()) for line in medians]
    assert colours[0] != colours[1]  # one colour per group
    dots = [line for line in ax.get_lines() if list(line.get_xdata()) == [1600]]
    assert len(dots) == 1 and dots[0].get_marker() == "o"  # where the median seed grokked

    plots = draw_analysis(report, analysis, tmp_path)
    assert plots["seed_curves"] == FILES["seed_curves"] == "seed_curves.png"
    png = tmp_path / "seed_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(png).shape[:2] == (600, 1140)  # 9.5 x 5 inches at 120 dpi
