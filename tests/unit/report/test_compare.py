"""`arbiter report A B --out DIR`: two experiments' seed groups side by side (`report.compare`),
their seed curves in one plot, and the command line's checks.

The fast tests compare reports built from hand-made result rows, and check the command's
refusals on experiments that have a record and no results; the slow one runs two real sweeps
on the session's Ray head and compares them through the command line, as a user would.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import run, sweep_args, tiny_run, trial
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from arbiter.config.loading import load_config
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record, template_hash
from arbiter.experiments.storage import new_experiment
from arbiter.report.compare import compare, comparison_json, comparison_markdown
from arbiter.report.data import make_report
from arbiter.report.seed_curves import compared_seed_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rows(grok: int | None) -> list[dict]:
    """A run that fits at step 100 and generalises at `grok` (None: stays at 0.2)."""
    return [
        {
            "step": s,
            "eval_step": s,
            "train/accuracy": 1.0,
            "val/accuracy": 1.0 if grok is not None and s >= grok else 0.2,
        }
        for s in range(100, 2001, 100)
    ]


def experiment(tmp_path: Path, name: str, points: list[tuple[dict, int | None]]):
    """A report of trials with these swept values (seed included) and grokking steps."""
    trials = [trial(f"{name}{i}", config, rows(grok)) for i, (config, grok) in enumerate(points)]
    return make_report(tmp_path / name, f"{name}.toml", "val/accuracy", "max", trials)


def wd(value, seed):
    return {"training.weight_decay": value, "training.seed": seed}


def test_groups_with_the_same_configuration_line_up(tmp_path):
    """Weight decay 1.0 in one template and 1 in the other is the same configuration."""
    base = experiment(
        tmp_path,
        "base",
        [(wd(0.1, 0), None), (wd(0.1, 1), None), (wd(1.0, 0), 800), (wd(1.0, 1), 1600)],
    )
    fast = experiment(tmp_path, "fast", [(wd(1, 0), 300), (wd(1, 1), 500), (wd(3, 0), 200)])
    comparison = compare(base, fast)
    assert comparison.keys == ["training.weight_decay"]
    assert comparison.rows == [(0, None), (1, 0), (None, 1)]
    data = comparison_json(comparison, {"seed_curves": "seed_curves.png"})
    json.dumps(data)
    assert [(e["name"], e["n_trials"]) for e in data["experiments"]] == [("base", 4), ("fast", 3)]
    base_groups, fast_groups = (e["groups"] for e in data["experiments"])
    assert [(g["config"], g["n"], g["n_grokked"]) for g in base_groups] == [
        ({"training.weight_decay": 0.1}, 2, 0),
        ({"training.weight_decay": 1.0}, 2, 2),
    ]
    assert [g["steps_to_grok_median"] for g in fast_groups] == [400, 200]
    assert data["matched_on"] == ["training.weight_decay"]
    assert data["comparison"] == [
        {"config": {"training.weight_decay": 0.1}, "groups": [0, None]},
        {"config": {"training.weight_decay": 1.0}, "groups": [1, 0]},
        {"config": {"training.weight_decay": 3}, "groups": [None, 1]},
    ]
    text = comparison_markdown(comparison, {"seed_curves": "seed_curves.png"})
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].startswith("| training.weight_decay | base: trials | base: grokked |")
    assert table[2:] == [
        "| 0.1 | 2 | 0/2 | - | 0.2 | memorization 2 | - | - | - | - | - |",
        "| 1.0 | 2 | 2/2 | 1200 (800-1600) | 1.0 | comprehension 1, grokking 1 "
        "| 2 | 2/2 | 400 (300-500) | 1.0 | comprehension 2 |",
        "| 3 | - | - | - | - | - | 1 | 1/1 | 200 | 1.0 | comprehension 1 |",
    ]
    assert "![seed_curves](seed_curves.png)" in text


def test_a_key_only_one_experiment_sweeps_pairs_on_the_shared_keys(tmp_path):
    base = experiment(tmp_path, "base", [(wd(1.0, 0), 800), (wd(1.0, 1), 900)])
    lrs = experiment(
        tmp_path,
        "lrs",
        [({**wd(1.0, 0), "training.learning_rate": lr}, 400) for lr in (1e-3, 1e-2)],
    )
    comparison = compare(base, lrs)
    assert comparison.keys == ["training.weight_decay"]
    assert comparison.rows == [(0, 0), (0, 1)]
    configs = [row["config"] for row in comparison_json(comparison, {})["comparison"]]
    assert configs == [
        {"training.weight_decay": 1.0, "training.learning_rate": 1e-3},
        {"training.weight_decay": 1.0, "training.learning_rate": 1e-2},
    ]


def test_experiments_without_a_shared_key_are_listed_not_matched(tmp_path):
    first = experiment(tmp_path, "a", [({"x": 1}, 100), ({"x": 2}, None)])
    second = experiment(tmp_path, "b", [({"y": "p"}, 100)])
    comparison = compare(first, second)
    assert comparison.keys == [] and comparison.rows == [(0, None), (1, None), (None, 0)]
    assert "share no swept key" in comparison_markdown(comparison, {})


def test_both_experiments_share_one_plot(tmp_path):
    base = experiment(
        tmp_path,
        "base",
        [(wd(0.1, 0), None), (wd(0.1, 1), None), (wd(1.0, 0), 800), (wd(1.0, 1), 1600)],
    )
    fast = experiment(tmp_path, "fast", [(wd(1.0, 0), 300), (wd(1.0, 1), 500)])
    ax = compared_seed_curves(compare(base, fast)).axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert [line.get_linestyle() for line in curves] == ["-", "-", "--"]  # base, base, fast
    # weight decay 1.0 has one colour in both experiments, 0.1 another
    colours = [to_rgba(line.get_color()) for line in curves]
    assert colours[1] == colours[2] != colours[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["weight_decay=0.1", "weight_decay=1.0", "base", "fast"]
    assert len(ax.collections) == 3  # a min-max band per group


# --- the command line ----------------------------------------------------------------------


def empty_experiment(storage: Path, name: str, write) -> None:
    """An experiment with its record and no results yet."""
    template = write(f"{name}.toml", '[sweep.space]\n"training.weight_decay" = [0.1, 1.0]\n')
    config = load_config(template)
    record = Record(str(template), [], template_hash(config), config.model_dump(mode="json"), 0, 1)
    new_experiment(Location.of(storage), name, record)


def test_two_experiments_need_an_out_folder(cli, tmp_path):
    code, out, err = cli("report", "a", "b", "--storage", tmp_path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "comparing two experiments needs --out DIR" in err


def test_a_missing_experiment_stops_the_comparison_before_anything_is_written(cli, tmp_path, write):
    empty_experiment(tmp_path, "a", write)
    folder = tmp_path / "cmp"
    for pair in (("a", "nope"), ("nope", "a")):
        code, out, err = cli("report", *pair, "--out", folder, "--storage", tmp_path)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "nope: no Arbiter experiment here or under" in err
    code, _, err = cli("report", "a", "a", "--out", folder, "--storage", tmp_path)
    assert code == 2 and "compare two different experiments" in err
    empty_experiment(tmp_path, "b", write)
    code, _, err = cli("report", "a", "b", "--out", folder, "--storage", tmp_path)
    assert code == 2 and "a: no trial has reported a result yet" in err
    assert not folder.exists()


# --- two real sweeps -----------------------------------------------------------------------

BASE = tiny_run(
    500,
    {
        "training": 'learning_rate = 3e-3\nlr_schedule = "constant"\nweight_decay = 0.1',
        "checkpoint": "interval = 250",
        "sweep": 'metric = "val/accuracy"',
        "sweep.space": '"data.train_fraction" = [0.3, 0.9]\n"training.seed" = [0, 1]',
    },
)
# the same with weight decay 1.0, on the larger split only
DECAYED = tiny_run(
    500,
    {
        "training": 'learning_rate = 3e-3\nlr_schedule = "constant"\nweight_decay = 1.0',
        "checkpoint": "interval = 250",
        "sweep": 'metric = "val/accuracy"',
        "sweep.space": '"data.train_fraction" = [0.9]\n"training.seed" = [0, 1]',
    },
)


@pytest.fixture(scope="module")
def two_sweeps(cluster, tmp_path_factory) -> Path:
    """Storage with two finished sweeps of a + b mod 23 (2x2 and 1x2 trials, a minute or two).
    With weight decay 0.1 and 90% of the table validation accuracy reaches 99% around step 400,
    with 30% it never does; with weight decay 1.0 even 90% does not get there in 500 steps."""
    storage = tmp_path_factory.mktemp("compare")
    for name, text in (("base", BASE), ("decayed", DECAYED)):
        template = storage / f"{name}.toml"
        template.write_text(textwrap.dedent(text))
        done = run(
            *sweep_args(template, gpus=4, address=cluster, storage=storage, name=name),
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return storage


@pytest.mark.slow
def test_two_real_sweeps_side_by_side(two_sweeps, tmp_path):
    done = run("report", "base", "decayed", "--storage", two_sweeps, "--out", tmp_path / "cmp")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and str(tmp_path / "cmp" / "summary.md") in lines[0]
    data = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert [e["name"] for e in data["experiments"]] == ["base", "decayed"]
    status = {
        name: json.loads(run("status", name, "--storage", two_sweeps, "--json").stdout)["trials"]
        for name in ("base", "decayed")
    }
    for entry in data["experiments"]:
        # every group holds the trials of one train fraction, one per seed
        for group in entry["groups"]:
            members = [
                t
                for t in status[entry["name"]]
                if t["config"]["data.train_fraction"] == group["config"]["data.train_fraction"]
            ]
            assert sorted(group["trials"]) == sorted(t["id"] for t in members)
            assert sorted(group["seeds"]) == [0, 1] and group["n"] == 2
    assert data["matched_on"] == ["data.train_fraction"]
    assert data["comparison"] == [
        {"config": {"data.train_fraction": 0.3}, "groups": [0, None]},
        {"config": {"data.train_fraction": 0.9}, "groups": [1, 0]},
    ]
    base, decayed = (e["groups"] for e in data["experiments"])
    assert base[0]["n_grokked"] == 0 and base[1]["n_grokked"] >= 1 and decayed[0]["n_grokked"] == 0
    text = (tmp_path / "cmp" / "summary.md").read_text()
    assert "matched on the keys both experiments sweep: `data.train_fraction`" in text
    png = tmp_path / "cmp" / "seed_curves.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and imread(png).shape[:2] == (600, 1140)


@pytest.mark.slow
def test_a_real_sweeps_report_has_groups_and_importance(two_sweeps, tmp_path):
    done = run("report", "base", "--storage", two_sweeps, "--out", tmp_path / "one")
    assert done.returncode == 0 and done.stderr == "", done.stderr  # Optuna kept quiet
    data = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert [(g["config"], g["n"]) for g in data["groups"]] == [
        ({"data.train_fraction": 0.3}, 2),
        ({"data.train_fraction": 0.9}, 2),
    ]
    # the train fraction decides whether a run generalises; the seed only moves it a little
    metric = data["importance"]["metric"]
    assert max(metric, key=metric.get) == "data.train_fraction"
    assert sum(metric.values()) == pytest.approx(1.0, abs=1e-3)
    for name in ("seed_curves.png", "parallel_coordinates.png"):
        assert (tmp_path / "one" / name).read_bytes()[:8] == PNG_SIGNATURE
