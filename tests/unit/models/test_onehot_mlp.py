"""The one-hot MLP (`model.arch = "mlp"`): what it reads, how it starts, and that the core
trains and resumes it like the transformer."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny

from arbiter.core.loop import train
from arbiter.core.metrics import read_metrics
from arbiter.core.model import build_model
from models import OneHotMLP, OneHotMLPConfig

SMALL = OneHotMLPConfig(symbols=11, seq_len=3, reads=(0, 1), dim=16, n_layers=2)


def test_it_reads_the_operands_and_gives_a_logit_per_residue():
    torch.manual_seed(0)
    model = OneHotMLP(SMALL)
    idx = torch.tensor([[1, 2, 11], [3, 4, 11]])
    logits = model(idx)
    assert logits.shape == (2, 1, 11)  # the residues alone: no logit for the `=` token (11)
    # the last token (the `=`) is not read: any token there gives the same logits
    assert torch.equal(model(torch.tensor([[1, 2, 0], [3, 4, 5]])), logits)
    # each operand is a position of its own: swapping them changes the answer
    assert not torch.allclose(model(torch.tensor([[2, 1, 11]])), logits[:1])
    # the first layer is one-hot(a) ++ one-hot(b) times a (dim, 2 p) matrix, as published
    first = model.hidden[0].weight
    assert first.shape == (16, 2 * 11)
    manual = torch.relu(first[:, 1] + first[:, 11 + 2])
    manual = torch.relu(model.hidden[1].weight @ manual)
    assert torch.allclose(model.lm_head.weight @ manual, logits[0, 0], atol=1e-6)


def test_it_skips_the_operation_token_between_the_operands():
    torch.manual_seed(0)
    with_op = OneHotMLPConfig(symbols=11, seq_len=4, reads=(0, 2), dim=16, n_layers=2)
    model = OneHotMLP(with_op)
    # [a, op, b, =]: the operation token (12) is the same in every sequence and is not read
    logits = model(torch.tensor([[1, 12, 2, 11]]))
    assert torch.equal(model(torch.tensor([[1, 0, 2, 0]])), logits)
    assert not torch.allclose(model(torch.tensor([[1, 12, 3, 11]])), logits)


def test_the_config_reads_the_operands_of_either_layout():
    for operation_token, reads in [(True, (0, 2)), (False, (0, 1))]:
        config = tiny(model={"arch": "mlp"}, data={"operation_token": operation_token})
        model = build_model(config)
        assert model.config.reads == reads
        assert model.config.symbols == config.data.modulus


def test_it_refuses_a_sequence_of_another_length():
    with pytest.raises(ValueError, match="seq_len 3"):
        OneHotMLP(SMALL)(torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.parametrize("init", ["torch", "gpt2", "nanda"])
def test_each_init_draws_the_scales_of_its_source(init):
    torch.manual_seed(0)
    config = OneHotMLPConfig(
        symbols=60, seq_len=3, reads=(0, 1), dim=200, n_layers=2, bias=True, init=init
    )
    model = OneHotMLP(config)
    first, head = model.hidden[0].weight, model.lm_head.weight
    if init == "torch":  # PyTorch's default: uniform in +-1/sqrt(fan_in), biases too
        bound = 1 / math.sqrt(120)
        assert first.abs().max() <= bound and first.abs().max() > 0.95 * bound
        assert model.hidden[0].bias.abs().max() > 0
    else:
        std = 0.02 if init == "gpt2" else 1 / math.sqrt(200)
        assert abs(first.std().item() - std) < 0.1 * std
        head_std = 1 / math.sqrt(60) if init == "nanda" else std
        assert abs(head.std().item() - head_std) < 0.1 * head_std
        assert not model.hidden[0].bias.any()


def test_init_scale_multiplies_every_matrix():
    settings = {"arch": "mlp", "mlp": "relu", "init": "torch"}
    torch.manual_seed(0)
    plain = build_model(tiny(model=settings))
    torch.manual_seed(0)
    scaled = build_model(tiny(model={**settings, "init_scale": 3.0}))
    assert isinstance(scaled, OneHotMLP)
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        assert torch.allclose(3 * a, b)


def test_the_core_trains_it_to_fit_its_training_set(tmp_path):
    config = tiny(
        model={"arch": "mlp", "mlp": "relu", "dim": 64, "init": "torch"},
        batch_size="full",
        learning_rate=1e-2,
        steps=150,
        eval_interval=50,
        weight_decay=0.0,
    )
    result = train(config, tmp_path)
    assert result.metrics["train/accuracy"] == 1.0
    rows = read_metrics(tmp_path)
    assert rows[0]["train/accuracy"] < 0.5  # it learned, it did not start there
    assert rows[-1]["attention"] == "none (mlp)"
    assert 0 < rows[-1]["output_weight_norm"] < rows[-1]["weight_norm"]
