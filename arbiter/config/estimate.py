"""Back-of-envelope cost of a run from its config alone: parameters, FLOPs, training memory.

Used by `arbiter sweep --dry-run` to show what each trial costs and to flag trials that cannot
fit the GPUs present, before anything runs. The parameter count is exact for `models.Theos` and
`models.OneHotMLP` (`model.arch = "mlp"`, whose figures are a branch of each function); the
memory figure is an estimate whose assumptions are spelled out in `training_memory_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbiter.config.schema import Config

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
    """Exact: embedding, per layer attention (4 d^2, and its biases), MLP (2 or 3 d h, and its
    biases) and two norms, the final norm (none after post_norm blocks), head, and a learned
    position table; for the one-hot MLP its matrices and hidden biases."""
    m = config.model
    if m.arch == "mlp":
        biases = m.n_layers * m.dim if m.mlp_bias else 0
        return _mlp_weights(config) + biases
    d, vocab = m.dim, config.vocab_size()
    mlp_matrices = 3 if m.mlp == "swiglu" else 2
    per_norm = {"none": 0, "rmsnorm": d, "layernorm": 2 * d}[m.norm]  # gains, and biases
    final_norm = 0 if m.block == "post_norm" else 1
    norms = (2 * m.n_layers + final_norm) * per_norm
    head = 0 if m.tie_embeddings else vocab * d
    positions = config.seq_len() * d if m.positions == "learned" else 0
    # one bias per hidden unit of each input matrix, and one per channel of the output matrix
    mlp_biases = (mlp_matrices - 1) * m.hidden_dim() + d if m.mlp_bias else 0
    attn_biases = 4 * d if m.attn_bias else 0  # q, k, v and the output projection
    per_layer = 4 * d * d + attn_biases + mlp_matrices * d * m.hidden_dim() + mlp_biases
    return vocab * d + m.n_layers * per_layer + norms + head + positions


def training_flops_per_token(config: Config) -> int:
    """Forward plus backward FLOPs per token: 6 per matmul weight plus 12 L d T for attention.

    The embedding lookup costs nothing but the output head is a matmul even when tied (the PaLM
    appendix convention; causal masking is not discounted, as in nanoGPT's MFU figure). On the
    modular task only the answer is scored: the last block computes keys and values for every
    position but its queries, attention output, MLP and the head for the last one alone. The
    one-hot MLP runs once per sequence; its first layer is counted as the dense matmul it is.
    """
    m = config.model
    d, vocab, seq = m.dim, config.vocab_size(), config.seq_len()
    if m.arch == "mlp":  # one pass per sequence: its cost spread over the sequence's tokens
        return round(6 * _mlp_weights(config) / seq)
    mlp_matrices = 3 if m.mlp == "swiglu" else 2
    per_position = d * d + mlp_matrices * d * m.hidden_dim() + vocab * d  # after q, k, v
    share = 1 / seq if config.data.task == "modular" else 1.0  # of the last block and head
    matmul_weights = (
        (m.n_layers - 1) * (4 * d * d + mlp_matrices * d * m.hidden_dim())
        + 3 * d * d
        + share * per_position
    )
    return round(6 * matmul_weights + 12 * d * seq * (m.n_layers - 1 + share))


def training_memory_bytes(config: Config) -> int:
    """Peak memory of one training step on a GPU: optimizer state, activations, logits, runtime.

    Assumes AdamW with fp32 master weights, an attention kernel that keeps no T x T matrix
    (SDPA/flash on CUDA) and fp32 logits for the loss; see `activation_bytes` for the rest.
    """
    t = config.training
    # the modular task scores one answer per sequence, and only its logits are computed
    answer_only = config.data.task == "modular"
    rows = t.batch_size * (1 if answer_only else config.seq_len())
    classes = config.data.modulus if config.model.arch == "mlp" else config.vocab_size()
    logits = rows * classes * (_compute_bytes(config) + 4 + 4)  # + fp32 copy, grad
    states = STATE_BYTES_PER_PARAM * parameter_count(config)
    return states + activation_bytes(config) + logits + RUNTIME_OVERHEAD_BYTES


def activation_bytes(config: Config) -> int:
    """Activations the blocks keep for the backward pass of one micro-batch.

    Per token and block, what the forward pass saves: the fp32 residual stream at both norms'
    inputs with their fp32 1/rms; in the compute dtype (2 bytes for bf16/fp16 and for `auto`,
    which picks one of them on a GPU; 4 for fp32) the norms' outputs as the matmuls read them (one
    tensor in fp32; under autocast each matmul casts its own copy: qkv, and w1 and w3 of SwiGLU),
    the qkv output (v is a view of it), q and k after the rotary embedding (new tensors), the
    attention output, and the MLP's hidden activations: w1 and w3 outputs, silu(w1) and their
    product for SwiGLU, w1's output and its GELU for GELU; and the attention kernel's fp32
    log-sum-exp per head. Under autocast, each matmul weight's 16-bit copy is saved too.
    Gradient checkpointing keeps only each block's input, plus one block being recomputed.

    Measured exactly by `benchmarks/memory.py` on the CPU, where two more tensors per block are
    saved that CUDA kernels do not keep: each RMSNorm's fp32 normalized input (the CPU runs the
    composite RMSNorm; CUDA's fused kernel keeps only the input and 1/rms) and a copy of the
    attention output with its heads merged (CUDA's SDPA and flash kernels return that layout).
    """
    m, t = config.model, config.training
    if m.arch == "mlp":
        # the one-hot input, then each hidden layer's output before and after its activation
        inputs = 2 * config.data.modulus
        return t.batch_size * _compute_bytes(config) * (inputs + 2 * m.n_layers * m.dim)
    d, hidden, act = m.dim, m.hidden_dim(), _compute_bytes(config)
    gated = m.mlp == "swiglu"
    autocast = act < 4
    tokens = t.batch_size * config.seq_len()
    residual = 4 * d
    norms = 2 * (residual + 4)  # each norm's input (the residual stream) and its 1/rms
    # qkv's input, qkv output, rotated q and k, attention output; fp32 log-sum-exp per head
    attention = act * d * (1 + 3 + 2 + 1) + 4 * m.n_heads
    mlp_inputs = 2 if gated and autocast else 1
    mlp = act * (mlp_inputs * d + (4 if gated else 2) * hidden)
    weights = 4 * d * d + (3 if gated else 2) * d * hidden  # the block's matmul weights
    per_block = tokens * (norms + attention + mlp) + (2 * weights if autocast else 0)
    if t.gradient_checkpointing:
        # every block's input; in the backward pass one block is recomputed beside them
        return tokens * (m.n_layers - 1) * residual + per_block
    return m.n_layers * per_block


def _mlp_weights(config: Config) -> int:
    """The one-hot MLP's matrices: the input layer reads the two operands, each one-hot over the
    residues, and the output layer gives a logit per residue."""
    m, residues = config.model, config.data.modulus
    return 2 * residues * m.dim + (m.n_layers - 1) * m.dim * m.dim + m.dim * residues


def _compute_bytes(config: Config) -> int:
    return 4 if config.training.precision == "fp32" else 2
