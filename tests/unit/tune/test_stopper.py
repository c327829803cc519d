"""The stop rule `[sweep.stop]`: a target held for k distinct evaluations."""

from __future__ import annotations

from arbiter.tune.stopper import HeldTarget


def feed(rule: HeldTarget, rows: list[tuple[int, float]]) -> list[bool]:
    return [rule("t", {"eval_step": step, "val/accuracy": value}) for step, value in rows]


def test_reports_of_one_evaluation_count_once():
    rule = HeldTarget("val/accuracy", 0.99, patience=2, mode="max")
    assert feed(rule, [(100, 1.0), (100, 1.0), (100, 1.0), (200, 1.0)]) == [
        False,
        False,
        False,
        True,
    ]


def test_a_miss_resets_the_streak_and_mode_min_reverses_the_target():
    rule = HeldTarget("val/accuracy", 0.99, patience=2, mode="max")
    assert feed(rule, [(100, 1.0), (200, 0.5), (300, 1.0), (400, 1.0)]) == [
        False,
        False,
        False,
        True,
    ]
    loss = HeldTarget("val/loss", 0.1, patience=1, mode="min")
    assert not loss("t", {"eval_step": 1, "val/loss": 0.2})
    assert loss("t", {"eval_step": 2, "val/loss": 0.05})


def test_a_trial_that_went_back_to_a_checkpoint_counts_anew():
    rule = HeldTarget("val/accuracy", 0.99, patience=3, mode="max")
    # two evaluations at the target, then a retry from the checkpoint at step 100: the
    # re-run evaluations at 200 and 300 are not new ones stacked on the old streak
    assert feed(rule, [(200, 1.0), (300, 1.0), (200, 1.0), (300, 1.0), (400, 1.0)]) == [
        False,
        False,
        False,
        False,
        True,
    ]


def test_rows_without_the_metric_or_an_evaluation_never_stop():
    rule = HeldTarget("val/accuracy", 0.0, patience=1, mode="max")
    assert not rule("t", {"step": 10})
    assert not rule("t", {"eval_step": 10})
