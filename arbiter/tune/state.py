"""Tune's saved experiment state (readable from another terminal while a sweep runs, and after
it ended) as `experiments.trials.TrialStatus` records, for `status`, `report` and the outcome
of a sweep."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ray.tune import ExperimentAnalysis

from arbiter.experiments.location import Location, reaching
from arbiter.experiments.record import experiment_states
from arbiter.experiments.trials import (
    ERRORED,
    PENDING,
    RUNNING,
    TrialStatus,
    error_line,
    public,
    result_rows,
)


def read_trials(path: Location, metric: str, mode: str) -> list[TrialStatus]:
    """Every trial Tune recorded for the experiment at `path`, in creation order."""
    with reaching(path):
        return _read_trials(path, metric, mode)


def _read_trials(path: Location, metric: str, mode: str) -> list[TrialStatus]:
    if not experiment_states(path.children()):
        return []
    # It warns about every trial that has not reported yet; here that is normal, not news.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = ExperimentAnalysis(path.path, storage_filesystem=path.fs)
    trials = []
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        folder = replace(path, path=trial.path)  # the trial's folder, on the same filesystem
        rows = result_rows(folder)
        values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
        best = (max if mode == "max" else min)(values) if values else None
        trials.append(
            TrialStatus(
                id=trial.trial_id,
                status=_state(trial.status, rows),
                path=folder.uri,
                config=dict(trial.config),
                last=public(rows[-1]) if rows else {},
                best=best,
                error=error_line(folder) if trial.status == ERRORED else None,
            )
        )
    return trials


def _state(saved: str, rows: list[dict[str, Any]]) -> str:
    """Tune saves its state every ~10 s: a trial saved as PENDING that has reported since has
    started (it is running, or was when the sweep was interrupted)."""
    return RUNNING if saved == PENDING and rows else saved
