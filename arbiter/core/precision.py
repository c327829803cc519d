"""The device a run trains on and the numeric precision it computes in.

`training.device` and `training.precision` (both may be "auto") resolve here, once, to a
`Precision`: the device, the name of the precision actually chosen, and the dtype autocast
computes matmuls in. The training loop then has a single code path whatever was chosen:

- Master weights stay fp32. The model is never cast to bf16/fp16; mixed precision comes only
  from `Precision.autocast()`, so the optimizer updates full-precision weights and small updates
  (late in a long grokking run) are not rounded away.
- The loss is computed in `training.loss_dtype` (fp32 or fp64), never in the compute precision:
  `core.loss.cross_entropy` up-casts the logits first, because a softmax over the vocabulary in
  half precision loses accuracy and rounds a confident prediction's loss to exactly zero.
- fp16 needs loss scaling to keep small gradients from underflowing; `Precision.grad_scaler()`
  always returns a `torch.amp.GradScaler`, enabled only for fp16, so the loop calls
  `scale`/`step`/`update` unconditionally and a disabled scaler passes everything through.

Choices: "auto" is bf16 on a GPU with native bf16 (Ampere or newer), fp16 on older GPUs and
fp32 on CPU. On CPU, bf16 is allowed (CPU autocast supports it) but fp16 is refused.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from arbiter.errors import UserError

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Precision:
    """The resolved device and precision of a run."""

    device: torch.device
    name: str
    """What was actually chosen: "bf16", "fp16" or "fp32" (never "auto")."""
    dtype: torch.dtype
    """The compute dtype under autocast; torch.float32 for fp32 (no autocast)."""

    def autocast(self) -> contextlib.AbstractContextManager:
        """A fresh context for the forward pass: autocast for bf16/fp16, a no-op for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


def resolve_device(requested: str) -> torch.device:
    """`training.device` to a concrete device: "auto" is CUDA when visible, else CPU."""
    if requested == "cpu":
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise UserError(f"training.device: unknown value {requested!r}; allowed: auto, cpu, cuda")
    if torch.cuda.is_available():
        # A concrete index (the current device, which Ray or CUDA_VISIBLE_DEVICES chose), so
        # that comparisons with a parameter's device (always indexed) hold.
        return torch.device("cuda", torch.cuda.current_device())
    if requested == "cuda":
        raise UserError(
            "training.device: 'cuda' requested but no CUDA device is visible; use auto or cpu"
        )
    return torch.device("cpu")


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """`training.precision` on `device` to the precision the run will use (see module doc)."""
    if requested not in ("auto", *_DTYPES):
        raise UserError(
            f"training.precision: unknown value {requested!r}; allowed: auto, bf16, fp16, fp32"
        )
    if device.type == "cuda":
        name = _resolve_on_cuda(requested, device)
    elif device.type == "cpu":
        name = _resolve_on_cpu(requested)
    else:
        raise UserError(
            f"training.device: unsupported device type {device.type!r}; use cpu or cuda"
        )
    return Precision(device=device, name=name, dtype=_DTYPES[name])


def describe(p: Precision) -> str:
    """One phrase for the run's log line, e.g. "cpu, fp32" or "cuda:0 (NVIDIA H100), bf16"."""
    where = str(p.device)
    if p.device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(p.device)})"
    what = p.name + (" with loss scaling" if p.name == "fp16" else "")
    return f"{where}, {what}"


def _resolve_on_cuda(requested: str, device: torch.device) -> str:
    bf16 = _native_bf16()
    if requested == "auto":
        return "bf16" if bf16 else "fp16"
    if requested == "bf16" and not bf16:
        major, minor = torch.cuda.get_device_capability(device)
        raise UserError(
            f"training.precision: bf16 requested but {torch.cuda.get_device_name(device)} "
            f"(compute capability {major}.{minor}) has no native bf16; it supports fp16 and fp32 "
            "(use auto, fp16 or fp32)"
        )
    return requested


def _resolve_on_cpu(requested: str) -> str:
    if requested == "fp16":
        raise UserError(
            "training.precision: fp16 on CPU is not a supported training path "
            "(no fp16 autocast with loss scaling there); use fp32 or bf16 on CPU"
        )
    if requested == "bf16":
        log.warning(
            "training.precision = bf16 on CPU: supported by CPU autocast, but slower than fp32 on "
            "most CPUs (only those with AVX512-BF16/AMX are faster)"
        )
        return "bf16"
    return "fp32"  # "auto" or "fp32"


def _native_bf16() -> bool:
    """Whether the current GPU (the one `resolve_device` picked) computes bf16 natively."""
    # Without including_emulation=False older GPUs report bf16 as "supported" through slow
    # emulation; such a GPU is better served by fp16 with a GradScaler.
    return torch.cuda.is_bf16_supported(including_emulation=False)
