"""`arbiter report`: its data on hand-made rows, its plots, and a report of a real sweep.

The fast tests build trials from hand-made result rows through the same functions the command
uses; the slow ones run a real 2x2 sweep on the session's Ray head (4 logical GPUs) and report
it through the command line, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run, sweep_args, tiny_run, trial
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from arbiter.commands.report import load_report
from arbiter.config.loading import load_config
from arbiter.core.grokking import PHASES, measures_from_rows
from arbiter.experiments.location import Location
from arbiter.experiments.record import RECORD
from arbiter.experiments.trials import result_rows
from arbiter.report.data import (
    make_report,
    one_row_per_step,
    ranked,
    series,
    sort_values,
    swept_keys,
)
from arbiter.report.plots import FILES, draw_all, grokking_curves, phase_diagram
from arbiter.report.summary import summary_json, summary_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def curve(steps: int, fit: int | None, grok: int | None, every: int = 50) -> list[dict]:
    """Result rows of a made-up run: train accuracy reaches 1 at `fit`, validation at `grok`."""
    rows = []
    for step in range(every, steps + every, every):
        train = 1.0 if fit is not None and step >= fit else 0.5 * step / steps
        val = 1.0 if grok is not None and step >= grok else 0.3 * step / steps
        rows.append(
            {
                "step": step,
                "eval_step": step,
                "train/accuracy": train,
                "val/accuracy": val,
                "train/loss": 2.0 - 1.9 * train,
                "val/loss": 3.0 - 2.9 * val,
                "weight_norm": 20.0 + step / 100,
                "lr": 1e-3,
                "grad_norm": 0.5,
                "tokens_per_s": 1e4,
            }
        )
    return rows


def grid_report(tmp_path: Path, cells: dict[tuple[float, float], list[dict]]):
    """A report of a weight_decay x train_fraction grid with the given rows per cell."""
    trials = [
        trial(f"t{i}", {"training.weight_decay": wd, "data.train_fraction": tf}, rows)
        for i, ((wd, tf), rows) in enumerate(cells.items())
    ]
    return make_report(tmp_path / "grid", "grid.toml", "val/accuracy", "max", trials)


# --- the data, on hand-made rows -----------------------------------------------------------


def test_repeated_steps_keep_the_last_row_in_step_order():
    # a trial restarted from its step-100 checkpoint reports 150 and 200 again
    rows = [
        {"step": 50, "v": 1},
        {"step": 100, "v": 2},
        {"step": 150, "v": 3},
        {"step": 200, "v": 4},
        {"step": 150, "v": 5},
        {"step": 200, "v": 6},
        {"step": 250, "v": 7},
        {"no step": True},
    ]
    kept = one_row_per_step(rows)
    assert [(r["step"], r["v"]) for r in kept] == [(50, 1), (100, 2), (150, 5), (200, 6), (250, 7)]
    assert one_row_per_step([]) == []
    assert [r["step"] for r in one_row_per_step([{"step": 9}, {"step": 3}])] == [3, 9]


def test_a_resumed_trial_measures_like_one_that_never_stopped():
    rows = curve(600, fit=200, grok=450)
    resumed = rows[:6] + rows[3:]  # steps 200..300 reported twice
    t = trial("a", {}, resumed)
    assert [r["step"] for r in t.rows] == [r["step"] for r in rows]
    assert (
        t.measures
        == measures_from_rows(rows)
        == {"steps_to_fit": 200, "steps_to_grok": 450, "grok_delay": 250}
    )
    assert (
        t.step == 600
        and t.final["val/accuracy"] == 1.0
        and set(t.final) == {"train/accuracy", "val/accuracy", "train/loss", "val/loss"}
    )


def test_unreached_measures_are_absent_and_series_skip_gaps():
    t = trial("a", {}, curve(300, fit=100, grok=None))
    assert t.measures == {"steps_to_fit": 100}
    rows = [
        {"step": 1, "x": 1.0},
        {"step": 2},
        {"step": 3, "x": math.nan},
        {"step": 4, "x": True},
        {"step": 5, "x": 2},
    ]
    assert series(rows, "x") == ([1, 5], [1.0, 2.0])
    empty = trial("b", {}, [], status="PENDING")
    assert (empty.rows, empty.step, empty.measures, empty.final) == ([], None, {}, {})


def test_swept_keys_are_those_that_vary_in_a_natural_order():
    trials = [
        trial(str(i), {"a": a, "b": 1, "c": c}, [])
        for i, (a, c) in enumerate([(10, "x"), (9, "y"), (0.5, "x")])
    ]
    assert swept_keys(trials, ["a", "b", "c"]) == ["a", "c"]
    assert sort_values([10, 9, 0.5, 9]) == [0.5, 9, 10]
    assert sort_values(["mul", "add", 3, [0.9, 0.98]]) == [3, "add", "mul", [0.9, 0.98]]


def test_ranking_breaks_ties_by_the_earlier_grok(tmp_path):
    report = grid_report(
        tmp_path,
        {
            (0.1, 0.3): curve(600, 200, 550),
            (0.1, 0.5): curve(600, 100, 150),
            (1.0, 0.3): curve(600, 200, None),
            (1.0, 0.5): curve(600, 100, 300),
        },
    )
    assert [t.id for t in ranked(report)] == ["t1", "t3", "t0", "t2"]
    assert ranked(replace(report, mode="min"))[0].id == "t2"


def test_summary_lists_every_trial_with_null_for_unreached(tmp_path):
    report = grid_report(
        tmp_path,
        {
            (0.1, 0.3): curve(600, 200, 550),
            (0.1, 0.5): curve(600, 100, 150),
            (1.0, 0.3): curve(600, 200, None),
            (1.0, 0.5): [],
        },
    )
    plots = {"grokking": "grokking_curves.png", "phase_diagram": "phase_diagram.png"}
    data = summary_json(report, plots)
    json.dumps(data)  # plain JSON
    by_id = {t["id"]: t for t in data["trials"]}
    assert list(by_id) == ["t0", "t1", "t2", "t3"]
    assert by_id["t0"]["steps_to_grok"] == 550 and by_id["t0"]["grok_delay"] == 350
    assert by_id["t2"]["steps_to_fit"] == 200 and by_id["t2"]["steps_to_grok"] is None
    assert by_id["t3"]["step"] is None and by_id["t3"]["final"]["val/accuracy"] is None
    phases = [by_id[t]["phase"] for t in by_id]
    assert phases == ["comprehension", "comprehension", "memorization", None]
    assert data["swept"] == ["data.train_fraction", "training.weight_decay"]
    assert data["best"] == ["t1", "t0", "t2"] and data["plots"] == plots
    text = summary_markdown(report, plots)
    table = [line for line in text.splitlines() if re.match(r"\| t\d ", line)]
    assert [line.split("|")[1].strip() for line in table] == ["t0", "t1", "t2", "t3"]
    assert "| t2 | 0.3 | 1.0 | TERMINATED | 600 | 200 | - | - | memorization |" in text
    assert "](grokking_curves.png)" in text and "](phase_diagram.png)" in text
    assert "1. **t1**" in text and "`training.weight_decay = 0.1`" in text


# --- the plots, on hand-made trials --------------------------------------------------------


def assert_png(path: Path, min_width: int = 400, min_height: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    height, width = imread(path).shape[:2]
    assert min_width <= width <= 4000 and min_height <= height <= 5000, (path, width, height)


def test_two_swept_parameters_draw_a_phase_diagram(tmp_path):
    report = grid_report(
        tmp_path,
        {
            (0.1, 0.3): curve(600, 200, 550),
            (0.1, 0.5): curve(600, 100, 150),
            (1.0, 0.3): curve(600, 200, None),
            (1.0, 0.5): curve(300, 100, None),
        },
    )
    report.trials[3] = replace(report.trials[3], status="RUNNING")
    plots = draw_all(report, tmp_path)
    assert list(plots) == ["grokking", "loss", "weight_norm", "phase_diagram"]
    for name in plots.values():
        assert_png(tmp_path / name)
    assert not (tmp_path / FILES["metric_vs_params"]).exists()
    figure = phase_diagram(report)
    texts = sorted(t.get_text() for t in figure.axes[0].texts)
    # each cell: its phase, then the step it grokked at (a running trial may still grok)
    assert texts == [
        "comprehension\n99% at 150",
        "comprehension\n99% at 550",
        "memorization",
        "memorization\nrunning",
    ]
    # coloured by phase: the cells' values index PHASES, each phase in the legend once
    cells = figure.axes[0].images[0].get_array()
    comprehension, memorization = PHASES.index("comprehension"), PHASES.index("memorization")
    assert cells.tolist() == [[comprehension] * 2, [memorization] * 2]  # rows: weight decay
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["comprehension", "memorization"]


def test_repeats_of_a_grid_point_show_the_median_and_how_many_grokked(tmp_path):
    points = [(1, 1, 200), (1, 1, None), (1, 2, 300), (1, 2, 500), (2, 1, None), (2, 2, 100)]
    trials = [
        trial(f"t{i}", {"a": a, "b": b}, curve(600, 100, grok))
        for i, (a, b, grok) in enumerate(points)
    ]
    report = make_report(tmp_path / "rep", "t.toml", "val/accuracy", "max", trials)
    texts = sorted(t.get_text() for t in phase_diagram(report).axes[0].texts)
    assert texts == [
        "comprehension\n99% at 100",
        "comprehension\n99% at 200 (1/2)",
        "comprehension\n99% at 400",
        "memorization",
    ]
    labels = [ax.get_title() for ax in grokking_curves(report).axes if ax.get_visible()]
    assert "a=1, b=1 (t0)" in labels and len(labels) == 6  # repeats named by their id


def test_one_swept_parameter_draws_the_metric_against_it(tmp_path):
    trials = [
        trial(f"t{i}", {"training.learning_rate": lr}, curve(400, 100, grok))
        for i, (lr, grok) in enumerate([(1e-4, None), (1e-3, 300), (1e-2, 150)])
    ]
    report = make_report(tmp_path / "lr", "lr.toml", "val/accuracy", "max", trials)
    (tmp_path / FILES["phase_diagram"]).write_bytes(b"an older report's")
    plots = draw_all(report, tmp_path)
    assert list(plots) == ["grokking", "loss", "weight_norm", "metric_vs_params"]
    assert_png(tmp_path / FILES["metric_vs_params"])
    assert not (tmp_path / FILES["phase_diagram"]).exists()  # no longer applies: removed
    nothing_swept = make_report(tmp_path / "one", "one.toml", "val/accuracy", "max", trials[:1])
    (tmp_path / "one").mkdir()
    assert list(draw_all(nothing_swept, tmp_path / "one")) == ["grokking", "loss", "weight_norm"]


def test_thirty_two_trials_and_random_draws_stay_readable(tmp_path):
    trials = []
    for i in range(32):  # random draws: every trial has values of its own
        config = {"training.learning_rate": 1e-4 * 1.2**i, "training.weight_decay": 0.05 * (i + 1)}
        trials.append(trial(f"t{i:02d}", config, curve(500, 100, 200 + 10 * i if i % 3 else None)))
    report = make_report(tmp_path / "rnd", "rnd.toml", "val/accuracy", "max", trials)
    assert len(report.swept) == 2  # drawn as a scatter: 32 distinct values per axis
    scatter = phase_diagram(report)
    assert not scatter.axes[0].images and len(scatter.axes[0].collections) == 2
    legend = [t.get_text() for t in scatter.axes[0].get_legend().get_texts()]
    assert legend == ["comprehension", "memorization"]  # one colour per phase present
    curves = grokking_curves(report)
    assert sum(ax.get_visible() for ax in curves.axes) == 32
    for name, fig in (("phase.png", scatter), ("curves.png", curves)):
        fig.savefig(tmp_path / name, dpi=120)
    assert_png(tmp_path / "phase.png")
    assert_png(tmp_path / "curves.png", 1200, 1200)


def test_panel_titles_of_three_swept_keys_fit_their_panels(tmp_path):
    """Every panel is titled with its trial's swept values; with three keys (the Prieto grid)
    one line would run into the next panel's title, so it wraps between values."""
    grid = [
        (loss, dtype, orthograd)
        for loss in ("softmax", "stablemax")
        for dtype in ("fp32", "fp64")
        for orthograd in (False, True)
    ]
    trials = [
        trial(
            f"t{i}",
            {"training.loss": loss, "training.loss_dtype": dtype, "training.orthograd": orthograd},
            curve(400, 100, 300),
        )
        for i, (loss, dtype, orthograd) in enumerate(grid)
    ]
    report = make_report(tmp_path / "three", "three.toml", "val/accuracy", "max", trials)
    fig = grokking_curves(report)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    assert fig.get_suptitle().startswith("three: ")  # the figure's own title stays
    titled = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(titled) == len(grid)
    assert "loss=stablemax" in titled[-1].get_title()
    for ax in titled:
        width = ax.title.get_window_extent(renderer).width
        assert width <= ax.get_window_extent(renderer).width, ax.get_title()


