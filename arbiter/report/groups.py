"""Seed groups: the trials of a sweep that share every swept value but `training.seed`.

Trials that differ only in their seed, or that repeat one grid point (`sweep.num_samples`), are
draws of one configuration; the step at which a run groks can move by 2x between such draws, so
a configuration is judged by its group (how many grokked, the median step, the spread), not by
any one trial. This module finds the groups and summarises them; it draws nothing.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from arbiter.experiments.trials import ERRORED, FINISHED
from arbiter.report.data import Report, TrialReport, is_number, series, sort_values, value_key

SEED_KEY = "training.seed"


@dataclass
class Group:
    """Trials with the same `config` (every key of the sweep's space but the seed)."""

    config: dict[str, Any]
    trials: list[TrialReport]

    @property
    def grok_steps(self) -> list[int]:
        """steps_to_grok of the trials that grokked, in the group's trial order."""
        return [t.measures["steps_to_grok"] for t in self.trials if "steps_to_grok" in t.measures]

    @property
    def metrics(self) -> list[float]:
        """Each trial's best value of the sweep's metric (the value `ranked` orders by)."""
        return [t.best for t in self.trials if t.best is not None]


def group_keys(report: Report) -> list[str]:
    """The keys that tell groups apart: every key of the space (one with a single value too,
    so that two experiments' groups can be matched on it) except the seed."""
    return [k for k in report.keys if k != SEED_KEY]


def seed_groups(report: Report) -> list[Group]:
    """The report's trials grouped by their values of `group_keys`, in the natural order of
    those values (numbers by size); within a group by seed, then id."""
    keys = group_keys(report)
    rank = {
        k: {
            value_key(v): i
            for i, v in enumerate(sort_values(t.config.get(k) for t in report.trials))
        }
        for k in keys
    }
    groups: dict[tuple[int, ...], Group] = {}
    for t in report.trials:
        where = tuple(rank[k][value_key(t.config.get(k))] for k in keys)
        groups.setdefault(where, Group({k: t.config.get(k) for k in keys}, [])).trials.append(t)
    for group in groups.values():
        group.trials.sort(key=lambda t: (_seed_order(t.config.get(SEED_KEY)), t.id))
    return [groups[where] for where in sorted(groups)]


def group_json(group: Group) -> dict[str, Any]:
    """A group as summary.json holds it. Steps to grok are over the trials that grokked (the
    median of 3 of 5 is the median of those 3; `n_grokked` says how many), the metric over
    the trials that reported it; null where there are none."""
    steps, metrics = group.grok_steps, group.metrics
    return {
        "config": group.config,
        "n": len(group.trials),
        "trials": [t.id for t in group.trials],
        "seeds": [t.config.get(SEED_KEY) for t in group.trials],
        "n_grokked": len(steps),
        "n_running": sum(t.status not in (FINISHED, ERRORED) for t in group.trials),
        "steps_to_grok_median": median_of(steps),
        "steps_to_grok_min": min(steps, default=None),
        "steps_to_grok_max": max(steps, default=None),
        "metric_median": median_of(metrics),
        "metric_min": min(metrics, default=None),
        "metric_max": max(metrics, default=None),
        "phases": dict(Counter(t.phase for t in group.trials if t.phase)),
    }


@dataclass
class Band:
    """A group's curve: at each step, the median, least and largest value over its trials."""

    steps: list[int]
    median: list[float]
    low: list[float]
    high: list[float]


def band(group: Group, key: str = "val/accuracy") -> Band:
    """The group's `key` against step, over its trials.

    Trials may report at different steps, so each is read at every step any of them reported,
    by linear interpolation between its own reports. Past its last report a trial that finished
    (stopped by the scheduler once it grokked, say) counts with its last value; one still
    running or errored counts no further, since its future is unknown.
    """
    curves = [(series(t.rows, key), t.status == FINISHED) for t in group.trials]
    steps = sorted({s for (xs, _), _ in curves for s in xs})
    if not steps:
        return Band([], [], [], [])
    grid = np.array(steps, dtype=float)
    read = np.full((len(curves), len(steps)), np.nan)
    for row, ((xs, ys), finished) in zip(read, curves, strict=True):
        if not xs:
            continue
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        row[inside] = np.interp(grid[inside], xs, ys)
        if finished:
            row[grid > xs[-1]] = ys[-1]
    # every column has a value: its step came from some trial's own reports
    return Band(
        steps,
        np.nanmedian(read, axis=0).tolist(),
        np.nanmin(read, axis=0).tolist(),
        np.nanmax(read, axis=0).tolist(),
    )


def median_of(values: Iterable[float]) -> float | None:
    """The median; a whole number of steps stays an int in the JSON (250, not 250.0)."""
    values = list(values)
    if not values:
        return None
    middle = statistics.median(values)
    whole = all(isinstance(v, int) for v in values) and float(middle).is_integer()
    return int(middle) if whole else middle


def _seed_order(seed: Any) -> tuple[int, Any]:
    return (0, seed) if is_number(seed) else (1, value_key(seed))
