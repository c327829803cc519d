"""The `[model]` table to a network, `models.Theos` or `models.OneHotMLP` (the only place the
two packages meet), initial weight scale included."""

from __future__ import annotations

import torch
from torch import nn

from arbiter.config.schema import Config
from models import OneHotMLP, OneHotMLPConfig, Theos, TheosConfig


def theos_config(config: Config) -> TheosConfig:
    """The architecture a run's config describes, with the task's vocabulary and length."""
    m = config.model
    return TheosConfig(
        vocab_size=config.vocab_size(),
        seq_len=config.seq_len(),
        dim=m.dim,
        n_layers=m.n_layers,
        n_heads=m.n_heads,
        mlp=m.mlp,
        mlp_dim=m.hidden_dim(),
        tie_embeddings=m.tie_embeddings,
        norm_eps=m.norm_eps,
        rope_theta=m.rope_theta,
        norm=m.norm,
        positions=m.positions,
        dropout=m.dropout,
        flash_attention=m.flash_attention,
        mlp_bias=m.mlp_bias,
        attn_bias=m.attn_bias,
        block=m.block,
        init=m.init,
    )


def mlp_config(config: Config) -> OneHotMLPConfig:
    """The one-hot MLP a run's config describes (`model.arch = "mlp"`, modular task only): it
    reads the operands, a and b, and predicts one of the modulus' residues."""
    m = config.model
    return OneHotMLPConfig(
        symbols=config.data.modulus,
        seq_len=config.seq_len(),
        reads=config.data.operand_positions(),
        dim=m.dim,
        n_layers=m.n_layers,
        activation=m.mlp,
        bias=m.mlp_bias,
        init=m.init,
    )


def build_model(config: Config) -> nn.Module:
    """A freshly initialised model (`Theos` or `OneHotMLP`, by `model.arch`); seed torch first
    for reproducible weights.

    Every weight matrix (ndim >= 2: linear layers and the embedding, once when tied) is then
    multiplied by `model.init_scale`; norm gains keep their initial ones.
    """
    if config.model.arch == "mlp":
        model: nn.Module = OneHotMLP(mlp_config(config))
    else:
        model = Theos(theos_config(config))
    scale = config.model.init_scale
    if scale != 1.0:
        with torch.no_grad():
            for param in model.parameters():  # a tied weight is yielded once: scaled once
                if param.ndim >= 2:
                    param.mul_(scale)
    return model
