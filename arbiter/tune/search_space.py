"""A template's axes as a Ray Tune `param_space` (the grammar itself is `config.space`)."""

from __future__ import annotations

from typing import Any

from ray import tune

from arbiter.config.space import Axis, Grid


def to_param_space(axes: dict[str, Axis], strategy: str) -> dict[str, Any]:
    """The Ray Tune `param_space` of the axes: flat dotted keys, as the trials report them.

    grid: lists become `tune.grid_search`; random and optuna: lists become `tune.choice` (Optuna
    cannot search a grid). Distributions map to the Tune sampler of the same name.
    """
    samplers = {
        "choice": lambda *values: tune.choice(list(values)),
        "uniform": tune.uniform,
        "quniform": tune.quniform,
        "loguniform": tune.loguniform,
        "qloguniform": tune.qloguniform,
        "randint": tune.randint,
        "lograndint": tune.lograndint,
        "normal": tune.randn,
    }
    space: dict[str, Any] = {}
    for key, axis in axes.items():
        if isinstance(axis, Grid):
            values = list(axis.values)
            space[key] = tune.grid_search(values) if strategy == "grid" else tune.choice(values)
        else:
            space[key] = samplers[axis.kind](*axis.args)
    return space