# --- the command line ----------------------------------------------------------------------


def test_unknown_experiment_is_one_line_with_exit_code_2(cli, tmp_path):
    code, out, err = cli("report", "nope", "--storage", tmp_path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "nope: no Arbiter experiment here or under" in err


def test_an_experiment_without_results_says_so_on_one_line(cli, tmp_path, write):
    from arbiter.experiments.record import Record, template_hash
    from arbiter.experiments.storage import new_experiment

    template = write("t.toml", '[sweep.space]\n"training.weight_decay" = [0.1, 1.0]\n')
    config = load_config(template)
    record = Record(str(template), [], template_hash(config), config.model_dump(mode="json"), 0, 1)
    new_experiment(Location.of(tmp_path), "empty", record)
    code, out, err = cli("report", "empty", "--storage", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no trial has reported a result yet" in err
    assert not (tmp_path / "empty" / "report").exists()


# --- a real sweep --------------------------------------------------------------------------

GRID = tiny_run(
    500,
    {
        "training": 'learning_rate = 3e-3\nlr_schedule = "constant"',
        "checkpoint": "interval = 250",
        "sweep": 'metric = "val/accuracy"',
        "sweep.space": '"training.weight_decay" = [0.1, 1.0]\n"data.train_fraction" = [0.3, 0.9]',
    },
)


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory) -> Path:
    """A finished 2x2 sweep (about a minute): with 90% of a + b mod 23 and weight decay 0.1
    validation accuracy reaches 99% around step 400; with 30% no trial generalises."""
    storage = tmp_path_factory.mktemp("report")
    template = storage / "grid.toml"
    template.write_text(textwrap.dedent(GRID))
    done = run(
        *sweep_args(template, gpus=4, address=cluster, storage=storage, name="grid"),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return storage / "grid"


def tune_files(experiment: Path) -> dict[str, str]:
    """Every file of the experiment outside the report folder -> a hash of its bytes."""
    return {
        str(p.relative_to(experiment)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(experiment.rglob("*"))
        if p.is_file() and "report" not in p.relative_to(experiment).parts
    }


@pytest.mark.slow
def test_report_of_a_real_sweep(swept):
    before = tune_files(swept)
    done = run("report", "grid", "--storage", swept.parent)
    assert done.returncode == 0, done.stderr
    out = swept / "report"  # the default
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and str(out / "summary.md") in lines[0]
    for name in ("grokking_curves.png", "loss_curves.png", "weight_norm.png", "phase_diagram.png"):
        assert_png(out / name)
    assert not (out / "metric_vs_params.png").exists()
    assert tune_files(swept) == before  # read-only on Tune's files


@pytest.mark.slow
def test_summary_json_agrees_with_the_trials_rows(swept, tmp_path):
    done = run("report", str(swept), "--out", tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "elsewhere" / "summary.json").read_text())
    status = json.loads(run("status", str(swept), "--json").stdout)["trials"]
    assert [t["id"] for t in data["trials"]] == [t["id"] for t in status]
    assert data["swept"] == ["data.train_fraction", "training.weight_decay"]
    for t, s in zip(data["trials"], status, strict=True):
        measures = measures_from_rows(result_rows(Location.of(s["path"])))
        assert t["steps_to_grok"] == measures.get("steps_to_grok")
        assert t["steps_to_fit"] == measures.get("steps_to_fit")
        assert t["config"] == s["config"] and t["status"] == "TERMINATED" and t["step"] == 500
        assert t["final"]["val/accuracy"] == s["last"]["val/accuracy"]
    assert any(t["steps_to_grok"] for t in data["trials"]), "no trial grokked: weak test"
    assert any(t["steps_to_grok"] is None for t in data["trials"])
    text = (tmp_path / "elsewhere" / "summary.md").read_text()
    for s in status:
        assert sum(line.startswith(f"| {s['id']} |") for line in text.splitlines()) == 1
    assert "![phase_diagram](phase_diagram.png)" in text


@pytest.mark.slow
def test_one_axis_of_the_real_sweep_plots_the_metric_against_it(swept, tmp_path):
    report = load_report(Location.of(swept))
    assert (swept / RECORD).is_file() and len(report.trials) == 4
    one_axis = replace(report, swept=["training.weight_decay"])
    plots = draw_all(one_axis, tmp_path)
    assert "metric_vs_params" in plots and "phase_diagram" not in plots
    assert_png(tmp_path / plots["metric_vs_params"])


def test_token_runs_draw_validation_loss_against_the_data_seen(tmp_path):
    def rows(depth: int) -> list[dict]:
        unique = 10_000  # distinct training tokens: epoch 1 ends at step 40 of 250 tokens
        return [
            {
                "step": s,
                "val/accuracy": 0.1,
                "val/loss": 5.0 / (1 + s / (20 * depth)),
                "train/loss": 4.0,
                "tokens_seen": s * 250,
                "epochs": s * 250 / unique,
                "unique_tokens": unique,
            }
            for s in range(10, 201, 10)
        ]

    trials = [trial(f"t{d}", {"model.n_layers": d}, rows(d)) for d in (2, 8)]
    report = make_report(tmp_path / "tok", "tok.toml", "val/accuracy", "max", trials)
    plots = draw_all(report, tmp_path)
    assert "data" in plots and plots["data"] == FILES["data"] == "data_curves.png"
    assert_png(tmp_path / "data_curves.png")
    modular = make_report(tmp_path / "mod", "m.toml", "val/accuracy", "max", [trial("m", {}, [])])
    (tmp_path / "mod").mkdir()
    assert "data" not in draw_all(modular, tmp_path / "mod")  # only runs on token files
