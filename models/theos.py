"""
Theos: the decoder-only transformer that the sweeps train.

The whole network is in this file: config, rotary position embeddings, attention, MLP,
block and model. It is a GPT with the now-usual modernisations: pre-norm RMSNorm, rotary
position embeddings instead of a learned position table, a SwiGLU (or GELU) MLP, and no
biases. The grokking literature's original model (Nanda et al. 2023: no norms, learned
positions, ReLU MLP with biases, its own initialisation) is the same network with
`norm="none"`, `positions="learned"`, `mlp="relu"`, `mlp_bias=True`, `init="nanda"`; Grokfast's
(Lee et al. 2024) is `norm="layernorm"`, `block="norm_stream"`, `positions="learned"`,
`mlp="gelu"`, `mlp_bias=True`, `attn_bias=True`, `init="torch"`; Power et al.'s (2022, the
first grokking paper) is `norm="layernorm"`, `block="post_norm"`, `positions="sinusoidal"`,
`mlp="relu"`, `init="torch_linear"`.
Attention kernels live in attention.py.

Shape names: B batch, T time (sequence length), C channels (dim), H heads,
D head dim (C // H), V vocabulary size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .attention import causal_attention, choose_kernel, compute_dtype
from .choices import Activation, BlockKind, Init, Norm, Positions, check_choices


@dataclass(frozen=True)
class TheosConfig:
    vocab_size: int
    seq_len: int  # maximum sequence length (RoPE tables are built for it)
    dim: int
    n_layers: int
    n_heads: int
    # Hidden width of the MLP. Given, not derived: the config that builds the model (Arbiter's
    # `[model]` table) chooses the default, 4*dim, or 8*dim/3 rounded up to 64 for SwiGLU.
    mlp_dim: int
    mlp: Activation = "swiglu"
    tie_embeddings: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    norm: Norm = "rmsnorm"  # "none": no normalisation layers at all
    # "learned": a position table added to the embedding; "sinusoidal": the fixed table of
    # Vaswani et al., added likewise
    positions: Positions = "rope"
    dropout: float = 0.0
    flash_attention: bool = False  # allow flash-attn when it is usable
    mlp_bias: bool = False  # biases in the MLP's linear layers (Nanda et al.'s model has them)
    attn_bias: bool = False  # biases in attention's q, k, v and output projections
    # "pre_norm": x + attn(norm1(x)); "norm_stream": x = norm1(x), then x + attn(x), so the
    # residual stream itself is normalised at every block (Grokfast's code); "post_norm":
    # norm1(x + attn(x)), then norm2(x + mlp(x)), with no final norm (the original Transformer,
    # and Power et al.'s code)
    block: BlockKind = "pre_norm"
    init: Init = "gpt2"  # see Theos._init_weights

    def __post_init__(self) -> None:
        check_choices(
            self, mlp=Activation, norm=Norm, positions=Positions, init=Init, block=BlockKind
        )
        if self.mlp_dim <= 0:
            raise ValueError(f"mlp_dim must be positive, got {self.mlp_dim}")
        if self.dim % self.n_heads != 0:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.positions == "rope" and (self.dim // self.n_heads) % 2 != 0:
            raise ValueError(f"head_dim {self.dim // self.n_heads} must be even for RoPE")


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angle for every (position, channel pair), each (T, D/2)."""
    # pair i turns at frequency theta^(-2i/D): fast pairs resolve nearby positions,
    # slow pairs distant ones
    freqs = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def sinusoidal_table(seq_len: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s fixed position table (T, C): channel 2i is sin(pos / 10000^(2i/C)),
    channel 2i + 1 the cos of the same angle."""
    angles = torch.outer(
        torch.arange(seq_len, dtype=torch.float64),
        10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim),
    )
    table = torch.zeros(seq_len, dim, dtype=torch.float64)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles.cos()[:, : dim // 2]
    return table.float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x (B, H, T, D) by their position's angle."""
    # Rotating q and k by angles proportional to position makes q.k depend only on the
    # positions' difference. Done in fp32 and cast back, so a half-precision q stays half.
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TheosConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        bias = config.attn_bias
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=bias)  # q, k, v fused
        self.proj = nn.Linear(config.dim, config.dim, bias=bias)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
        kernel: str,
        last_only: bool = False,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or (B, 1, C) for the last position alone with `last_only`."""
        B, T, C = x.shape
        H = self.n_heads
        # (B, T, 3C) -> (3, B, H, T, D): heads become a batch dimension for the kernel
        q, k, v = self.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if last_only:
            q = q[:, :, -1:]
        y = causal_attention(q, k, v, kernel, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, q.size(2), C)  # (B, H, T, D) -> (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: TheosConfig):
        super().__init__()
        hidden = config.mlp_dim
        self.gated = config.mlp == "swiglu"
        bias = config.mlp_bias
        self.w1 = nn.Linear(config.dim, hidden, bias=bias)
        self.w3 = nn.Linear(config.dim, hidden, bias=bias) if self.gated else None
        self.w2 = nn.Linear(hidden, config.dim, bias=bias)
        self.activation = F.relu if config.mlp == "relu" else F.gelu
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.w1(x)) * self.w3(x) if self.gated else self.activation(self.w1(x))
        return self.drop(self.w2(h))


def make_norm(config: TheosConfig) -> nn.Module:
    """A norm layer, or the identity for `norm="none"`."""
    if config.norm == "none":
        return nn.Identity()
    if config.norm == "layernorm":
        return nn.LayerNorm(config.dim, eps=config.norm_eps)
    return nn.RMSNorm(config.dim, eps=config.norm_eps)


class Block(nn.Module):
    def __init__(self, config: TheosConfig):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = make_norm(config)
        self.mlp = MLP(config)
        self.kind = config.block

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
        kernel: str,
        last_only: bool = False,
    ) -> torch.Tensor:
        if self.kind == "post_norm":  # each branch reads the stream; each sum is normalised
            attended = self.attn(x, cos, sin, kernel, last_only)
            x = self.norm1((x[:, -1:] if last_only else x) + attended)
            return self.norm2(x + self.mlp(x))
        if self.kind == "norm_stream":
            x = self.norm1(x)  # the stream itself: what the branch reads is what it adds to
            attended = self.attn(x, cos, sin, kernel, last_only)
        else:
            attended = self.attn(self.norm1(x), cos, sin, kernel, last_only)
        x = (x[:, -1:] if last_only else x) + attended
        x = x + self.mlp(self.norm2(x))
        return x


class Theos(nn.Module):
    def __init__(self, config: TheosConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        # post_norm blocks end in a norm of their own: the output layer reads the last one's
        self.norm = nn.Identity() if config.block == "post_norm" else make_norm(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.pos_emb = None
        if config.positions == "learned":
            self.pos_emb = nn.Embedding(config.seq_len, config.dim)
        elif config.positions == "sinusoidal":  # a function of the config: not saved
            table = sinusoidal_table(config.seq_len, config.dim)
            self.register_buffer("pos_table", table, persistent=False)
        else:
            # Not persistent: a function of the config, so checkpoints need not carry them.
            cos, sin = rope_tables(config.seq_len, config.dim // config.n_heads, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

        self.gradient_checkpointing = False
        self.force_kernel: str | None = None  # "sdpa" | "flash" | "manual" overrides the choice
        self._last_kernel: tuple[tuple[torch.device, torch.dtype], str] | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        """gpt2: N(0, 0.02^2), the residual branches' output projections smaller; nanda: std
        1/sqrt(dim), the output layer 1/sqrt(vocab) (Nanda et al.'s code); torch: the layers'
        own defaults (Embedding N(0, 1), Linear uniform in +-1/sqrt(fan_in), biases too), the
        attention as nn.MultiheadAttention initialises itself (q, k, v Xavier-uniform as one
        matrix, its biases zero); torch_linear: every layer's own default, q, k and v too (as
        nn.Linear layers of their own, uniform in +-1/sqrt(dim): Power et al.'s code)."""
        init = self.config.init
        if init == "torch_linear":  # q, k and v as nn.Linear layers keep nn.Linear's own
            return
        if init == "torch":
            for block in self.blocks:
                nn.init.xavier_uniform_(block.attn.qkv.weight)
                for bias in (block.attn.qkv.bias, block.attn.proj.bias):
                    if bias is not None:
                        nn.init.zeros_(bias)
            return
        std = 0.02 if init == "gpt2" else 1 / math.sqrt(self.config.dim)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.RMSNorm, nn.LayerNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        if init == "nanda":
            nn.init.normal_(self.lm_head.weight, std=1 / math.sqrt(self.config.vocab_size))
            return
        # Every block adds two branches onto the residual stream; shrinking their output
        # projections keeps the stream's variance from growing with depth (as GPT-2 does).
        std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=std)
            nn.init.normal_(block.mlp.w2.weight, mean=0.0, std=std)

    def num_parameters(self, exclude_embedding: bool = False) -> int:
        """Parameter count; exclude_embedding drops the token embedding table (V*C) once."""
        n = sum(p.numel() for p in self.parameters())  # a tied weight is yielded once
        return n - self.tok_emb.weight.numel() if exclude_embedding else n

    def _pick_kernel(self, device: torch.device) -> str:
        if self.force_kernel is not None:
            return self.force_kernel
        dtype = compute_dtype(device, self.tok_emb.weight.dtype)
        return choose_kernel(device, dtype, self.config.flash_attention)

    @property
    def attention_kernel(self) -> str:
        """The kernel the last forward used; until a forward on the current device/dtype, the
        one it would pick (outside autocast)."""
        w = self.tok_emb.weight
        if self._last_kernel is not None and self._last_kernel[0] == (w.device, w.dtype):
            return self._last_kernel[1]
        return self._pick_kernel(w.device)

    def forward(self, idx: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V), in the compute dtype.

        `last_only`: the logits of the last position alone, (B, 1, V). The last block then
        computes its queries, MLP and output for that position only, since nothing else reaches
        the logits (4x less work in that block on the modular task's [a, op, b, =]).
        """
        if idx.size(1) > self.config.seq_len:
            raise ValueError(f"sequence length {idx.size(1)} exceeds seq_len {self.config.seq_len}")
        T = idx.size(1)
        w = self.tok_emb.weight
        # Decided per call (it is cheap) so that .to(device) and autocast are honoured.
        kernel = self._pick_kernel(w.device)
        self._last_kernel = ((w.device, w.dtype), kernel)
        cos = sin = None  # positions added to the embedding: q and k are not rotated
        x = self.tok_emb(idx)  # (B, T, C)
        if self.config.positions == "rope":
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        elif self.pos_emb is not None:
            x = x + self.pos_emb.weight[:T]
        else:
            x = x + self.pos_table[:T]
        x = self.drop(x)
        last_block = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            args = (x, cos, sin, kernel, last_only and i == last_block)
            if self.gradient_checkpointing and self.training:
                # keep only each block's input; its activations are recomputed in backward
                x = checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        return self.lm_head(self.norm(x))
