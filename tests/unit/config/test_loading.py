"""TOML loading: extends chains, deep merge, --set overrides and error lines that name the file."""

from __future__ import annotations

import pytest

from arbiter.config.loading import format_key, load_config, parse_set, split_key
from arbiter.errors import ConfigError


def test_extends_merges_tables_child_wins(write):
    write(
        "base.toml",
        """
        [training]
        steps = 100
        learning_rate = 0.01
        [checkpoint]
        interval = 7
    """,
    )
    child = write(
        "child.toml",
        """
        extends = "base.toml"
        [training]
        steps = 200
    """,
    )
    config = load_config(child)
    assert config.training.steps == 200  # child wins
    assert config.training.learning_rate == 0.01  # kept from base: tables merge, not replace
    assert config.checkpoint.interval == 7


def test_extends_chain_is_resolved_next_to_each_file(write):
    write("deep/a.toml", "[training]\nsteps = 5\nwarmup_steps = 1\n")
    write("deep/b.toml", 'extends = "a.toml"\n[training]\nseed = 3\n')
    top = write("c.toml", 'extends = "deep/b.toml"\n[model]\ndim = 64\n')
    config = load_config(top)
    assert (config.training.steps, config.training.seed, config.model.dim) == (5, 3, 64)


def test_child_distribution_replaces_base_axis_whole(write):
    write(
        "base.toml",
        """
        [sweep.space]
        "training.learning_rate" = { loguniform = [1e-4, 1e-2] }
        "training.seed" = [0, 1]
    """,
    )
    child = write(
        "child.toml",
        """
        extends = "base.toml"
        [sweep.space]
        "training.learning_rate" = { uniform = [1e-4, 1e-2] }
    """,
    )
    space = load_config(child).sweep.space
    assert space["training.learning_rate"] == {"uniform": [1e-4, 1e-2]}
    assert space["training.seed"] == [0, 1]


def test_cyclic_and_missing_extends(write):
    write("a.toml", 'extends = "b.toml"\n')
    b = write("b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError, match=r"/a.toml: extends: cycle: b.toml -> a.toml -> b.toml"):
        load_config(b)
    self_loop = write("self.toml", 'extends = "self.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(self_loop)
    lonely = write("lonely.toml", 'extends = "nowhere.toml"\n')
    with pytest.raises(ConfigError, match=r"lonely.toml: extends: 'nowhere.toml' not found"):
        load_config(lonely)


def test_error_names_the_file_the_bad_key_came_from(write):
    write("base.toml", "[training]\nsteps = -5\n")
    child = write("child.toml", 'extends = "base.toml"\n[model]\ndim = 64\n')
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert info.value.source.endswith("base.toml")
    assert info.value.key == "training.steps"
    assert "greater than 0" in info.value.problem and "-5" in info.value.problem


def test_unknown_key_lists_allowed_keys(write):
    path = write("x.toml", "[training]\nlr = 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "training.lr"
    assert "unknown key" in info.value.problem and "learning_rate" in info.value.problem


def test_bad_toml_names_file_and_position(write):
    path = write("broken.toml", "[training\nsteps = 1\n")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML: .*line 1"):
        load_config(path)


@pytest.mark.parametrize(
    ("assignment", "key", "value"),
    [
        ("training.weight_decay=0.5", ("training", "weight_decay"), 0.5),
        ("training.steps=100", ("training", "steps"), 100),
        ("training.precision=bf16", ("training", "precision"), "bf16"),
        ('data.operation="x^2+y^2"', ("data", "operation"), "x^2+y^2"),
        ("data.operation=x^2+y^2", ("data", "operation"), "x^2+y^2"),
        ("training.betas=[0.9, 0.95]", ("training", "betas"), [0.9, 0.95]),
        ("model.tie_embeddings=true", ("model", "tie_embeddings"), True),
        ('sweep.space."training.seed"=[1, 2]', ("sweep", "space", "training.seed"), [1, 2]),
    ],
)
def test_parse_set(assignment, key, value):
    assert parse_set(assignment) == (key, value)


@pytest.mark.parametrize("assignment", ["training.steps", "=5", "training..steps=1", "a b=1"])
def test_parse_set_rejects_malformed(assignment):
    with pytest.raises(ConfigError, match=r"^--set: "):
        parse_set(assignment)


def test_set_overrides_validates_and_is_named_in_errors(write):
    path = write("x.toml", "[training]\nsteps = 100\n")
    assert load_config(path, ["training.steps=7", "training.warmup_steps=0"]).training.steps == 7
    with pytest.raises(ConfigError) as info:
        load_config(path, ["training.steps=abc"])
    assert (info.value.source, info.value.key) == ("--set", "training.steps")
    with pytest.raises(ConfigError, match="'training.steps' is a value, not a table"):
        load_config(path, ["training.steps.x=1"])


def test_set_on_a_swept_key_pins_it(write):
    path = write(
        "t.toml",
        """
        [sweep.space]
        "training.weight_decay" = [0.1, 1.0]
        "training.seed" = [0, 1]
    """,
    )
    config = load_config(path, ["training.weight_decay=0.5"])
    assert config.training.weight_decay == 0.5
    assert list(config.sweep.space) == ["training.seed"]


def test_key_formatting_round_trips():
    key = ("sweep", "space", "training.lr")
    assert format_key(key) == 'sweep.space."training.lr"'
    assert split_key(format_key(key)) == key
    assert format_key(("training", "betas", "0")) == "training.betas[0]"
