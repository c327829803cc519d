"""`model.preset = "power"` is Power et al. 2022's network (openai/grok, grok/transformer.py):
with the weights of their decoder, written here after their code (one nn.Linear per head for q,
k and v, post-norm LayerNorm blocks, a ReLU MLP without biases, the fixed sinusoidal position
table, no final norm), Theos computes the same logits, and its initial weights are drawn from
the same distributions, layer by layer."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_drawn_alike
from torch import nn

from arbiter.config.schema import Config
from arbiter.core.model import build_model
from models.theos import sinusoidal_table

P = 97  # a + b mod 97: 99 tokens, [a, op, b, =]


class TheirAttention(nn.Module):
    """q, k and v of every head are nn.Linear layers of their own; the heads' outputs are
    concatenated and projected."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        size = dim // heads
        self.q = nn.ModuleList(nn.Linear(dim, size, bias=False) for _ in range(heads))
        self.k = nn.ModuleList(nn.Linear(dim, size, bias=False) for _ in range(heads))
        self.v = nn.ModuleList(nn.Linear(dim, size, bias=False) for _ in range(heads))
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        T = x.size(1)
        mask = torch.ones(T, T).tril()
        heads = []
        for q, k, v in zip(self.q, self.k, self.v, strict=True):
            scores = q(x) @ k(x).transpose(-1, -2) / math.sqrt(q.out_features)
            scores = scores.masked_fill(mask == 0, float("-inf"))
            heads.append(scores.softmax(-1) @ v(x))
        return self.out(torch.cat(heads, dim=-1))


class TheirBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = TheirAttention(dim, heads)
        self.attn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim, bias=False), nn.ReLU(), nn.Linear(4 * dim, dim, bias=False)
        )
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x))
        return self.ffn_norm(x + self.ffn(x))


class TheirDecoder(nn.Module):
    def __init__(self, vocab: int, seq_len: int, dim: int = 128, layers: int = 2, heads: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.register_buffer("pe", their_position_table(seq_len, dim))
        self.blocks = nn.ModuleList(TheirBlock(dim, heads) for _ in range(layers))
        self.linear = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) + self.pe[: ids.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.linear(x)


def their_position_table(seq_len: int, dim: int) -> torch.Tensor:
    """Their formula element by element: sin(pos / 10000^(i / dim)) at even i, and at odd i
    the cos of the even channel's angle before it."""
    table = [
        [
            math.sin(pos / 10000 ** (i / dim))
            if i % 2 == 0
            else math.cos(pos / 10000 ** ((i - 1) / dim))
            for i in range(dim)
        ]
        for pos in range(seq_len)
    ]
    return torch.tensor(table, dtype=torch.float32)


def theos_names(theirs: TheirDecoder) -> dict[str, torch.Tensor]:
    """Their decoder's tensors under Theos' names: q, k, v of every head stacked as Theos'
    fused projection reads them (all heads' q, then k, then v)."""
    named = {"tok_emb.weight": theirs.embedding.weight, "lm_head.weight": theirs.linear.weight}
    for i, block in enumerate(theirs.blocks):
        attn = block.attn
        qkv = [head.weight for part in (attn.q, attn.k, attn.v) for head in part]
        named[f"blocks.{i}.attn.qkv.weight"] = torch.cat(qkv)
        named[f"blocks.{i}.attn.proj.weight"] = attn.out.weight
        named[f"blocks.{i}.mlp.w1.weight"] = block.ffn[0].weight
        named[f"blocks.{i}.mlp.w2.weight"] = block.ffn[2].weight
        for ours, norm in (("norm1", block.attn_norm), ("norm2", block.ffn_norm)):
            named[f"blocks.{i}.{ours}.weight"] = norm.weight
            named[f"blocks.{i}.{ours}.bias"] = norm.bias
    return named


@pytest.fixture(scope="module")
def models():
    config = Config.model_validate({"model": {"preset": "power"}, "data": {"modulus": P}})
    torch.manual_seed(0)
    ours = build_model(config)
    torch.manual_seed(0)
    theirs = TheirDecoder(config.vocab_size(), config.seq_len())
    return config, ours, theirs


def test_the_position_table_is_theirs():
    torch.testing.assert_close(sinusoidal_table(50, 128), their_position_table(50, 128))


def test_with_their_weights_theos_computes_their_logits(models):
    config, ours, theirs = models
    mapped = theos_names(theirs)
    assert set(mapped) == set(ours.state_dict())  # every tensor, nothing more: no final norm
    twin = build_model(config)
    twin.load_state_dict({k: v.detach().clone() for k, v in mapped.items()})
    ids = torch.randint(0, P + 2, (64, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(ids)
        torch.testing.assert_close(twin(ids), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            twin(ids, last_only=True), expected[:, -1:], rtol=1e-5, atol=1e-5
        )


def test_the_initial_weights_are_drawn_as_theirs_layer_by_layer(models):
    _, ours, theirs = models
    assert_drawn_alike(ours.state_dict(), theos_names(theirs))
