"""Aim: one run per trial through Ray Tune's AimLoggerCallback, in a repo in the experiment's
aim/ folder (`aim up --repo EXP/aim` shows it), logged at the model's step.
"""

from __future__ import annotations

from typing import Any

from ray.tune.logger.aim import AimLoggerCallback

from arbiter.experiments.location import Location
from arbiter.tune.trackers.rows import tracked

FOLDER = "aim"


def aim_callback(experiment: Location) -> AimLoggerCallback:
    repo = None
    if not experiment.remote:
        repo = experiment.local / FOLDER
        repo.mkdir(parents=True, exist_ok=True)
    return StepAimCallback(repo=str(repo) if repo else None, experiment_name=experiment.name)


class StepAimCallback(AimLoggerCallback):
    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        super().log_trial_result(iteration, trial, tracked(result))
