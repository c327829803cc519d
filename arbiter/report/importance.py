"""Parameter importance: how much of the spread of a sweep's outcome each swept key explains.

The sweep's results become an Optuna study (one trial per trial with the outcome: its swept
values and that outcome), and Optuna's fANOVA evaluator (a random forest of scikit-learn's,
seeded, so the same results give the same numbers) splits the outcome's variance between the
keys: each score is a share, and the scores of one outcome sum to 1. Two outcomes are explained:
the sweep's metric (each trial's best value, the value `data.ranked` orders trials by) and,
among the trials that grokked, steps_to_grok. The seed, when swept, is a key like any other:
its share is the part of the outcome that no configuration decides.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from arbiter.report.data import Report, TrialReport, is_number, log_worthy, sort_values, value_key
from arbiter.ui import show

SEED = 0  # the forest's seed: two reports of the same results must give the same numbers
DIGITS = 4  # a share to 1e-4 is finer than any sweep can tell apart
# outcome -> how to read it off a trial (None: the trial does not have it)
OUTCOMES: dict[str, Callable[[TrialReport], Any]] = {
    "metric": lambda t: t.best,
    "steps_to_grok": lambda t: t.measures.get("steps_to_grok"),
}


@dataclass
class Importance:
    """`scores`: outcome ("metric", "steps_to_grok") -> swept key -> its share, largest first,
    for the outcomes that can be explained; `notes`: one line for each outcome that cannot."""

    scores: dict[str, dict[str, float]]
    notes: list[str]


def importance(report: Report) -> Importance:
    """The importance of every swept key for each outcome of the report's trials."""
    scores: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for outcome, value_of in OUTCOMES.items():
        name = f"{report.metric} (best per trial)" if outcome == "metric" else outcome
        trials = [t for t in report.trials if is_number(value_of(t))]
        values = [float(value_of(t)) for t in trials]
        keys = [k for k in report.keys if len({value_key(t.config.get(k)) for t in trials}) > 1]
        if not trials:
            notes.append(f"{name}: no trial has it yet, so there is nothing to explain.")
        elif len(trials) == 1:
            notes.append(f"{name}: only one trial has it; importance needs at least 2.")
        elif not keys:
            notes.append(
                f"{name}: no swept key takes two or more values among the {len(trials)} trials "
                "that have it, so there is nothing to attribute."
            )
        elif len(set(values)) == 1:
            notes.append(
                f"{name}: all {len(trials)} trials have the same value ({show(values[0])}), "
                "so no key explains a difference."
            )
        else:
            try:
                scores[outcome] = fanova(
                    {k: [t.config.get(k) for t in trials] for k in keys}, values
                )
            except ModuleNotFoundError as exc:  # an install that left Optuna out (deploy/offline)
                if exc.name != "optuna":
                    raise
                notes.append(f"{name}: importance needs Optuna, which is not installed here.")
    return Importance(scores, notes)


def fanova(params: dict[str, list[Any]], values: list[float]) -> dict[str, float]:
    """Each key's share of the variance of `values` by Optuna's fANOVA, largest first.
    `params[key][i]` is trial i's value of the key; every key takes two or more values."""
    import optuna  # a second of imports, paid only when a report is written
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import create_trial

    axes = {key: _axis(column) for key, column in params.items()}
    with _quiet(optuna):
        study = optuna.create_study()  # the direction plays no part in fANOVA
        for i, value in enumerate(values):
            study.add_trial(
                create_trial(
                    params={key: encode(params[key][i]) for key, (_, encode) in axes.items()},
                    distributions={key: distribution for key, (distribution, _) in axes.items()},
                    value=value,
                )
            )
        shares = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=SEED))
    return {key: round(float(share), DIGITS) for key, share in shares.items()}


def _axis(column: list[Any]) -> tuple[Any, Callable[[Any], Any]]:
    """An Optuna distribution for a key's values, and how to write a value in it: numbers on a
    number axis (log when they span more than 10x), anything else as categories named by their
    JSON text (Optuna's categories must be plain scalars; lists are values too)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if all(is_number(v) for v in column):
        low, high, log = min(column), max(column), log_worthy(column)
        if all(isinstance(v, int) for v in column):
            return IntDistribution(low, high, log=log and low >= 1), int
        return FloatDistribution(float(low), float(high), log=log), float
    return CategoricalDistribution([value_key(v) for v in sort_values(column)]), value_key


@contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Optuna logs each study it creates and warns about experimental features; a report prints
    its own two lines and nothing else. Its verbosity is restored after."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
