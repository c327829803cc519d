"""A template's trials: its swept points applied to its run settings, each validated up front.

A sweep starts only when every trial is a valid run, so a grid point such as
`dim % n_heads != 0` is an error naming its values before Ray starts, not a crashed trial later.
The same `trial_config` rebuilds a trial's config inside its Tune worker, sized to the sweep's
parameter budget when it has one (`budget.fit`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from arbiter.config.budget import fit
from arbiter.config.loading import describe_error, format_key
from arbiter.config.schema import Budget, Config
from arbiter.errors import ConfigError


@dataclass(frozen=True)
class Trial:
    """One point of the space: its swept values and the full config it runs."""

    index: int
    overrides: dict[str, Any]
    config: Config


def plan_trials(template: Config, source: str) -> list[Trial]:
    """Every trial of `template`; a template without `[sweep]` is a single trial."""
    base = template.run_settings()
    sweep = template.sweep
    points = sweep.points() if sweep else [{}]
    trials = []
    for index, overrides in enumerate(points):
        try:
            config = trial_config(base, overrides, sweep.budget if sweep else None)
        except InvalidTrial as exc:
            raise ConfigError(source, exc.key, f"trial {index} {exc}") from None
        trials.append(Trial(index, overrides, config))
    return trials


class InvalidTrial(ValueError):
    """A point of the space that is not a valid run: `(key=value, ...): key: problem`; `key` is
    the template's key to blame (the space, or the budget it cannot meet)."""

    def __init__(self, message: str, key: str = "sweep.space") -> None:
        super().__init__(message)
        self.key = key


def trial_config(
    base: dict[str, Any], overrides: dict[str, Any], budget: Budget | None = None
) -> Config:
    """The run settings `base` with each dotted key of `overrides` set, then sized to `budget`,
    validated.

    Raises InvalidTrial, also inside a Tune worker, where Tune may draw a point after the
    up-front check of a seeded sample.
    """
    data = copy.deepcopy(base)
    for dotted, value in overrides.items():
        _set(data, dotted, value)
    values = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    config = _validated(data, values)
    if budget is None:
        return config
    size = fit(config, budget)
    off = budget.deviation(size.params)
    if abs(off) > budget.tolerance:
        sizes = ", ".join(f"{k} = {v}" for k, v in size.model.items())
        raise InvalidTrial(
            f"({values}): the nearest size ({sizes}) has {size.params:,} parameters, "
            f"{abs(off):.0%} {'over' if off > 0 else 'under'} the budget of "
            f"{budget.params:,.0f}; allowed: within {budget.tolerance:.0%} (see "
            "sweep.budget.head_size and tolerance)",
            key="sweep.budget",
        )
    for field, value in size.model.items():
        _set(data, f"model.{field}", value)
    return _validated(data, values)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *tables, field = dotted.split(".")  # swept keys are plain names (see check_sweepable)
    node = data
    for table in tables:
        node = node.setdefault(table, {})
    node[field] = value


def _validated(data: dict[str, Any], values: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        key, problem = describe_error(exc)
        raise InvalidTrial(f"({values}): {format_key(key)}: {problem}") from None
