"""A template's `[sweep.space]`: parsing its axes, and expanding them into trial points.

Pure code that never imports Ray (`tune.search_space` translates it): a list is a grid axis, a
one-key table names a distribution. The expansion follows Ray Tune's basic variant generator
(grid axes multiply, `num_samples` repeats the grid, distributions are drawn per trial), so a dry
run and the validation of every trial before a sweep see the points Tune will run (random draws
are a seeded preview of Tune's own).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from arbiter.errors import KeyProblem

# Distribution name -> names of its arguments, in the order the TOML list gives them.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "choice": (),  # any non-empty list of values
    "uniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "loguniform": ("low", "high"),
    "qloguniform": ("low", "high", "q"),
    "randint": ("low", "high"),  # high is exclusive, as in Ray Tune
    "lograndint": ("low", "high"),
    "normal": ("mean", "sd"),
}
_INTEGER = ("randint", "lograndint")
_LOG = ("loguniform", "qloguniform", "lograndint")


@dataclass(frozen=True)
class Grid:
    """Every value is tried: one trial per value (times the other grid axes)."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "grid[" + ", ".join(map(str, self.values)) + "]"


@dataclass(frozen=True)
class Distribution:
    """One value drawn per trial."""

    kind: str
    args: tuple[Any, ...]

    def describe(self) -> str:
        return f"{self.kind}(" + ", ".join(map(str, self.args)) + ")"

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.args)
        if self.kind == "normal":
            return rng.gauss(*self.args)
        low, high = self.args[0], self.args[1]
        if self.kind in _LOG:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        if self.kind in _INTEGER:
            # Clamped: floats lose integers beyond 2**53, and exp(log(low)) may fall below low.
            return max(low, min(int(value), high - 1))
        if self.kind.startswith("q"):
            q = self.args[2]
            return round(value / q) * q
        return value


Axis = Grid | Distribution


def parse_space(raw: Any, prefix: str = "sweep.space") -> dict[str, Axis]:
    """Parse `[sweep.space]` into axes; a bad entry raises KeyProblem naming its key."""
    if not isinstance(raw, dict):
        raise KeyProblem(
            prefix, 'must be a table of "dotted.key" = [values] or { distribution = [args] }'
        )
    return {key: parse_axis(value, f'{prefix}."{key}"') for key, value in raw.items()}


def parse_axis(value: Any, where: str) -> Axis:
    allowed = ", ".join(DISTRIBUTIONS)
    if isinstance(value, list):
        if not value:
            raise KeyProblem(where, "an empty grid; give at least one value")
        return Grid(tuple(value))
    if not isinstance(value, dict) or len(value) != 1:
        raise KeyProblem(
            where, f"must be a list of grid values or a table with exactly one of: {allowed}"
        )
    ((kind, args),) = value.items()
    if kind not in DISTRIBUTIONS:
        raise KeyProblem(where, f"unknown distribution '{kind}'; allowed: {allowed}")
    if not isinstance(args, list) or not args:
        raise KeyProblem(where, f"{kind} takes a list of arguments")
    if kind == "choice":
        return Distribution(kind, tuple(args))
    names = DISTRIBUTIONS[kind]
    if len(args) != len(names):
        raise KeyProblem(where, f"{kind} takes [{', '.join(names)}], got {len(args)} values")
    numeric = int if kind in _INTEGER else (int, float)
    if any(isinstance(a, bool) or not isinstance(a, numeric) for a in args):
        what = "integers" if kind in _INTEGER else "numbers"
        raise KeyProblem(where, f"{kind} arguments must be {what}, got {args}")
    if not all(_finite(a) for a in args):
        raise KeyProblem(where, f"{kind} arguments must be finite (within float range), got {args}")
    _check_bounds(kind, args, where)
    return Distribution(kind, tuple(args))


def _check_bounds(kind: str, args: list[Any], where: str) -> None:
    if kind == "normal":
        if args[1] <= 0:
            raise KeyProblem(where, f"normal sd must be > 0, got {args[1]}")
        return
    low, high = args[0], args[1]
    if not low < high:
        raise KeyProblem(where, f"{kind} needs low < high, got [{low}, {high}]")
    if not _finite(high - low):
        raise KeyProblem(
            where, f"{kind} range high - low is beyond float range, got [{low}, {high}]"
        )
    if kind in _LOG and low <= 0:
        raise KeyProblem(where, f"{kind} bounds must be > 0, got low = {low}")
    if kind.startswith("q"):
        q = args[2]
        if q <= 0:
            raise KeyProblem(where, f"{kind} step q must be > 0, got {q}")
        if not (_multiple_of(low, q) and _multiple_of(high, q)):
            raise KeyProblem(
                where, f"{kind} needs low and high to be multiples of q = {q}, got [{low}, {high}]"
            )


def _finite(number: float) -> bool:
    """A number that converts to a finite float (TOML integers have no size limit)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _multiple_of(bound: float, q: float) -> bool:
    """Ray Tune's own test for the bounds of a quantized distribution (tune.quniform refuses
    others): `bound / q` is close to a whole number."""
    ratio = bound / q
    return math.isfinite(ratio) and math.isclose(ratio, round(ratio))


def expand(
    axes: dict[str, Axis], strategy: str, num_samples: int, seed: int
) -> list[dict[str, Any]]:
    """The trial points, one dict of dotted key -> value each, in a stable order.

    grid: the cartesian product of the grid axes, repeated num_samples times, with distributions
    drawn for each point. random and optuna: num_samples points, grid axes drawn as choices.
    """
    rng = random.Random(seed)
    if strategy == "grid":
        grid_keys = [k for k, a in axes.items() if isinstance(a, Grid)]
        combos = list(itertools.product(*(axes[k].values for k in grid_keys)))  # type: ignore[union-attr]
    else:
        grid_keys, combos = [], [()]
    points = []
    for _ in range(num_samples):
        for combo in combos:
            fixed = dict(zip(grid_keys, combo, strict=True))
            points.append({k: fixed[k] if k in fixed else _draw(a, rng) for k, a in axes.items()})
    return points


def _draw(axis: Axis, rng: random.Random) -> Any:
    return rng.choice(axis.values) if isinstance(axis, Grid) else axis.sample(rng)
