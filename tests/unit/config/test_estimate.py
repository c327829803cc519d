"""Cost estimates: the parameter count is exact for the real model; memory behaves sensibly."""

from __future__ import annotations

import pytest

from arbiter.config.estimate import (
    STATE_BYTES_PER_PARAM,
    activation_bytes,
    estimate,
    parameter_count,
    training_memory_bytes,
)
from arbiter.config.loading import load_config
from arbiter.config.schema import Config
from arbiter.config.templates import packaged_configs
from arbiter.core.model import build_model


@pytest.mark.parametrize(
    "model",
    [
        {"dim": 32, "n_layers": 2, "n_heads": 4},
        {"dim": 48, "n_layers": 3, "n_heads": 4, "mlp": "gelu"},
        {"dim": 64, "n_layers": 1, "n_heads": 2, "tie_embeddings": True},
        {"dim": 32, "n_layers": 2, "n_heads": 2, "mlp_dim": 50},
        {
            "dim": 32,
            "n_layers": 1,
            "n_heads": 4,
            "mlp": "relu",
            "norm": "none",
            "positions": "learned",
        },
        {"dim": 32, "n_layers": 2, "n_heads": 2, "mlp_bias": True},
        {"dim": 32, "n_layers": 1, "n_heads": 4, "mlp": "relu", "mlp_bias": True},
        {
            "dim": 32,
            "n_layers": 2,
            "n_heads": 4,
            "mlp": "gelu",
            "norm": "layernorm",
            "block": "norm_stream",
            "attn_bias": True,
            "mlp_bias": True,
            "positions": "learned",
            "init": "torch",
        },
        {"preset": "power", "dim": 32},  # post_norm blocks: no final norm; a fixed position table
        {"arch": "mlp", "dim": 40, "n_layers": 2, "mlp": "relu"},
        {"arch": "mlp", "dim": 24, "n_layers": 3, "mlp": "gelu", "mlp_bias": True},
    ],
)
def test_parameter_count_matches_the_model(model):
    config = Config.model_validate({"model": model, "data": {"modulus": 31}})
    built = build_model(config)
    assert parameter_count(config) == sum(p.numel() for p in built.parameters())


def test_flops_are_dominated_by_six_times_weights():
    model = {"dim": 256, "n_layers": 4, "n_heads": 4, "vocab_size": 99}
    config = Config.model_validate(
        {"model": model, "data": {"task": "tokens", "path": "x"}, "training": {"seq_len": 4}}
    )
    cost = estimate(config)
    embedding = config.vocab_size() * config.model.dim
    # 6 FLOPs per weight per token, plus a small attention term for T = 4
    assert 6 * (cost.params - embedding) <= cost.flops_per_token < 6.1 * cost.params


def test_the_modular_task_counts_its_last_block_for_the_answer_alone():
    """Same model and sequence: the last block's queries, projection, MLP and the head run for
    one position of four, so 3/4 of their FLOPs (and of that block's attention) are not spent."""
    model = {"dim": 256, "n_layers": 4, "n_heads": 4, "mlp": "gelu"}
    modular = Config.model_validate({"model": model, "data": {"modulus": 97}})
    tokens = Config.model_validate(
        {
            "model": {**model, "vocab_size": 99},
            "training": {"seq_len": 4},
            "data": {"task": "tokens", "path": "x"},
        }
    )
    d, per_position = 256, 256 * 256 + 2 * 256 * 1024 + 99 * 256
    saved = 6 * per_position * 3 / 4 + 12 * d * 4 * 3 / 4
    assert estimate(tokens).flops_per_token - estimate(modular).flops_per_token == round(saved)


def test_gradient_checkpointing_and_precision_change_memory():
    base = {
        "model": {"dim": 512, "n_layers": 24, "n_heads": 8, "vocab_size": 8192},
        "training": {"batch_size": 8, "seq_len": 1024, "precision": "bf16"},
        "data": {"task": "tokens", "path": "d"},
    }
    plain = Config.model_validate(base)
    base["training"]["gradient_checkpointing"] = True
    recomputed = Config.model_validate(base)
    base["training"]["precision"] = "fp32"
    wide = Config.model_validate(base)
    assert activation_bytes(recomputed) < activation_bytes(plain) / 2
    assert training_memory_bytes(recomputed) < training_memory_bytes(plain)
    assert training_memory_bytes(wide) > training_memory_bytes(recomputed)


@pytest.mark.parametrize(("tier", "gib"), [("high_vram", 12), ("low_vram", 4)])
def test_tier_configs_fit_the_gpus_the_seed_names(tier, gib):
    config = load_config(packaged_configs() / f"{tier}.toml")
    assert training_memory_bytes(config) < gib * 2**30


@pytest.mark.parametrize("arch", ["transformer", "mlp"])
def test_the_modular_task_keeps_logits_for_the_answer_alone(arch):
    """Only the answer's logits are computed on the modular task (and the MLP has a logit per
    residue): the logits term grows with the batch, not with the sequence length."""
    model = {"arch": arch, "dim": 32, "n_layers": 1, "n_heads": 2}
    sizes = {}
    for batch, operation_token in [(64, True), (64, False), (128, True)]:
        config = Config.model_validate(
            {
                "model": model,
                "data": {"modulus": 31, "operation_token": operation_token},
                "training": {"batch_size": batch, "precision": "fp32"},
            }
        )
        rest = training_memory_bytes(config) - activation_bytes(config)
        sizes[batch, operation_token] = rest - STATE_BYTES_PER_PARAM * parameter_count(config)
    classes = 31 if arch == "mlp" else 31 + 2
    assert sizes[128, True] - sizes[64, True] == 64 * classes * (4 + 4 + 4)  # fp32, copy, grad
    if arch == "mlp":  # the operation token is not read: the same network, the same logits
        assert sizes[64, True] == sizes[64, False]
