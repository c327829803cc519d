"""
Model definitions for the sweeps: the theos decoder-only transformer family, and the one-hot
MLP of the grokking papers.

This package depends on torch alone, so it can be imported (and tested) without Ray or the
arbiter package.
"""

from .attention import (
    causal_attention,
    choose_kernel,
    compute_dtype,
    flash_attn_available,
)
from .onehot_mlp import OneHotMLP, OneHotMLPConfig
from .theos import Theos, TheosConfig

__all__ = [
    "OneHotMLP",
    "OneHotMLPConfig",
    "Theos",
    "TheosConfig",
    "causal_attention",
    "choose_kernel",
    "compute_dtype",
    "flash_attn_available",
]
