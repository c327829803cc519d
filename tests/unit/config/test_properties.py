"""Property-based tests (hypothesis) of the config loader, the bad-input path of `arbiter validate`
and the search-space translation.

- Random valid templates written as TOML load, dump back to TOML and load to an equal config, and
  have as many trials as the grid product times num_samples.
- Random bytes, wrongly typed values at known keys and unknown keys make `arbiter validate` exit
  with code 2 and one line, never another exception.
- Random valid spaces expand to exactly the grid product, every draw lies within its
  distribution's bounds, and `to_param_space` maps each axis to the matching Ray Tune domain;
  whatever `parse_space` accepts, Ray Tune accepts too.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from arbiter.config.loading import format_key, load_config
from arbiter.config.schema import OPERATIONS, Config
from arbiter.config.space import DISTRIBUTIONS, Distribution, Grid, expand, parse_space
from arbiter.config.trials import plan_trials
from arbiter.errors import KeyProblem
from arbiter.tune.search_space import to_param_space

# The cli and tmp_path fixtures are function-scoped: each example overwrites its one file.
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# --- a tiny TOML writer (tomli_w is not a dependency) ---


def to_toml(data: dict[str, Any]) -> str:
    """Tables as [headers], everything else inline; None (absent in TOML) is left out."""
    lines: list[str] = []

    def table(node: dict[str, Any], path: tuple[str, ...]) -> None:
        scalars = {k: v for k, v in node.items() if v is not None and not isinstance(v, dict)}
        tables = {k: v for k, v in node.items() if isinstance(v, dict)}
        if path and (scalars or not tables):
            lines.append("[" + ".".join(map(toml_key, path)) + "]")
        lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in scalars.items())
        for key, value in tables.items():
            table(value, (*path, key))

    table(data, ())
    return "\n".join(lines) + "\n"


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_value(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr round-trips floats; inf and nan are TOML too
    if isinstance(value, str):
        # A JSON string is a TOML basic string, once DEL (which JSON leaves raw) is escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def test_the_toml_writer_round_trips():
    import tomllib

    data = {
        "a": "\x7f\n\U00010000",
        "b": {"c": [1.5, "x"], "d": {"e": True}, "f": {}},
        "g": {"h.i": {"j": [1]}},
    }
    assert tomllib.loads(to_toml(data)) == data


# --- valid templates ---

FRACTIONS = st.floats(0.01, 0.99)
UNIT = st.floats(0.0, 1.0, exclude_max=True)
PRIMES = [p for p in range(2, 200) if all(p % d for d in range(2, int(p**0.5) + 1))]


def grid_or(values: st.SearchStrategy, *distributions: st.SearchStrategy) -> st.SearchStrategy:
    """A grid of 1-3 `values`, or one of the distributions."""
    return st.one_of(st.lists(values, min_size=1, max_size=3), *distributions)


def between(kind: str, values: st.SearchStrategy) -> st.SearchStrategy:
    """{kind: [low, high]} with low < high, both drawn from `values`."""
    pairs = st.lists(values, min_size=2, max_size=2, unique=True).map(sorted)
    return pairs.map(lambda pair: {kind: pair})


def axes_for(dim: int) -> dict[str, st.SearchStrategy]:
    """Valid axes for the template's sweepable keys; n_heads keeps dim / n_heads even."""
    heads = [h for h in range(1, dim + 1) if dim % h == 0 and (dim // h) % 2 == 0]
    quantized = st.tuples(st.sampled_from([0.05, 0.1]), st.integers(0, 3), st.integers(1, 3))
    return {
        "training.weight_decay": grid_or(
            st.floats(0, 10),
            between("uniform", st.floats(0, 10)),
            between("loguniform", st.floats(1e-4, 10)),
        ),
        "training.learning_rate": grid_or(
            st.floats(1e-6, 1), between("loguniform", st.floats(1e-6, 1))
        ),
        "model.n_layers": grid_or(
            st.integers(1, 8),
            between("randint", st.integers(1, 9)),
            between("lograndint", st.integers(1, 9)),
        ),
        "model.n_heads": st.lists(st.sampled_from(heads), min_size=1, max_size=3),
        "training.seed": grid_or(st.integers(0, 2**31), between("randint", st.integers(0, 2**31))),
        "data.train_fraction": grid_or(FRACTIONS, between("uniform", FRACTIONS)),
        "model.dropout": quantized.map(
            lambda t: {"quniform": [t[0] * t[1], t[0] * (t[1] + t[2]), t[0]]}
        ),
        "training.grokfast_lamb": st.tuples(st.floats(50, 100), st.floats(0.1, 5)).map(
            lambda t: {"normal": list(t)}
        ),
        "model.mlp": grid_or(
            st.sampled_from(["gelu", "swiglu"]), st.just({"choice": ["gelu", "swiglu"]})
        ),
    }


@st.composite
def templates(draw: st.DrawFn) -> dict[str, Any]:
    """A valid template: the divisibility rules and every range respected."""
    n_heads = draw(st.sampled_from([1, 2, 4, 8]))
    dim = n_heads * draw(st.sampled_from([2, 4, 8, 16]))
    steps = draw(st.integers(1, 100_000))
    operation = draw(st.sampled_from(OPERATIONS))
    modulus = draw(st.sampled_from(PRIMES) if operation == "div" else st.integers(2, 500))
    scheduler = draw(st.sampled_from(["fifo", "asha", "median", "grokking"]))
    axes = axes_for(dim)
    swept = draw(st.lists(st.sampled_from(sorted(axes)), max_size=4, unique=True))
    sweep: dict[str, Any] = {
        "strategy": draw(st.sampled_from(["grid", "random"])),
        "num_samples": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 1000)),
        "scheduler": scheduler,
        "space": {key: draw(axes[key]) for key in swept},
    }
    budget = {"asha": "grace_period", "median": "grace_period", "grokking": "fit_budget"}
    if scheduler in budget:
        sweep[scheduler] = {budget[scheduler]: draw(st.integers(1, steps))}
    return {
        "description": draw(st.text(max_size=20)),
        "model": {
            "dim": dim,
            "n_heads": n_heads,
            "n_layers": draw(st.integers(1, 8)),
            "mlp": draw(st.sampled_from(["swiglu", "gelu"])),
            "dropout": draw(st.floats(0, 0.99)),
            "tie_embeddings": draw(st.booleans()),
        },
        "training": {
            "steps": steps,
            "warmup_steps": draw(st.integers(0, steps)),
            "learning_rate": draw(st.floats(1e-6, 1)),
            "weight_decay": draw(st.floats(0, 10)),
            "betas": [draw(UNIT), draw(UNIT)],
            "precision": draw(st.sampled_from(["auto", "bf16", "fp16", "fp32"])),
            "seed": draw(st.integers(0, 2**31)),
            "grokfast_alpha": draw(UNIT),
        },
        "data": {
            "operation": operation,
            "modulus": modulus,
            "train_fraction": draw(st.floats(0, 1, exclude_min=True, exclude_max=True)),
        },
        "sweep": sweep,
    }


