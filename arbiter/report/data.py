"""A sweep's trials as the report sees them: one `TrialReport` per trial (its rows one per
step, grokking measures, final metrics, phase) and the `Report` of the whole sweep, with the
helpers that order trials and values. Never imports matplotlib (`plots` draws).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arbiter.core.grokking import measures_from_rows, phase
from arbiter.experiments.location import Location
from arbiter.experiments.trials import TrialStatus

GROK_KEYS = ("steps_to_fit", "steps_to_grok", "grok_delay")
LOG_SPAN = 10  # positive values spanning more than this factor go on a log axis
FINAL_KEYS = ("train/accuracy", "val/accuracy", "train/loss", "val/loss")


@dataclass
class TrialReport:
    """One trial as the report shows it. `rows` are its result rows, one per step."""

    id: str
    status: str
    config: dict[str, Any]
    step: int | None
    measures: dict[str, int]
    final: dict[str, float]
    best: float | None
    error: str | None
    phase: str | None  # Liu et al.'s phase at the last row (None without rows)
    rows: list[dict[str, Any]] = field(repr=False)


@dataclass
class Report:
    """An experiment's trials and what the plots and tables need to know about the sweep."""

    name: str
    path: Location  # the experiment
    template: str
    metric: str
    mode: str
    keys: list[str]  # every key the trials' configs carry (the template's axes)
    swept: list[str]  # those that take more than one value: the plots' axes
    trials: list[TrialReport]
    extends: dict[str, Any] | None = None  # `arbiter extend`: the parent and what changed


def trial_report(status: TrialStatus, rows: Iterable[Mapping[str, Any]]) -> TrialReport:
    """A trial as `arbiter status` reads it, with its result rows (one per step from here on)."""
    rows = one_row_per_step(rows)
    last = rows[-1] if rows else {}
    return TrialReport(
        id=status.id,
        status=status.status,
        config=status.config,
        step=last.get("step"),
        # the run's own measures see every evaluation; rows only those that were reported
        measures={k: last[k] for k in GROK_KEYS if k in last} or measures_from_rows(rows),
        final={k: last[k] for k in FINAL_KEYS if is_number(last.get(k))},
        best=status.best,
        error=status.error,
        phase=phase(rows) if rows else None,
        rows=rows,
    )


def make_report(
    path: Location,
    template: str,
    metric: str,
    mode: str,
    trials: list[TrialReport],
    extends: dict[str, Any] | None = None,
) -> Report:
    keys = sorted({k for t in trials for k in t.config})
    return Report(
        name=path.name,
        path=path,
        template=template,
        metric=metric,
        mode=mode,
        keys=keys,
        swept=swept_keys(trials, keys),
        trials=trials,
        extends=extends,
    )


def one_row_per_step(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows in step order, the last one written for each step.

    A trial restarted from a checkpoint (a worker that died, `arbiter resume`) reports again the
    steps after that checkpoint; the later report is the one its run went on from. Rows without
    a step (none are expected) cannot be placed on a curve and are dropped.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            by_step.pop(step, None)  # re-insert so that dict order does not matter below
            by_step[step] = dict(row)
    return [by_step[s] for s in sorted(by_step)]


def series(rows: Iterable[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the rows that carry it as a finite number."""
    steps, values = [], []
    for row in rows:
        if is_number(row.get(key)):
            steps.append(row["step"])
            values.append(float(row[key]))
    return steps, values


def swept_keys(trials: Iterable[TrialReport], keys: Iterable[str]) -> list[str]:
    """The config keys whose value differs between trials.

    An axis with one value (or a sweep that repeats one point over seeds it does not sweep)
    varies nothing, and a plot along it would be a single column.
    """
    trials = list(trials)
    return [k for k in keys if len({value_key(t.config.get(k)) for t in trials}) > 1]


def value_key(value: Any) -> str:
    """A hashable, comparable stand-in for a config value (lists are values too)."""
    return json.dumps(value, sort_keys=True)


def sort_values(values: Iterable[Any]) -> list[Any]:
    """Distinct config values in a natural order: numbers by size, anything else by its text."""
    distinct = {value_key(v): v for v in values}.values()
    return sorted(distinct, key=lambda v: (0, v, "") if is_number(v) else (1, 0, value_key(v)))


def ranked(report: Report) -> list[TrialReport]:
    """Trials with a result, best first: by the experiment's best metric, then (since many
    grokking runs reach the same accuracy of 1.0) by the earlier grok, then by id."""
    sign = -1 if report.mode == "max" else 1
    scored = [t for t in report.trials if t.best is not None]
    return sorted(
        scored,
        key=lambda t: (sign * t.best, t.measures.get("steps_to_grok", math.inf), t.id),
    )


def is_number(value: Any) -> bool:
    """A finite int or float (bools are ints in Python, but not metric values)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_worthy(values: Iterable[Any]) -> bool:
    """Positive numbers spanning more than LOG_SPAN read better on a log axis (learning rates,
    weight decays): on a linear one all but the largest values crowd at one end."""
    numbers = [v for v in values if is_number(v)]
    return bool(numbers) and min(numbers) > 0 and max(numbers) > LOG_SPAN * min(numbers)
