"""The config schema: defaults, derived values and the rules that span fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from arbiter.config.schema import Config, TrainingConfig, check_sweepable
from arbiter.config.trials import plan_trials
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
        (
            {
                "data": {"task": "tokens", "path": "d"},
                "model": {"vocab_size": 256},
                "training": {"seq_len": 8, "batch_size": "full"},
            },
            "training.batch_size",
            "needs data.task = 'modular'",
        ),
        (
            {"training": {"batch_size": "full", "gradient_accumulation": 2}},
            "training.batch_size",
            "gradient_accumulation = 1, got 2",
        ),
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
        ({"training": {"optimizer": "lion"}}, ("training", "optimizer")),
        ({"training": {"loss": "sparsemax"}}, ("training", "loss")),
        ({"training": {"loss_dtype": "fp16"}}, ("training", "loss_dtype")),
        ({"training": {"eps": 0.0}}, ("training", "eps")),
        ({"training": {"momentum": 1.0}}, ("training", "momentum")),
        ({"data": {"split": "diagonal"}}, ("data", "split")),
        ({"model": {"init_scale": 0.0}}, ("model", "init_scale")),
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


def test_loss_and_optimizer_defaults():
    t = Config().training
    assert (t.optimizer, t.eps, t.momentum, t.orthograd) == ("adamw", 1e-8, 0.0, False)
    assert (t.loss, t.loss_dtype) == ("softmax", "fp32")
    assert (Config().model.init_scale, Config().data.split) == (1.0, "random")


@pytest.mark.parametrize(
    "key",
    [
        "training.loss",
        "training.loss_dtype",
        "training.optimizer",
        "training.eps",
        "training.momentum",
        "training.orthograd",
        "training.batch_size",
        "model.init_scale",
        "data.split",
    ],
)
def test_grokking_numerics_keys_are_sweepable(key):
    check_sweepable(key)


def test_the_mlp_takes_relu_unless_told_and_ignores_the_transformers_head_rules():
    config = Config.model_validate({"model": {"arch": "mlp", "dim": 200, "n_heads": 3}})
    assert config.model.mlp == "relu"  # not the transformer's default, SwiGLU
    assert Config.model_validate(config.run_settings()) == config  # and its dump says so
    gelu = Config.model_validate({"model": {"arch": "mlp", "mlp": "gelu"}})
    assert gelu.model.mlp == "gelu"
    assert Config.model_validate({}).model.mlp == "swiglu"


def test_an_odd_head_size_is_allowed_with_learned_positions():
    config = Config.model_validate({"model": {"dim": 96, "n_heads": 32, "positions": "learned"}})
    assert config.model.dim // config.model.n_heads == 3


def test_full_batch_resolves_to_the_training_set_and_dumps_as_full():
    config = Config.model_validate({"training": {"batch_size": "full"}})
    assert config.training.batch_size == round(0.5 * 97 * 97) == 4704
    assert config.training.is_full_batch() and config.training.effective_batch_size() == 4704
    assert config.run_settings()["training"]["batch_size"] == "full"
    assert Config.model_validate(config.run_settings()) == config
    # a number is not "full", even when it is the same number
    fixed = Config.model_validate({"training": {"batch_size": 4704}})
    assert not fixed.training.is_full_batch() and fixed != config
    # nor is a number put in its place later
    changed = config.training.model_copy(update={"batch_size": 64})
    assert not changed.is_full_batch() and changed.model_dump()["batch_size"] == 64
    # the settings validated again under another table resolve afresh
    settings = config.run_settings()
    settings["data"].update(operation="div", modulus=13, train_fraction=0.3)
    assert Config.model_validate(settings).training.batch_size == round(0.3 * 13 * 12) == 47
    # a TrainingConfig handed in is not changed under its owner
    training = TrainingConfig(batch_size="full")
    assert Config(training=training).training.batch_size == 4704
    assert training.batch_size == "full"


@pytest.mark.parametrize("value", ["half", 0, 2.5, [64]])
def test_a_bad_batch_size_is_one_error_naming_both_forms(value):
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"training": {"batch_size": value}})
    (error,) = info.value.errors()  # one error, not one per member of the union
    assert error["loc"] == ("training", "batch_size")
    assert "whole number greater than 0, or 'full'" in error["msg"]


def test_full_in_a_sweep_space_resolves_per_trial():
    template = Config.model_validate(
        {
            "data": {"modulus": 11},
            "sweep": {
                "space": {
                    "training.batch_size": ["full", 64],
                    "data.train_fraction": [0.3, 0.6],
                }
            },
        }
    )
    sizes = {
        (trial.overrides["training.batch_size"], trial.overrides["data.train_fraction"]): (
            trial.config.training.batch_size
        )
        for trial in plan_trials(template, "t.toml")
    }
    # 121 pairs mod 11: "full" is round(0.3 * 121) = 36 and round(0.6 * 121) = 73 pairs
    assert sizes == {("full", 0.3): 36, ("full", 0.6): 73, (64, 0.3): 64, (64, 0.6): 64}