def contains(whole: Any, part: Any) -> bool:
    """Whether every leaf of `part` is in `whole` with an equal value (lists compared whole)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and contains(whole[k], v) for k, v in part.items()
        )
    return list(whole) == list(part) if isinstance(part, list | tuple) else whole == part


@PROPERTY
@given(data=templates())
def test_valid_templates_round_trip_and_count_their_trials(tmp_path, data):
    path = tmp_path / "t.toml"
    path.write_text(to_toml(data))
    config = load_config(path)
    dumped = config.model_dump(mode="json")
    assert contains(dumped, data)
    again = tmp_path / "again.toml"
    again.write_text(to_toml(dumped))
    assert load_config(again) == config
    sweep = data["sweep"]
    grids = [len(v) for v in sweep["space"].values() if isinstance(v, list)]
    expected = math.prod(grids) if sweep["strategy"] == "grid" else 1
    assert len(plan_trials(config, str(path))) == expected * sweep["num_samples"]


# --- invalid input: `arbiter validate` says one line and exits with 2 ---


def check_one_line(code: int, out: str, err: str, path: Path) -> str:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"arbiter: error: {path}"), lines[0]
    return lines[0]


@PROPERTY
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
@example(content=b"\xff\xfe")
@example(content=b"model = 3")
@example(content=b'extends = "t.toml"')
@example(content=b"[training]\nsteps = 1e400")
def test_random_files_are_valid_or_one_line_errors(cli, tmp_path, content):
    path = tmp_path / "t.toml"
    path.write_bytes(content)
    code, out, err = cli("validate", path)
    if code == 0:
        assert out.startswith(f"ok  {path}") and err == ""
    else:
        check_one_line(code, out, err, path)


@PROPERTY
@given(text=st.text(max_size=200))
def test_random_text_with_a_broken_table_is_one_line_error(cli, tmp_path, text):
    path = tmp_path / "t.toml"
    path.write_text(text + "\n[model]\nwidth = 1\n")  # invalid TOML, or an unknown key
    check_one_line(*cli("validate", path), path)


def leaf_keys(model: type[BaseModel] = Config, path: tuple[str, ...] = ()):
    """Every (dotted path, annotation) of a plain setting, tables walked into."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        tables = [a for a in typing.get_args(annotation) or (annotation,) if _is_table(a)]
        if tables:
            yield from leaf_keys(tables[0], (*path, name))
        else:
            yield (*path, name), annotation


