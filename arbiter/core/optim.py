"""The optimizer (AdamW, Adam or SGD over two parameter groups), ⊥Grad, and the learning-rate
schedule.

Weight decay is what makes grokking happen, so which tensors it touches matters: the matrices of
the linear layers are decayed; norm weights and any 1-D tensor (biases) never are, since pulling
a norm's gain towards zero only fights the normalisation; the embeddings (tokens, and learned
positions) are decayed only with `training.decay_embeddings`, and everything with
`training.decay_all`. AdamW decays decoupled from the gradient; Adam and SGD add the decay to
the gradient as an L2 term (torch's `weight_decay` of those optimizers).

The schedule is a pure function of the step, so a resumed run sets exactly the learning rate the
uninterrupted run would have.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from arbiter.config.schema import TrainingConfig

log = logging.getLogger(__name__)

# Modules whose weights are gains, never decayed whatever their shape.
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.RMSNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
)


def param_groups(
    model: nn.Module, weight_decay: float, decay_embeddings: bool, decay_all: bool = False
) -> list[dict[str, Any]]:
    """Two optimizer groups, always in this order: [decayed, not decayed].

    Both groups are always present (one may be empty) so that the group layout, which optimizer
    checkpoints record, does not depend on the model. Each group also lists its parameters'
    names, in model order, under `param_names` (torch's own key for them, kept in optimizer
    state dicts). Frozen parameters are left out.
    """
    # Decided by owning module, not by name: a weight tied to an embedding (lm_head) is the
    # embedding's, and named_parameters() yields it once under its first name.
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    norms = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters()}
    decay: dict[str, list] = {"params": [], "param_names": []}
    no_decay: dict[str, list] = {"params": [], "param_names": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if decay_all:
            decayed = True
        elif id(param) in embeddings:
            decayed = decay_embeddings
        else:
            decayed = param.ndim >= 2 and id(param) not in norms
        group = decay if decayed else no_decay
        group["params"].append(param)
        group["param_names"].append(name)
    return [
        {**decay, "weight_decay": weight_decay},
        {**no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, training: TrainingConfig, device: torch.device
) -> torch.optim.Optimizer:
    """`training.optimizer` over `param_groups`; move the model to `device` first (the fused
    kernels need CUDA).

    Every optimizer gets the same two groups, so an optimizer checkpoint has the same group
    layout whichever is chosen; each group's `weight_decay` is decoupled decay for AdamW and an
    L2 term in the gradient for Adam and SGD.
    """
    groups = param_groups(
        model, training.weight_decay, training.decay_embeddings, training.decay_all
    )
    decayed, kept = groups
    # On CUDA the fused kernel updates a whole group in one launch (torch has one for each of
    # the three); elsewhere torch picks its default implementation.
    fused = True if device.type == "cuda" else None
    lr = training.learning_rate
    if training.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=training.momentum, fused=fused
        )
        name, decay = f"SGD (momentum {training.momentum:g})", "L2 weight decay"
    else:
        adam = torch.optim.AdamW if training.optimizer == "adamw" else torch.optim.Adam
        betas = tuple(training.betas)
        optimizer = adam(groups, lr=lr, betas=betas, eps=training.eps, fused=fused)
        name = f"{adam.__name__} (eps {training.eps:g})"
        decay = "weight decay" if training.optimizer == "adamw" else "L2 weight decay"
    log.info(
        "optimizer: %s, %s %g on %d tensors (%s parameters), none on %d (%s)",
        name,
        decay,
        training.weight_decay,
        len(decayed["params"]),
        f"{sum(p.numel() for p in decayed['params']):,}",
        len(kept["params"]),
        f"{sum(p.numel() for p in kept['params']):,}",
    )
    return optimizer


@torch.no_grad()
def orthogonalize_gradients(params: Iterable[torch.Tensor]) -> None:
    """⊥Grad (Prieto et al., 2025), in place: each gradient loses its component along its own
    weight tensor, g - (<g, w> / <w, w>) w (both flattened), and is rescaled to its former norm.

    A step along w only scales the weights, which lowers the training loss of a model that
    already classifies its training set by inflating its logits, towards softmax collapse. A
    weight tensor of zeros leaves its gradient unchanged; a gradient parallel to its weights
    becomes zero. Parameters without a gradient are skipped. No host syncs.
    """
    for param in params:
        grad = param.grad
        if grad is None:
            continue
        weight = param.detach()
        norm = torch.linalg.vector_norm(grad)
        w_dot_w = torch.sum(weight * weight)
        along = torch.where(w_dot_w > 0, torch.sum(grad * weight) / w_dot_w, 0.0)
        grad.sub_(along * weight)
        left = torch.linalg.vector_norm(grad)
        # What is left of a gradient parallel to w is rounding error: rescaled to the full norm
        # it would be a step of noise. Below sqrt(eps) of the norm (an angle of ~0.02 degrees
        # from w in fp32) it counts as parallel.
        tolerance = torch.finfo(grad.dtype).eps ** 0.5 * norm
        grad.mul_(torch.where(left > tolerance, norm / left, 0.0))


def learning_rate(step: int, training: TrainingConfig) -> float:
    """The learning rate of optimizer step `step` (0-based).

    Warmup: lr * (step + 1) / warmup_steps, reaching lr at step warmup_steps - 1. Then
    "constant" stays at lr, and "cosine" follows half a cosine from lr (at the end of warmup) to
    min_lr_ratio * lr at the last step, steps - 1, and stays there beyond it.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    peak = training.learning_rate
    warmup = training.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    if training.lr_schedule == "constant":
        return peak
    start = max(warmup - 1, 0)  # the step at which the peak is reached
    end = training.steps - 1
    if end <= start:
        return peak  # no step is left to decay over
    progress = min((step - start) / (end - start), 1.0)
    floor = training.min_lr_ratio * peak
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (the schedule is applied by hand, not by an LR scheduler)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
