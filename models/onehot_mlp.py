"""
OneHotMLP: a multilayer perceptron on one-hot codes, the other network of the grokking papers.

Prieto et al. 2025 ("Grokking at the Edge of Numerical Stability") show softmax collapse and
StableMax on an MLP that reads one-hot(a) concatenated with one-hot(b) (no embedding table):
two hidden layers of 200 ReLU units, no biases, PyTorch's default initialisation, and one logit
per residue. This is that network: the positions it reads (the operands; not the operation or
`=` tokens, always the same, which would only add a constant) are one-hot coded over `symbols`
values, the codes are concatenated, and it gives one logit per symbol: the answer's. It fits
tasks whose inputs and answer are drawn from one small set (the modular task), not language
modelling.

Its interface is the one the training core uses of `Theos`: `forward(idx, last_only)` returning
(B, 1, symbols) logits, `lm_head` (the output layer, whose norm is a diagnostic), and the
attributes `gradient_checkpointing` and `attention_kernel`, which mean nothing here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .choices import Init, MLPActivation, check_choices


@dataclass(frozen=True)
class OneHotMLPConfig:
    symbols: int  # values an input position holds and the answer is one of (a task's residues)
    seq_len: int  # tokens per sequence
    reads: tuple[int, ...]  # the positions read (the operands), each one-hot over `symbols`
    dim: int  # width of each hidden layer
    n_layers: int  # hidden layers
    activation: MLPActivation = "relu"
    bias: bool = False  # biases in the hidden layers (the output layer never has one)
    init: Init = "torch"  # see OneHotMLP._init_weights

    def __post_init__(self) -> None:
        check_choices(self, activation=MLPActivation, init=Init)
        in_range = all(0 <= i < self.seq_len for i in self.reads)
        if not self.reads or not in_range or len(set(self.reads)) < len(self.reads):
            raise ValueError(
                f"reads must name distinct positions 0..{self.seq_len - 1}, got {self.reads}"
            )

    def input_dim(self) -> int:
        return len(self.reads) * self.symbols


class OneHotMLP(nn.Module):
    def __init__(self, config: OneHotMLPConfig):
        super().__init__()
        self.config = config
        fan_ins = [config.input_dim()] + [config.dim] * (config.n_layers - 1)
        self.hidden = nn.ModuleList(nn.Linear(n, config.dim, bias=config.bias) for n in fan_ins)
        self.activation = F.relu if config.activation == "relu" else F.gelu
        self.lm_head = nn.Linear(config.dim, config.symbols, bias=False)
        self.gradient_checkpointing = False  # nothing worth recomputing in so small a network
        self._init_weights()

    @property
    def attention_kernel(self) -> str:
        return "none (mlp)"

    def _init_weights(self) -> None:
        """torch: the layers' own defaults (uniform in +-1/sqrt(fan_in), biases too), as
        Prieto et al.'s code; gpt2: N(0, 0.02^2); nanda: std 1/sqrt(dim), the output layer
        1/sqrt(symbols). Biases start at zero except with torch."""
        init = self.config.init
        if init == "torch":
            return
        std = 0.02 if init == "gpt2" else 1 / math.sqrt(self.config.dim)
        for layer in self.hidden:
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        head_std = 1 / math.sqrt(self.config.symbols) if init == "nanda" else std
        nn.init.normal_(self.lm_head.weight, std=head_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, last_only: bool = True) -> torch.Tensor:
        """Token ids (B, T) -> the logits of the answer, (B, 1, symbols), in the compute dtype.
        `last_only` is accepted for the core's sake: there are no other logits."""
        if idx.size(1) != self.config.seq_len:
            raise ValueError(f"sequence length {idx.size(1)} is not seq_len {self.config.seq_len}")
        first = self.hidden[0].weight
        # One-hot codes times the first layer: the same as summing a column per position, but it
        # keeps the layer (and its fan-in) as published, and on the CPU it is as fast.
        operands = idx[:, list(self.config.reads)]
        x = F.one_hot(operands, self.config.symbols).flatten(1).to(first.dtype)
        for layer in self.hidden:
            x = self.activation(layer(x))
        return self.lm_head(x).unsqueeze(1)
