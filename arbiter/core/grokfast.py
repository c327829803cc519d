"""Grokfast: amplify the slow component of the gradients (Lee et al., 2024, "Grokfast:
Accelerated Grokking by Amplifying Slow Gradients").

The paper reads a parameter's gradient over training steps as a signal: its fast-varying part
drives memorization, its slow-varying part generalization. Grokfast-EMA low-pass filters that
signal with an exponential moving average and adds it back, amplified, before the optimizer step:

    h <- alpha * h + (1 - alpha) * g      (h starts as the first gradient)
    g <- g + lamb * h

The filter sits between backward (after gradient unscaling) and clipping, so clipping bounds
the step actually taken. Its averages are part of the checkpoint: resume stays exact.
"""

from __future__ import annotations

from typing import Any

import torch


class Grokfast:
    """The EMA gradient filter over a fixed list of parameters.

    With `guard_overflow` (fp16 with a GradScaler) a step whose gradients overflowed leaves the
    averages as they were: the scaler skips that step, and the filter must not take it in either.
    """

    def __init__(
        self, params: list[torch.nn.Parameter], alpha: float, lamb: float, guard_overflow: bool
    ) -> None:
        self.params = params
        self.alpha = alpha
        self.lamb = lamb
        self.guard_overflow = guard_overflow
        self.ema: list[torch.Tensor] | None = None
        self.started: torch.Tensor  # guarded mode: whether a finite gradient started the averages

    @torch.no_grad()
    def filter(self) -> None:
        """Update the averages with the current gradients and amplify the gradients in place."""
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            # Every parameter takes part in every forward pass: a missing gradient means the
            # filter was called before backward.
            raise RuntimeError("Grokfast.filter needs a gradient for every parameter")
        if not self.guard_overflow:
            if self.ema is None:
                self.ema = [g.detach().clone() for g in grads]
            else:
                torch._foreach_lerp_(self.ema, grads, 1.0 - self.alpha)
        else:
            self._guarded_update(grads)
        torch._foreach_add_(grads, self.ema, alpha=self.lamb)

    def _guarded_update(self, grads: list[torch.Tensor]) -> None:
        """The same update, decided on the device (no host sync per step): an overflowed step
        (the scaler's first steps often are) changes nothing, and the first finite gradient
        starts the averages."""
        if self.ema is None:
            self.ema = [torch.zeros_like(g) for g in grads]
            self.started = torch.zeros((), dtype=torch.bool, device=grads[0].device)
        finite = torch.stack(torch._foreach_norm(grads)).sum().isfinite()
        averaged = torch._foreach_lerp(self.ema, grads, 1.0 - self.alpha)
        for ema, grad, avg in zip(self.ema, grads, averaged, strict=True):
            torch.where(finite, torch.where(self.started, avg, grad), ema, out=ema)
        self.started |= finite

    def state_dict(self) -> dict[str, Any]:
        if self.ema is None:
            return {"ema": None, "started": False}
        started = bool(self.started) if self.guard_overflow else True  # a sync, at saves only
        return {"ema": [t.clone() for t in self.ema], "started": started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ema = state["ema"]
        if ema is None:
            self.ema = None
            return
        if len(ema) != len(self.params):
            raise ValueError(f"Grokfast state has {len(ema)} tensors, the model {len(self.params)}")
        self.ema = [t.to(p.device, p.dtype) for t, p in zip(ema, self.params, strict=True)]
        self.started = torch.tensor(state["started"], device=self.ema[0].device)
