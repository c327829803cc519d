"""What a tracker logs of a Tune result: the trial's own metrics (not Tune's bookkeeping: its
config, which is the run's parameters, process and paths), at the model's step."""

from __future__ import annotations

from typing import Any

from ray.tune.result import TIMESTEPS_TOTAL

from arbiter.experiments.trials import public


def tracked(result: dict[str, Any]) -> dict[str, Any]:
    # Ray's MLflow and Aim callbacks log a result at its timesteps_total when it has one
    return {**public(result), TIMESTEPS_TOTAL: result["step"]}
