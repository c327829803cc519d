"""Tests for the optimizer (AdamW, Adam, SGD over two parameter groups), ⊥Grad, the initial
weight scale and the learning-rate schedule (a tiny Theos, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from arbiter.config.schema import Config, TrainingConfig
from arbiter.core.model import build_model
from arbiter.core.optim import (
    build_optimizer,
    learning_rate,
    orthogonalize_gradients,
    param_groups,
    set_learning_rate,
)
from models import Theos, TheosConfig

CPU = torch.device("cpu")


def tiny(tie_embeddings: bool = False) -> Theos:
    torch.manual_seed(0)
    config = TheosConfig(
        vocab_size=11,
        seq_len=4,
        dim=16,
        n_layers=2,
        n_heads=2,
        mlp_dim=64,
        tie_embeddings=tie_embeddings,
    )
    return Theos(config)


def names(groups: list[dict]) -> tuple[list[str], list[str]]:
    decayed, kept = groups
    return decayed["param_names"], kept["param_names"]


@pytest.mark.parametrize("tie", [False, True])
def test_every_parameter_is_in_exactly_one_group(tie: bool) -> None:
    model = tiny(tie)
    groups = param_groups(model, weight_decay=0.5, decay_embeddings=False)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    for g in groups:
        assert len(g["params"]) == len(g["param_names"])
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]
    # deterministic: the same model gives the same layout
    assert names(param_groups(model, 0.5, False)) == names(groups)


def test_matrices_decayed_norms_and_embedding_not() -> None:
    model = tiny()
    decayed, kept = names(param_groups(model, 1.0, decay_embeddings=False))
    norm_names = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.RMSNorm)}
    linear_names = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert "tok_emb.weight" in kept
    assert norm_names and norm_names <= set(kept)
    assert set(decayed) == linear_names  # lm_head included: it is a matrix of its own
    assert set(kept) == norm_names | {"tok_emb.weight"}


def test_decay_embeddings_moves_the_embedding() -> None:
    model = tiny()
    decayed, kept = names(param_groups(model, 1.0, decay_embeddings=True))
    assert "tok_emb.weight" in decayed and "tok_emb.weight" not in kept
    assert all("norm" in n for n in kept)


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_tied_weight_counted_once_as_the_embedding(decay_embeddings: bool) -> None:
    model = tiny(tie_embeddings=True)
    assert model.lm_head.weight is model.tok_emb.weight
    groups = param_groups(model, 1.0, decay_embeddings)
    decayed, kept = names(groups)
    everything = decayed + kept
    assert everything.count("tok_emb.weight") == 1
    assert "lm_head.weight" not in everything
    tied = [p for g in groups for p in g["params"] if p is model.tok_emb.weight]
    assert len(tied) == 1
    # the tied matrix follows the embedding rule, not the Linear rule
    assert ("tok_emb.weight" in decayed) == decay_embeddings


def test_build_optimizer_is_adamw_with_config_settings(caplog: pytest.LogCaptureFixture) -> None:
    training = TrainingConfig(learning_rate=3e-3, betas=(0.8, 0.95), weight_decay=0.25)
    with caplog.at_level("INFO", logger="arbiter.core.optim"):
        optimizer = build_optimizer(tiny(), training, CPU)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert len(optimizer.param_groups) == 2
    for group in optimizer.param_groups:
        assert group["lr"] == 3e-3
        assert tuple(group["betas"]) == (0.8, 0.95)
        assert group["eps"] == 1e-8
        assert not group["fused"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.25, 0.0]
    # ten block matrices and the untied lm_head
    assert any("on 11 tensors" in r.getMessage() for r in caplog.records)
    set_learning_rate(optimizer, 1e-4)
    assert all(g["lr"] == 1e-4 for g in optimizer.param_groups)


def test_adamw_step_decays_matrices_only() -> None:
    # With zero gradients Adam's update is 0, so one step shows the decoupled decay alone:
    # a decayed matrix shrinks by exactly (1 - lr * weight_decay); a norm weight stays put.
    model = tiny()
    lr, wd = 0.1, 0.5
    training = TrainingConfig(learning_rate=lr, weight_decay=wd)
    optimizer = build_optimizer(model, training, CPU)
    matrix = model.blocks[0].attn.qkv.weight
    norm = model.blocks[0].norm1.weight
    embedding = model.tok_emb.weight
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(matrix.detach(), before["blocks.0.attn.qkv.weight"] * (1 - lr * wd))
    assert matrix.detach().norm() < before["blocks.0.attn.qkv.weight"].norm()
    assert torch.equal(norm.detach(), before["blocks.0.norm1.weight"])
    assert torch.equal(embedding.detach(), before["tok_emb.weight"])


def random_gradients(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)


def test_adam_adds_the_decay_to_the_gradient() -> None:
    # Adam's weight decay is an L2 term: the same as plain Adam on g + weight_decay * w.
    lr, wd = 0.01, 0.5
    model, reference = tiny(), tiny()
    training = TrainingConfig(optimizer="adam", learning_rate=lr, weight_decay=wd)
    optimizer = build_optimizer(model, training, CPU)
    assert type(optimizer) is torch.optim.Adam
    matrix, by_hand = model.blocks[0].mlp.w1.weight, reference.blocks[0].mlp.w1.weight
    plain = torch.optim.Adam([by_hand], lr=lr, betas=(0.9, 0.98), eps=1e-8)
    for step in range(3):
        random_gradients(model, step)
        random_gradients(reference, step)
        by_hand.grad += wd * by_hand.detach()
        optimizer.step()
        plain.step()
    torch.testing.assert_close(matrix, by_hand)
    # AdamW on the same gradients decays apart from them, and ends elsewhere.
    decoupled = tiny()
    adamw = build_optimizer(decoupled, TrainingConfig(learning_rate=lr, weight_decay=wd), CPU)
    for step in range(3):
        random_gradients(decoupled, step)
        adamw.step()
    assert not torch.allclose(decoupled.blocks[0].mlp.w1.weight, matrix)


def test_sgd_with_momentum_and_l2_decay() -> None:
    lr, wd = 0.1, 0.5
    model = tiny()
    training = TrainingConfig(optimizer="sgd", learning_rate=lr, weight_decay=wd, momentum=0.9)
    optimizer = build_optimizer(model, training, CPU)
    assert type(optimizer) is torch.optim.SGD
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9, 0.9]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [wd, 0.0]
    assert not any(g["fused"] for g in optimizer.param_groups)
    matrix, norm = model.blocks[0].attn.qkv.weight, model.blocks[0].norm1.weight
    before_matrix, before_norm = matrix.detach().clone(), norm.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # the gradient is the L2 term alone, wd * w
    torch.testing.assert_close(matrix.detach(), before_matrix * (1 - lr * wd))
    assert torch.equal(norm.detach(), before_norm)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_eps_reaches_the_optimizer(name: str) -> None:
    optimizer = build_optimizer(tiny(), TrainingConfig(optimizer=name, eps=1e-25), CPU)
    assert [g["eps"] for g in optimizer.param_groups] == [1e-25, 1e-25]


def test_every_optimizer_has_the_same_group_layout(caplog: pytest.LogCaptureFixture) -> None:
    layouts = {}
    with caplog.at_level("INFO", logger="arbiter.core.optim"):
        for name in ("adamw", "adam", "sgd"):
            optimizer = build_optimizer(tiny(), TrainingConfig(optimizer=name), CPU)
            groups = optimizer.state_dict()["param_groups"]
            layouts[name] = [(g["params"], g["param_names"], g["weight_decay"]) for g in groups]
    assert len(layouts["adamw"]) == 2
    assert layouts["adamw"] == layouts["adam"] == layouts["sgd"]
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(",")[0] for m in messages] == [
        "optimizer: AdamW (eps 1e-08)",
        "optimizer: Adam (eps 1e-08)",
        "optimizer: SGD (momentum 0)",
    ]
    assert "L2 weight decay 1 on 11 tensors" in messages[1]


def test_orthogonalized_gradients_are_orthogonal_and_keep_their_norm() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(shape, generator=generator) for shape in [(8, 5), (7,), (3, 4, 2)]]
    params = [nn.Parameter(w) for w in weights]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) + 0.5 * p.detach()  # partly along w
    before = [p.grad.clone() for p in params]
    no_grad = nn.Parameter(torch.ones(3))
    orthogonalize_gradients([*params, no_grad])
    for p, g in zip(params, before, strict=True):
        w = p.detach()
        assert abs(torch.dot(p.grad.flatten(), w.flatten()).item()) < 1e-5 * g.norm() * w.norm()
        torch.testing.assert_close(p.grad.norm(), g.norm())
        assert not torch.allclose(p.grad, g)
    assert no_grad.grad is None


def test_orthogonalize_leaves_zero_weights_alone_and_zeroes_a_parallel_gradient() -> None:
    zero = nn.Parameter(torch.zeros(4, 3))
    zero.grad = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    expected = zero.grad.clone()
    parallel = nn.Parameter(torch.full((5,), 2.0))
    parallel.grad = torch.full((5,), -3.0)
    # parallel up to rounding: what the projection leaves is noise, not rescaled to a full step
    weights = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    rounded = nn.Parameter(weights)
    rounded.grad = 3.7 * weights
    orthogonalize_gradients([zero, parallel, rounded])
    assert torch.equal(zero.grad, expected)
    assert torch.equal(parallel.grad, torch.zeros(5))
    assert torch.equal(rounded.grad, torch.zeros(64, 64))


@pytest.mark.parametrize("tie", [False, True])
def test_init_scale_multiplies_every_matrix(tie: bool) -> None:
    def built(scale: float) -> Theos:
        torch.manual_seed(0)
        settings = {"dim": 16, "n_layers": 2, "n_heads": 2, "tie_embeddings": tie}
        return build_model(Config.model_validate({"model": {**settings, "init_scale": scale}}))

    plain, scaled, shrunk = built(1.0), built(4.0), built(0.3)
    triples = zip(plain.named_parameters(), scaled.parameters(), shrunk.parameters(), strict=True)
    for (name, p), q, r in triples:
        if p.ndim >= 2:
            assert torch.equal(q, p * 4.0), name  # a power of two: exact
            assert r.norm().item() == pytest.approx(0.3 * p.norm().item(), rel=1e-6), name
        else:
            assert torch.equal(q, p) and torch.equal(r, p), name  # norm gains untouched


def schedule(**overrides: object) -> TrainingConfig:
    settings: dict[str, object] = {
        "learning_rate": 1e-3,
        "steps": 100,
        "warmup_steps": 10,
        "lr_schedule": "cosine",
        "min_lr_ratio": 0.1,
    }
    settings.update(overrides)
    return TrainingConfig(**settings)


def test_warmup_is_linear_and_reaches_the_peak() -> None:
    training = schedule()
    warm = [learning_rate(s, training) for s in range(10)]
    assert warm == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert warm[0] == pytest.approx(1e-4)
    assert warm[-1] == pytest.approx(1e-3)  # step warmup_steps - 1 is the peak
    assert max(learning_rate(s, training) for s in range(100)) == pytest.approx(1e-3)


def test_cosine_decreases_to_min_at_the_last_step_and_stays() -> None:
    training = schedule()
    after = [learning_rate(s, training) for s in range(9, 100)]
    assert all(a > b for a, b in zip(after[:-1], after[1:], strict=True))
    assert learning_rate(99, training) == pytest.approx(1e-4)
    assert learning_rate(150, training) == pytest.approx(1e-4)
    # half way through the decay the cosine is half way between peak and floor
    mid = (9 + 99) // 2
    assert learning_rate(mid, training) == pytest.approx((1e-3 + 1e-4) / 2)


def test_no_warmup_starts_at_the_peak() -> None:
    training = schedule(steps=101, warmup_steps=0, min_lr_ratio=0.0)
    assert learning_rate(0, training) == pytest.approx(1e-3)
    assert learning_rate(100, training) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(25, training) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_constant_schedule_is_flat_after_warmup() -> None:
    training = schedule(lr_schedule="constant")
    assert learning_rate(0, training) == pytest.approx(1e-4)
    assert {learning_rate(s, training) for s in range(9, 120)} == {1e-3}


def test_degenerate_lengths() -> None:
    assert learning_rate(0, schedule(steps=1, warmup_steps=0)) == pytest.approx(1e-3)
    training = schedule(steps=10, warmup_steps=10)  # all warmup
    assert learning_rate(9, training) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        learning_rate(-1, training)