def _is_table(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


LEAVES = sorted(leaf_keys())
TABLES = sorted({key[:-1] for key, _ in LEAVES} - {("sweep", "space")})
# A string that is no number, no boolean word ("yes", "on", "t") and none of the allowed names.
NONSENSE = st.text("abcdefghij", min_size=1, max_size=8).map(lambda s: "zz" + s)


def wrong_values(key: tuple[str, ...], annotation: Any) -> st.SearchStrategy:
    """Values of a type the setting `key` cannot take."""
    tables = st.dictionaries(NONSENSE, st.integers(), min_size=1, max_size=2)
    if key == ("sweep", "space"):
        return st.one_of(st.integers(), NONSENSE, st.lists(st.integers(), max_size=2))
    if key == ("training", "betas"):
        return st.one_of(tables, NONSENSE, st.lists(NONSENSE, min_size=2, max_size=2))
    lists = st.lists(st.integers(), max_size=2)
    if typing.get_origin(annotation) is list:  # an empty list is a right value: give wrong items
        lists = st.lists(st.integers(), min_size=1, max_size=2)
    if annotation in (str, str | None):
        return st.one_of(tables, lists)
    return st.one_of(tables, lists, NONSENSE)


# The keys a table cannot go without, with a valid value each.
REQUIRED = {("sweep", "stop"): ("threshold", 0.9), ("sweep", "budget"): ("params", 1e6)}


def with_setting(key: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A config that sets `key` (and the key its table needs, as REQUIRED says)."""
    data: dict[str, Any] = {}
    node = data
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value
    required, default = REQUIRED.get(key[:-1], (key[-1], None))
    node.setdefault(required, default)
    return data


@st.composite
def wrongly_typed(draw: st.DrawFn) -> tuple[tuple[str, ...], dict[str, Any]]:
    key, annotation = draw(st.sampled_from(LEAVES))
    return key, with_setting(key, draw(wrong_values(key, annotation)))


@PROPERTY
@given(case=wrongly_typed())
@example(case=(("training", "steps"), {"training": {"steps": "zzmany"}}))
@example(case=(("notify", "on"), {"notify": {"on": [0]}}))
@example(case=(("model", "preset"), {"model": {"preset": {"zza": 0}}}))
def test_wrongly_typed_values_name_their_key(cli, tmp_path, case):
    key, data = case
    path = tmp_path / "t.toml"
    path.write_text(to_toml(data))
    line = check_one_line(*cli("validate", path), path)
    assert line.startswith(f"arbiter: error: {path}: {format_key(key)}"), line


@PROPERTY
@given(
    table=st.sampled_from([(), *TABLES]),
    name=st.from_regex(BARE_KEY, fullmatch=True).filter(lambda s: s != "extends"),
)
@example(table=("model",), name="width")
@example(table=("model",), name="123")
def test_unknown_keys_name_their_key(cli, tmp_path, table, name):
    known = {key[len(table)] for key, _ in LEAVES if key[: len(table)] == table}
    if name in known:
        return
    key = (*table, name)
    path = tmp_path / "t.toml"
    path.write_text(to_toml(with_setting(key, 1)))
    line = check_one_line(*cli("validate", path), path)
    assert f"{path}: {format_key(key)}: unknown key; allowed here:" in line, line


# --- the search space ---

SMALL = st.floats(-1e6, 1e6)
POSITIVE = st.floats(1e-6, 1e6)


@st.composite
def quantized(draw: st.DrawFn, kind: str) -> dict[str, list[float]]:
    q = draw(st.floats(1e-3, 100))
    low = draw(st.integers(1 if kind == "qloguniform" else -1000, 1000))
    return {kind: [low * q, (low + draw(st.integers(1, 1000))) * q, q]}


AXES = st.one_of(
    st.lists(st.one_of(st.integers(), SMALL, st.text(max_size=3)), min_size=1, max_size=4),
    st.lists(st.integers(), min_size=1, max_size=4).map(lambda v: {"choice": v}),
    between("uniform", SMALL),
    between("loguniform", POSITIVE),
    between("randint", st.integers(-(2**62), 2**62)),
    between("lograndint", st.integers(1, 2**62)),
    quantized("quniform"),
    quantized("qloguniform"),
    st.tuples(SMALL, POSITIVE).map(lambda t: {"normal": list(t)}),
)
SPACES = st.dictionaries(st.text("abcxyz.", min_size=1, max_size=5), AXES, max_size=4)


def within(value: Any, axis: Distribution) -> bool:
    """Whether a draw lies within the axis's bounds (floats: up to rounding)."""
    if axis.kind == "choice":
        return value in axis.args
    if axis.kind == "normal":
        return math.isfinite(value)
    low, high = axis.args[0], axis.args[1]
    if axis.kind in ("randint", "lograndint"):
        return isinstance(value, int) and low <= value < high
    slack = 1e-9 * max(abs(low), abs(high), 1e-300)
    return low - slack <= value <= high + slack


@PROPERTY
@given(
    raw=SPACES,
    strategy=st.sampled_from(["grid", "random"]),
    n=st.integers(1, 4),
    seed=st.integers(0, 99),
)
# Was below low: floats lose the integers beyond 2**53 (now clamped to the bounds).
@example(raw={"x": {"randint": [2**60 + 1, 2**60 + 3]}}, strategy="grid", n=4, seed=0)
def test_expand_gives_the_grid_product_and_draws_within_bounds(raw, strategy, n, seed):
    axes = parse_space(raw)
    assert set(axes) == set(raw)
    for key, value in raw.items():
        assert isinstance(axes[key], Grid if isinstance(value, list) else Distribution)
    points = expand(axes, strategy, n, seed)
    grids = {k: a.values for k, a in axes.items() if isinstance(a, Grid)}
    assert len(points) == (math.prod(map(len, grids.values())) if strategy == "grid" else 1) * n
    if strategy == "grid":  # every grid combination, num_samples times, in order
        combos = [tuple(p[k] for k in grids) for p in points]
        assert combos == [c for _ in range(n) for c in itertools.product(*grids.values())]
    for point in points:
        assert set(point) == set(axes)
        for key, axis in axes.items():
            if isinstance(axis, Grid):
                assert point[key] in axis.values
            else:
                assert within(point[key], axis), (key, axis, point[key])


@pytest.fixture(scope="module")
def tune():
    from ray import tune  # the module only; no Ray is started

    return tune


# Ray Tune's domain (class name, sampler name) for each distribution.
TUNE_DOMAINS = {
    "choice": ("Categorical", "Uniform"),
    "uniform": ("Float", "Uniform"),
    "quniform": ("Float", "Uniform"),
    "loguniform": ("Float", "LogUniform"),
    "qloguniform": ("Float", "LogUniform"),
    "randint": ("Integer", "Uniform"),
    "lograndint": ("Integer", "LogUniform"),
    "normal": ("Float", "Normal"),
}


@PROPERTY
@given(raw=SPACES, strategy=st.sampled_from(["grid", "random", "optuna"]))
def test_to_param_space_maps_each_axis_to_its_tune_domain(tune, raw, strategy):
    from ray.tune.search.sample import Categorical, Domain, Quantized

    axes = parse_space(raw)
    space = to_param_space(axes, strategy)
    assert set(space) == set(axes)
    for key, axis in axes.items():
        domain = space[key]
        if isinstance(axis, Grid):
            if strategy == "grid":
                assert domain == {"grid_search": list(axis.values)}
            else:
                assert isinstance(domain, Categorical)
                assert domain.categories == list(axis.values)
            continue
        assert isinstance(domain, Domain)
        sampler = domain.get_sampler()
        if axis.kind.startswith("q"):
            assert isinstance(sampler, Quantized) and sampler.q == axis.args[2]
            sampler = sampler.get_sampler()
        assert (type(domain).__name__, str(sampler)) == TUNE_DOMAINS[axis.kind]
        if axis.kind == "choice":
            assert domain.categories == list(axis.args)
        elif axis.kind == "normal":
            assert (sampler.mean, sampler.sd) == tuple(axis.args)
        else:
            assert (domain.lower, domain.upper) == tuple(axis.args[:2])


NUMBERS = st.one_of(
    st.integers(-(10**20), 10**20), st.floats(), st.sampled_from([0, 1, 10**400, 1e-320])
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(sorted(DISTRIBUTIONS)),
    args=st.lists(NUMBERS, min_size=1, max_size=3),
    seed=st.integers(0, 99),
)
@example(kind="quniform", args=[0.1, 1.0, 0.25], seed=0)  # Ray Tune refused it after Ray started
@example(kind="uniform", args=[0, math.inf], seed=0)
@example(kind="randint", args=[0, 10**400], seed=0)  # was an OverflowError traceback
@example(kind="quniform", args=[0, 1, 1e-320], seed=0)
@example(kind="quniform", args=[-1e308, 1e308, 1e308], seed=0)  # was an OverflowError traceback
@example(kind="uniform", args=[-1e308, 1e308], seed=0)  # drew inf
def test_what_parse_space_accepts_ray_tune_and_expand_accept(tune, kind, args, seed):
    try:
        axes = parse_space({"x": {kind: args}})
    except KeyProblem as exc:
        assert exc.key == 'sweep.space."x"' and "\n" not in exc.problem
        return
    to_param_space(axes, "grid")
    (point,) = expand(axes, "grid", 1, seed)
    if kind != "normal":
        assert within(point["x"], axes["x"])
