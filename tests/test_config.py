"""The config schema: defaults, derived values and the rules that span fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from arbiter.config import Config, check_sweepable
from arbiter.errors import KeyProblem


def problem(data: dict) -> KeyProblem | dict:
    """The KeyProblem a config raises, or pydantic's first error when it is not one."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data)
    first = info.value.errors()[0]
    return first.get("ctx", {}).get("error", first)


def test_defaults_are_a_valid_modular_run():
    config = Config()
    assert config.data.task == "modular"
    assert config.vocab_size() == 97 + 2
    assert config.seq_len() == 4
    # derived values are methods, not stored: a swept modulus changes them
    assert config.model.vocab_size is None
    assert Config.model_validate({"data": {"modulus": 113}}).vocab_size() == 115


def test_effective_batch_and_hidden_dim():
    config = Config.model_validate(
        {"training": {"batch_size": 4, "gradient_accumulation": 4}, "model": {"dim": 96}}
    )
    assert config.training.effective_batch_size() == 16
    assert config.model.hidden_dim() == 256  # 8*96/3 = 256, already a multiple of 64
    assert Config.model_validate({"model": {"dim": 128}}).model.hidden_dim() == 384
    assert Config.model_validate({"model": {"mlp": "gelu", "dim": 64}}).model.hidden_dim() == 256
    assert Config.model_validate({"model": {"mlp_dim": 100}}).model.hidden_dim() == 100


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"model": {"dim": 100, "n_heads": 3}}, "model.n_heads", "not divisible"),
        ({"model": {"dim": 96, "n_heads": 32}}, "model.n_heads", "odd"),
        ({"model": {"vocab_size": 50}}, "model.vocab_size", "implies 99"),
        ({"training": {"seq_len": 8}}, "training.seq_len", "implies 4"),
        ({"data": {"operation": "div", "modulus": 96}}, "data.modulus", "not prime"),
        ({"data": {"task": "tokens"}}, "data.path", "required"),
        ({"data": {"path": "x"}}, "data.path", "only applies"),
        (
            {"data": {"task": "tokens", "path": "d"}, "training": {"seq_len": 8}},
            "model.vocab_size",
            "required",
        ),
        (
            {
                "data": {"task": "tokens", "path": "d"},
                "model": {"vocab_size": 70000},
                "training": {"seq_len": 8},
            },
            "model.vocab_size",
            "uint16",
        ),
        ({"training": {"steps": 10, "warmup_steps": 11}}, "training.warmup_steps", "exceeds"),
        ({"training": {"betas": [0.9, 1.0]}}, "training.betas", "[0, 1)"),
    ],
)
def test_cross_field_rules_name_their_key(data, key, words):
    error = problem(data)
    assert isinstance(error, KeyProblem)
    assert error.key == key
    assert words in error.problem


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"model": {"dim": 0}}, ("model", "dim")),
        ({"training": {"learning_rate": -1e-3}}, ("training", "learning_rate")),
        ({"training": {"precision": "bf17"}}, ("training", "precision")),
        ({"data": {"train_fraction": 1.0}}, ("data", "train_fraction")),
        ({"data": {"modulus": 1}}, ("data", "modulus")),
        ({"data": {"operation": "pow"}}, ("data", "operation")),
        ({"checkpoint": {"keep": 0}}, ("checkpoint", "keep")),
        ({"logging": {"verbose": True}}, ("logging", "verbose")),
        ({"optimizer": {}}, ("optimizer",)),
    ],
)
def test_field_rules(data, loc):
    error = problem(data)
    assert error["loc"] == loc


def test_tokens_task_takes_vocab_and_length_from_config():
    config = Config.model_validate(
        {
            "data": {"task": "tokens", "path": "data/tokens"},
            "model": {"vocab_size": 8192},
            "training": {"seq_len": 1024},
        }
    )
    assert (config.vocab_size(), config.seq_len()) == (8192, 1024)


def test_div_accepts_prime_and_other_operations_any_modulus():
    assert Config.model_validate({"data": {"operation": "div", "modulus": 113}})
    assert Config.model_validate({"data": {"operation": "x^3+xy", "modulus": 100}})


def test_swept_keys_must_name_a_setting():
    check_sweepable("training.weight_decay")
    check_sweepable("data.train_fraction")
    for bad, words in [
        ("training.lr", "not a config key"),
        ("trainng.steps", "not a config key"),
        ("sweep.num_samples", "not a config key"),
        ("model", "a whole table"),
        ("model.dim.x", "not a table"),
    ]:
        with pytest.raises(KeyProblem, match=words):
            check_sweepable(bad)


def test_run_settings_round_trip_without_sweep():
    config = Config.model_validate(
        {"model": {"dim": 64}, "sweep": {"space": {"model.n_layers": [1, 2]}}}
    )
    settings = config.run_settings()
    assert "sweep" not in settings
    assert Config.model_validate(settings) == Config.model_validate({"model": {"dim": 64}})
