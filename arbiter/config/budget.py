"""Equal-budget sizing: the value of one size key that brings a trial to a parameter budget.

`[sweep.budget]` compares shapes at one cost: each trial's swept values (its depth, say) are
applied first, then `fit` picks the width (or depth) whose exact parameter count
(`estimate.parameter_count`) lies nearest the budget. The count is plain arithmetic on the
config, so sizing a trial costs microseconds and needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arbiter.config.estimate import parameter_count
from arbiter.config.schema import Budget, Config


@dataclass(frozen=True)
class Fit:
    """The size a trial takes: its `model` keys' new values and the parameters they give."""

    model: dict[str, int]
    params: int


def fit(config: Config, budget: Budget) -> Fit:
    """The size of `budget.derive` (and, for the width, the heads) nearest the budget."""
    if budget.derive == "model.n_layers":
        return _fit_depth(config, budget.params)
    return _fit_width(config, budget.params, budget.head_size)


def derived_keys(budget: Budget) -> list[str]:
    """The keys a budget sets in each trial, as `fit` returns them (dotted)."""
    return ["model.dim", "model.n_heads"] if budget.derive == "model.dim" else ["model.n_layers"]


def _fit_depth(config: Config, target: float) -> Fit:
    # the count is affine in the depth: the first layer's cost, then the same per layer
    one, two = (_count(config, n_layers=n) for n in (1, 2))
    layers = max(1, round((target - one) / (two - one)) + 1)
    return Fit({"n_layers": layers}, _count(config, n_layers=layers))


def _fit_width(config: Config, target: float, head_size: int | None) -> Fit:
    model = config.model
    # the transformer keeps a head size: the width steps by it and the heads follow
    head = (head_size or model.dim // model.n_heads) if model.arch == "transformer" else 1
    below: Fit | None = None
    multiple = 1
    while True:
        size = _width(model.arch, head, multiple)
        here = Fit(size, _count(config, **size))
        if here.params >= target:  # the count grows with the width: the nearest is here or below
            if below is None or here.params - target <= target - below.params:
                return here
            return below
        below, multiple = here, multiple + 1


def _width(arch: str, head: int, multiple: int) -> dict[str, int]:
    if arch == "transformer":
        return {"dim": head * multiple, "n_heads": multiple}
    return {"dim": head * multiple}


def _count(config: Config, **model: Any) -> int:
    """Parameters of `config` with the model's keys `model` changed (unvalidated: arithmetic)."""
    changed = config.model.model_copy(update=model)
    return parameter_count(config.model_copy(update={"model": changed}))
