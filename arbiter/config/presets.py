"""Model presets: `[model] preset = NAME` stands for the network of a reference grokking codebase.

Each preset names every key that shapes its network, so it does not depend on Arbiter's own
defaults (RMSNorm, rotary positions, SwiGLU, GPT-2's small initial weights), which generalize
without a plateau where these networks grok. A key the configuration gives itself wins over its
preset's; training and data keys (optimizer, weight decay, batches, the table) are the
template's: see the `repro_*.toml` templates for each paper's.
"""

from __future__ import annotations

from typing import Any

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Power et al. 2022, the first grokking paper (openai/grok, grok/transformer.py): 2 post-norm
    # LayerNorm blocks of width 128, 4 heads, a ReLU MLP of 512 without biases, the fixed
    # sinusoidal position table, PyTorch's default weights with q, k, v as nn.Linear layers.
    "power": {
        "dim": 128,
        "n_layers": 2,
        "n_heads": 4,
        "mlp": "relu",
        "mlp_dim": 512,
        "norm": "layernorm",
        "block": "post_norm",
        "positions": "sinusoidal",
        "mlp_bias": False,
        "attn_bias": False,
        "tie_embeddings": False,
        "init": "torch_linear",
    },
    # Lee et al. 2024, Grokfast (ironjr/grokfast, main.py): 2 blocks that normalise the
    # residual stream itself, nn.MultiheadAttention with biases, a GELU MLP of 512 with biases,
    # learned positions, PyTorch's default weights.
    "grokfast": {
        "dim": 128,
        "n_layers": 2,
        "n_heads": 4,
        "mlp": "gelu",
        "mlp_dim": 512,
        "norm": "layernorm",
        "block": "norm_stream",
        "positions": "learned",
        "mlp_bias": True,
        "attn_bias": True,
        "tie_embeddings": False,
        "init": "torch",
    },
    # Nanda et al. 2023, progress measures for grokking: 1 block without norms, a ReLU MLP of
    # 512 with biases, learned positions, every matrix with std 1/sqrt(128).
    "nanda": {
        "dim": 128,
        "n_layers": 1,
        "n_heads": 4,
        "mlp": "relu",
        "mlp_dim": 512,
        "norm": "none",
        "block": "pre_norm",
        "positions": "learned",
        "mlp_bias": True,
        "attn_bias": False,
        "tie_embeddings": False,
        "init": "nanda",
    },
}
