"""The `[model]` table to a `models.Theos` network (the only place the two meet)."""

from __future__ import annotations

from arbiter.config import Config
from models import Theos, TheosConfig


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
        dropout=m.dropout,
        flash_attention=m.flash_attention,
    )


def build_model(config: Config) -> Theos:
    """A freshly initialised model; seed torch first for reproducible weights."""
    return Theos(theos_config(config))
