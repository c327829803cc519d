"""Parameter importance (`report.importance`): Optuna's fANOVA over a study built from the
trials, on sweeps whose deciding key is known, and its section of the summaries.

The sweep of most tests: the loss (categorical) decides whether a run generalises (StableMax
does, softmax stays at 0.3), the learning rate (a log axis) how soon (1e-2 at step ~500, 1e-4 at
~2,000), and Adam's betas (lists) nothing; three seeds each add a little noise.
"""

from __future__ import annotations

import json
import sys
import warnings

import optuna
import pytest
from helpers import trial

from arbiter.report.data import make_report
from arbiter.report.importance import fanova, importance
from arbiter.report.summary import summary_json, summary_markdown


def rows(val: float, grok: int | None = None, steps: int = 3000) -> list[dict]:
    """A run's result rows: validation accuracy `val` until `grok`, 1.0 from there."""
    return [
        {
            "step": step,
            "eval_step": step,
            "train/accuracy": 1.0,
            "val/accuracy": 1.0 if grok is not None and step >= grok else val,
        }
        for step in range(100, steps + 1, 100)
    ]


def decided_report(tmp_path):
    trials = []
    for loss in ("softmax", "stablemax"):
        for lr in (1e-4, 1e-2):
            for betas in ([0.9, 0.98], [0.9, 0.999]):
                for seed in (0, 1, 2):
                    grok = (500 if lr == 1e-2 else 2000) + 100 * seed
                    config = {
                        "training.loss": loss,
                        "training.learning_rate": lr,
                        "training.betas": betas,
                        "training.seed": seed,
                    }
                    run = rows(0.3 + 0.01 * seed, grok if loss == "stablemax" else None)
                    trials.append(trial(f"t{len(trials):02d}", config, run))
    return make_report(tmp_path / "imp", "imp.toml", "val/accuracy", "max", trials)


def test_the_key_that_decides_each_outcome_is_the_most_important(tmp_path):
    result = importance(decided_report(tmp_path))
    assert list(result.scores) == ["metric", "steps_to_grok"] and result.notes == []
    metric, steps = result.scores["metric"], result.scores["steps_to_grok"]
    assert max(metric, key=metric.get) == "training.loss"
    assert set(metric) == {
        "training.loss",
        "training.learning_rate",
        "training.betas",
        "training.seed",
    }
    # only StableMax trials grok: the loss takes one value among them and is left out
    assert max(steps, key=steps.get) == "training.learning_rate"
    assert set(steps) == {"training.learning_rate", "training.betas", "training.seed"}
    for scores in (metric, steps):
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
        assert list(scores.values()) == sorted(scores.values(), reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_importance_is_reproducible(tmp_path):
    report = decided_report(tmp_path)
    assert importance(report).scores == importance(report).scores


def test_numbers_on_an_int_axis_and_a_single_deciding_key(tmp_path):
    """Depth (ints) decides the outcome; the width takes values that do not matter."""
    params = {
        "model.n_layers": [2, 4, 8, 16] * 3,
        "model.dim": [32] * 4 + [64] * 4 + [128] * 4,
    }
    values = [0.1 * depth for depth in params["model.n_layers"]]
    scores = fanova(params, values)
    assert list(scores)[0] == "model.n_layers" and scores["model.n_layers"] > 0.9


def test_importance_writes_nothing_and_restores_optunas_verbosity(tmp_path, capfd):
    report = decided_report(tmp_path)
    capfd.readouterr()
    before = optuna.logging.get_verbosity()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importance(report)
    assert capfd.readouterr() == ("", "")
    assert [str(w.message) for w in caught] == []
    assert optuna.logging.get_verbosity() == before


def test_the_summaries_hold_the_importance(tmp_path):
    report = decided_report(tmp_path)
    data = summary_json(report, {})
    json.dumps(data)  # plain JSON: floats, not numpy's
    assert data["importance"] == importance(report).scores
    section = summary_markdown(report, {}).split("## Parameter importance")[1].split("## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[0] == "| key | val/accuracy (best per trial) | steps_to_grok |"
    assert lines[2].startswith("| training.loss | ")  # the largest share of the metric first
    assert len(lines) == 2 + 4  # header, separator, one row per key


def test_fewer_than_two_trials_with_a_result_give_no_importance(tmp_path):
    trials = [
        trial("t0", {"training.weight_decay": 0.1}, rows(0.3)),
        trial("t1", {"training.weight_decay": 1.0}, [], status="PENDING"),
    ]
    report = make_report(tmp_path / "few", "few.toml", "val/accuracy", "max", trials)
    assert importance(report).scores == {} and summary_json(report, {})["importance"] == {}
    section = summary_markdown(report, {}).split("## Parameter importance")[1].split("## ")[0]
    said = [line for line in section.splitlines() if line.strip()]
    assert said == [
        "No parameter importance: val/accuracy (best per trial): only one trial has it; "
        "importance needs at least 2."
    ]


def test_repeats_of_one_point_have_no_key_to_attribute_to(tmp_path):
    trials = [trial(f"t{i}", {"training.weight_decay": 1.0}, rows(0.3 + i / 10)) for i in range(3)]
    report = make_report(tmp_path / "same", "same.toml", "val/accuracy", "max", trials)
    result = importance(report)
    assert result.scores == {}
    assert "no swept key takes two or more values among the 3 trials" in result.notes[0]


def test_a_metric_every_trial_reaches_leaves_steps_to_grok_to_explain(tmp_path):
    """Every run reaches accuracy 1.0 (common in grokking): the metric cannot tell the weight
    decays apart, the step at which they got there can."""
    trials = [
        trial(f"t{i}", {"training.weight_decay": wd, "training.seed": seed}, rows(0.3, grok))
        for i, (wd, seed, grok) in enumerate(
            [(0.1, 0, 2500), (0.1, 1, 2700), (1.0, 0, 600), (1.0, 1, 700)]
        )
    ]
    report = make_report(tmp_path / "all", "all.toml", "val/accuracy", "max", trials)
    result = importance(report)
    assert list(result.scores) == ["steps_to_grok"]
    steps = result.scores["steps_to_grok"]
    assert max(steps, key=steps.get) == "training.weight_decay"
    assert result.notes == [
        "val/accuracy (best per trial): all 4 trials have the same value (1.0), so no key "
        "explains a difference."
    ]


def test_without_optuna_the_report_says_so_instead_of_importance(tmp_path, monkeypatch):
    """An install that left Optuna out (deploy/offline/wheels.py --leave-out optuna)."""
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails as if not installed
    report = decided_report(tmp_path)
    result = importance(report)
    assert result.scores == {}
    assert result.notes == [
        "val/accuracy (best per trial): importance needs Optuna, which is not installed here.",
        "steps_to_grok: importance needs Optuna, which is not installed here.",
    ]
    assert "importance needs Optuna" in summary_markdown(report, {})
