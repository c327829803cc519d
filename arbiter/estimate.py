"""Back-of-envelope cost of a run from its config alone: parameters, FLOPs, training memory.

Used by `arbiter sweep --dry-run` to show what each trial costs and to flag trials that cannot
fit the GPUs present, before anything runs. The parameter count is exact for `models.Theos`; the
memory figure is an estimate whose assumptions are spelled out in `training_memory_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbiter.config import Config

# fp32 master weights (4) + fp32 gradients (4) + AdamW's two fp32 moments (8), per parameter.
STATE_BYTES_PER_PARAM = 16
# CUDA context, cuBLAS workspaces and allocator slack, seen as a floor of a few hundred MiB.
RUNTIME_OVERHEAD_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Estimate:
    params: int
    flops_per_token: int
    memory_bytes: int


def estimate(config: Config) -> Estimate:
    return Estimate(
        params=parameter_count(config),
        flops_per_token=training_flops_per_token(config),
        memory_bytes=training_memory_bytes(config),
    )


def parameter_count(config: Config) -> int:
    """Exact: embedding, per layer attention (4 d^2), MLP (2 or 3 d h) and two norms, norm, head."""
    m = config.model
    d, vocab = m.dim, config.vocab_size()
    mlp_matrices = 3 if m.mlp == "swiglu" else 2
    per_layer = 4 * d * d + mlp_matrices * d * m.hidden_dim() + 2 * d
    head = 0 if m.tie_embeddings else vocab * d
    return vocab * d + m.n_layers * per_layer + d + head


def training_flops_per_token(config: Config) -> int:
    """Forward plus backward FLOPs per token: 6 per matmul weight plus 12 L d T for attention.

    The embedding lookup costs nothing but the output head is a matmul even when tied (the PaLM
    appendix convention; causal masking is not discounted, as in nanoGPT's MFU figure).
    """
    m = config.model
    d, vocab, seq = m.dim, config.vocab_size(), config.seq_len()
    mlp_matrices = 3 if m.mlp == "swiglu" else 2
    matmul_weights = m.n_layers * (4 * d * d + mlp_matrices * d * m.hidden_dim()) + vocab * d
    return 6 * matmul_weights + 12 * m.n_layers * d * seq


def training_memory_bytes(config: Config) -> int:
    """Peak memory of one training step on a GPU: optimizer state, activations, logits, runtime.

    Assumes AdamW with fp32 master weights, an attention kernel that keeps no T x T matrix
    (SDPA/flash on CUDA) and fp32 logits for the loss; see `activation_bytes` for the rest.
    """
    t = config.training
    tokens = t.batch_size * config.seq_len()
    logits = tokens * config.vocab_size() * (_compute_bytes(config) + 4 + 4)  # + fp32 copy, grad
    states = STATE_BYTES_PER_PARAM * parameter_count(config)
    return states + activation_bytes(config) + logits + RUNTIME_OVERHEAD_BYTES


def activation_bytes(config: Config) -> int:
    """Activations the blocks keep for the backward pass of one micro-batch.

    The residual stream is fp32 (saved at each norm's input); matmul outputs are in the compute
    dtype (2 bytes for bf16/fp16 and for `auto`, which picks one of them on a GPU; 4 for fp32).
    Gradient checkpointing keeps only each block's input, plus one block being recomputed.
    """
    m, t = config.model, config.training
    d, act = m.dim, _compute_bytes(config)
    tokens = t.batch_size * config.seq_len()
    residual = 4 * d
    attention = 2 * residual + act * (d + 3 * d + d)  # norm outputs, q k v, attention output
    mlp_inner = (3 if m.mlp == "swiglu" else 2) * m.hidden_dim()  # w1, w3 outputs, product
    per_block = attention + act * (d + mlp_inner)
    if t.gradient_checkpointing:
        return tokens * (m.n_layers * residual + per_block)
    return tokens * m.n_layers * per_block


def _compute_bytes(config: Config) -> int:
    return 4 if config.training.precision == "fp32" else 2
