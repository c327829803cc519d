"""`[sweep.space]`: parsing axes and distributions, and expanding them into trial points."""

from __future__ import annotations

import math
import random

import pytest

from arbiter.config.space import Distribution, Grid, expand, parse_axis, parse_space
from arbiter.errors import KeyProblem


def test_lists_are_grids_and_tables_are_distributions():
    axes = parse_space({"a.x": [1, 2], "a.y": {"loguniform": [1e-4, 1e-2]}})
    assert axes["a.x"] == Grid((1, 2))
    assert axes["a.y"] == Distribution("loguniform", (1e-4, 1e-2))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([], "empty grid"),
        (3, "list of grid values or a table"),
        ({"uniform": [0, 1], "choice": [1]}, "exactly one"),
        ({"gaussian": [0, 1]}, "unknown distribution 'gaussian'; allowed: choice, uniform"),
        ({"choice": []}, "takes a list"),
        ({"uniform": [0, 1, 2]}, "takes [low, high], got 3"),
        ({"uniform": [1, 0]}, "low < high"),
        ({"uniform": ["a", "b"]}, "must be numbers"),
        ({"uniform": [True, 2]}, "must be numbers"),
        ({"loguniform": [0, 1]}, "must be > 0"),
        ({"qloguniform": [1, 10, 0]}, "step q must be > 0"),
        ({"randint": [0.5, 4]}, "must be integers"),
        ({"lograndint": [0, 4]}, "must be > 0"),
        ({"normal": [0, 0]}, "sd must be > 0"),
    ],
)
def test_invalid_axes_name_their_key(value, words):
    with pytest.raises(KeyProblem) as info:
        parse_axis(value, 'sweep.space."training.x"')
    assert info.value.key == 'sweep.space."training.x"'
    assert words in info.value.problem


def test_grid_multiplies_and_num_samples_repeats():
    axes = parse_space({"a": [1, 2, 3], "b": ["x", "y"], "c": {"uniform": [0.0, 1.0]}})
    points = expand(axes, "grid", num_samples=2, seed=0)
    assert len(points) == 3 * 2 * 2
    assert {(p["a"], p["b"]) for p in points} == {(a, b) for a in (1, 2, 3) for b in "xy"}
    assert len({p["c"] for p in points}) == len(points)  # drawn afresh for every trial


def test_random_strategy_draws_every_axis():
    axes = parse_space({"a": [1, 2, 3], "b": {"randint": [0, 5]}})
    points = expand(axes, "random", num_samples=50, seed=1)
    assert len(points) == 50
    assert {p["a"] for p in points} == {1, 2, 3}
    assert {p["b"] for p in points} <= set(range(5))


def test_expansion_is_seeded():
    axes = parse_space({"a": {"uniform": [0, 1]}})
    assert expand(axes, "grid", 3, seed=4) == expand(axes, "grid", 3, seed=4)
    assert expand(axes, "grid", 3, seed=4) != expand(axes, "grid", 3, seed=5)


def test_samples_respect_their_distribution():
    rng = random.Random(0)
    draws = {
        kind: [Distribution(kind, args).sample(rng) for _ in range(500)]
        for kind, args in {
            "uniform": (2.0, 3.0),
            "quniform": (0.0, 1.0, 0.25),
            "loguniform": (1e-4, 1e-1),
            "qloguniform": (1.0, 100.0, 5.0),
            "randint": (3, 6),
            "lograndint": (1, 1000),
            "normal": (10.0, 0.1),
            "choice": ("a", "b"),
        }.items()
    }
    assert all(2.0 <= v < 3.0 for v in draws["uniform"])
    assert set(draws["quniform"]) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert all(1e-4 <= v <= 1e-1 for v in draws["loguniform"])
    # log-uniform: about a third of the draws in each decade
    assert 100 < sum(v < 1e-3 for v in draws["loguniform"]) < 235
    assert all(v % 5 == 0 for v in draws["qloguniform"])
    assert set(draws["randint"]) == {3, 4, 5}  # high is exclusive
    assert all(isinstance(v, int) and 1 <= v < 1000 for v in draws["lograndint"])
    assert math.isclose(sum(draws["normal"]) / 500, 10.0, abs_tol=0.05)
    assert set(draws["choice"]) == {"a", "b"}


def test_empty_space_is_one_trial():
    assert expand({}, "grid", 1, 0) == [{}]
    assert expand({}, "random", 3, 0) == [{}, {}, {}]
