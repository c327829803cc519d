"""A template's trials: its swept points applied to its run settings, each validated up front.

A sweep starts only when every trial is a valid run, so a grid point such as
`dim % n_heads != 0` is an error naming its values before Ray starts, not a crashed trial later.
The same `trial_config` rebuilds a trial's config inside its Tune worker.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from arbiter.config.loading import describe_error, format_key
from arbiter.config.schema import Config
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
    points = template.sweep.points() if template.sweep else [{}]
    trials = []
    for index, overrides in enumerate(points):
        try:
            config = trial_config(base, overrides)
        except InvalidTrial as exc:
            raise ConfigError(source, "sweep.space", f"trial {index} {exc}") from None
        trials.append(Trial(index, overrides, config))
    return trials


class InvalidTrial(ValueError):
    """A point of the space that is not a valid run: `(key=value, ...): key: problem`."""


def trial_config(base: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """The run settings `base` with each dotted key of `overrides` set, validated.

    Raises InvalidTrial, also inside a Tune worker, where Tune may draw a point after the
    up-front check of a seeded sample.
    """
    data = copy.deepcopy(base)
    for dotted, value in overrides.items():
        *tables, field = dotted.split(".")  # swept keys are plain names (see check_sweepable)
        node = data
        for table in tables:
            node = node.setdefault(table, {})
        node[field] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        key, problem = describe_error(exc)
        values = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise InvalidTrial(f"({values}): {format_key(key)}: {problem}") from None
