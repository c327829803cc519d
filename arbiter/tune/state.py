"""Tune's saved experiment state (readable from another terminal while a sweep runs, and after
it ended) as `experiments.trials.TrialStatus` records, for `status`, `report` and the outcome
of a sweep."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.tune import ExperimentAnalysis

from arbiter.experiments.trials import (
    ERRORED,
    PENDING,
    RUNNING,
    TrialStatus,
    error_line,
    public,
    result_rows,
)


def read_trials(path: Path, metric: str, mode: str) -> list[TrialStatus]:
    """Every trial Tune recorded for the experiment at `path`, in creation order."""
    if not any(path.glob("experiment_state-*.json")):
        return []
    # It warns about every trial that has not reported yet; here that is normal, not news.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = ExperimentAnalysis(str(path))
    trials = []
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        rows = result_rows(Path(trial.path))
        values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
        best = (max if mode == "max" else min)(values) if values else None
        trials.append(
            TrialStatus(
                id=trial.trial_id,
                status=_state(trial.status, rows),
                path=str(trial.path),
                config=dict(trial.config),
                last=public(rows[-1]) if rows else {},
                best=best,
                error=error_line(Path(trial.path)) if trial.status == ERRORED else None,
            )
        )
    return trials


def _state(saved: str, rows: list[dict[str, Any]]) -> str:
    """Tune saves its state every ~10 s: a trial saved as PENDING that has reported since has
    started (it is running, or was when the sweep was interrupted)."""
    return RUNNING if saved == PENDING and rows else saved
