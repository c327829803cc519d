"""`repro_grokfast.toml`'s model is Grokfast's network exactly: with the weights of their decoder
(as `benchmarks/grokfast_reference.py` writes it after their main.py: nn.LayerNorm,
nn.MultiheadAttention, the block that normalises the residual stream itself) Theos computes the
same logits; its initial weights are drawn from the same distributions, layer by layer; and
their optimizer's decay reaches every tensor."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers import ROOT

from arbiter.config.loading import load_config
from arbiter.core.model import build_model
from arbiter.core.optim import param_groups

sys.path.insert(0, str(ROOT / "benchmarks"))
from grokfast_reference import ReferenceDecoder  # noqa: E402

TEMPLATE = ROOT / "configs" / "sweep_templates" / "repro_grokfast.toml"


def theirs_to_ours(reference: ReferenceDecoder) -> dict[str, torch.Tensor]:
    """Their decoder's weights under Theos' names (their position table has a 5th, unused row)."""
    mapped = {
        "tok_emb.weight": reference.tokens.weight,
        "pos_emb.weight": reference.positions.weight[:4],
        "norm.weight": reference.ln_f.weight,
        "norm.bias": reference.ln_f.bias,
        "lm_head.weight": reference.head.weight,
    }
    for i, block in enumerate(reference.blocks):
        ours = f"blocks.{i}."
        pairs = {
            "norm1": block.ln_1,
            "norm2": block.ln_2,
            "attn.proj": block.attn.out_proj,
            "mlp.w1": block.mlp[0],
            "mlp.w2": block.mlp[2],
        }
        for name, module in pairs.items():
            mapped[f"{ours}{name}.weight"] = module.weight
            mapped[f"{ours}{name}.bias"] = module.bias
        mapped[f"{ours}attn.qkv.weight"] = block.attn.in_proj_weight
        mapped[f"{ours}attn.qkv.bias"] = block.attn.in_proj_bias
    return mapped


@pytest.fixture(scope="module")
def models():
    config = load_config(TEMPLATE)
    torch.manual_seed(0)
    ours = build_model(config)
    torch.manual_seed(0)
    return config, ours, ReferenceDecoder()


def test_with_their_weights_theos_computes_their_logits(models):
    _, ours, reference = models
    mapped = theirs_to_ours(reference)
    assert set(mapped) == set(ours.state_dict())  # every tensor, nothing more
    twin = build_model(load_config(TEMPLATE))
    twin.load_state_dict({k: v.detach().clone() for k, v in mapped.items()})
    ids = torch.randint(0, 99, (64, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids.T).transpose(0, 1)  # theirs is time-first
        got = twin(ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_initial_weights_are_drawn_as_theirs_layer_by_layer(models):
    _, ours, reference = models
    mapped = theirs_to_ours(reference)
    for name, weight in mapped.items():
        mine, theirs = ours.state_dict()[name], weight.detach()
        assert mine.shape == theirs.shape, name
        if theirs.std() == 0:  # zero-initialised biases, unit norm gains
            assert torch.equal(mine, theirs), name
            continue
        # same distribution: spread and bound within sampling noise (a sample's std varies by
        # ~0.45/sqrt(n) of itself for a uniform distribution, less for a normal one)
        noise = 4 * 0.45 / theirs.numel() ** 0.5
        assert mine.std() == pytest.approx(float(theirs.std()), rel=noise + 0.01), name
        assert mine.abs().max() == pytest.approx(float(theirs.abs().max()), rel=0.15), name


def test_their_optimizer_decays_every_tensor(models):
    config, ours, reference = models
    decayed, kept = param_groups(ours, 0.005, False, config.training.decay_all)
    assert kept["params"] == [] and len(decayed["params"]) == len(list(reference.parameters()))
