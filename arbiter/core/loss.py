"""The loss numerics: cross-entropy over softmax or StableMax, in a chosen float precision.

Late in a grokking run the model is so confident on its training set that, in fp32, the softmax
of the correct class rounds to exactly 1: the loss and its gradient become exactly zero and only
weight decay moves the weights ("softmax collapse", Prieto et al., 2025, "Grokking at the Edge of
Numerical Stability"). Two remedies are offered: computing the loss in fp64 (as Nanda et al.'s
code does), and StableMax, whose probabilities grow linearly rather than exponentially with a
positive logit. Logits are always up-cast before either, whatever the compute precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from arbiter.core.data import IGNORE_INDEX

# `training.loss_dtype` as a torch dtype.
LOSS_DTYPES = {"fp32": torch.float32, "fp64": torch.float64}


def log_stablemax(logits: Tensor, dim: int = -1) -> Tensor:
    """The log of StableMax: s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0, normalised to
    probabilities s(x_i) / sum_j s(x_j) along `dim`."""
    return _LogStableMax.apply(logits.movedim(dim, -1)).movedim(-1, dim)


class _LogStableMax(torch.autograd.Function):
    """log StableMax along the last dimension, with its gradient written out: autograd through
    the two-branch formula keeps half a dozen logits-sized tensors (in fp64, for the loss) and
    runs as many kernels again backwards; this keeps the logits and one number per row.

    With r = 1 / (1 + |x|): log s(x) = sign(x) log(1 + |x|), d log s / dx = r on both sides of
    0, and s'(x) = 1 for x >= 0, 1 / (1 - x)^2 = r^2 below. So for an output gradient g, the
    input's is g_i r_i - (sum_j g_j) s'(x_i) / sum_j s(x_j)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        log_s = torch.log1p(x.abs()).copysign_(x)
        total = torch.where(x >= 0, x + 1, torch.reciprocal(1 - x)).sum(-1, keepdim=True)
        ctx.save_for_backward(x, total)
        return log_s - total.log()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, total = ctx.saved_tensors
        r = torch.reciprocal(1 + x.abs())
        slope = torch.where(x >= 0, 1.0, r * r)
        return grad * r - grad.sum(-1, keepdim=True) * slope / total


def cross_entropy(
    logits: Tensor,
    y: Tensor,
    kind: str = "softmax",
    dtype: torch.dtype = torch.float32,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of logits (..., V) against targets y (...), e.g. (B, T, V) with (B, T) or
    (B, 1, V) with (B, 1); targets equal to IGNORE_INDEX are not scored.

    kind: "softmax" or "stablemax"; dtype: the precision of the loss (logits are up-cast to it
    first); reduction: "mean" or "sum" over the scored positions, or "none": the loss of every
    position, flattened, 0 where not scored (a mask, not a selection: no host sync).
    """
    if kind not in ("softmax", "stablemax"):
        raise ValueError(f"unknown loss kind {kind!r}; allowed: softmax, stablemax")
    logits = logits.to(dtype)
    log_probs = F.log_softmax(logits, dim=-1) if kind == "softmax" else log_stablemax(logits)
    log_probs, targets = log_probs.flatten(0, -2), y.flatten()
    return F.nll_loss(log_probs, targets, ignore_index=IGNORE_INDEX, reduction=reduction)


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """For every position, flattened: the correct class's logit minus the largest other logit
    (float32 or wider), -inf where not scored. Positive where the prediction is right; large
    before a collapse."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    rows, targets = logits.flatten(0, -2).to(dtype), y.flatten()
    scored = targets != IGNORE_INDEX
    index = targets.clamp(min=0).unsqueeze(1)  # any class for the unscored rows, masked below
    correct = rows.gather(1, index).squeeze(1)
    others = rows.scatter(1, index, float("-inf")).amax(dim=1)
    return torch.where(scored, correct - others, float("-inf"))
