"""
Causal self-attention kernels for the theos models.

Three interchangeable implementations of softmax(Q K^T / sqrt(D) + causal mask) V:

- "sdpa":   torch.nn.functional.scaled_dot_product_attention, the default everywhere;
- "flash":  flash-attn 2, an optional package, only on Ampere+ GPUs in fp16/bf16;
- "manual": the formula written out in fp32, slow but obviously correct; tests compare
            the other two against it.

All of them take and return (B, H, T, D) tensors: batch, heads, time, head dim.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

KERNELS = ("sdpa", "flash", "manual")


@functools.cache
def _flash_attn_func():
    # Import once: a failed import is slow, and flash-attn is an optional dependency. Any
    # exception counts as "absent", since a wheel built for another CUDA fails with OSError.
    try:
        from flash_attn import flash_attn_func
    except Exception:
        return None
    return flash_attn_func


def flash_attn_available() -> bool:
    """Whether `flash_attn.flash_attn_func` can be imported."""
    return _flash_attn_func() is not None


def compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype attention really runs in on `device`: autocast's when it is on, else `dtype`."""
    if device.type in ("cuda", "cpu") and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


def choose_kernel(device: torch.device, dtype: torch.dtype, want_flash: bool) -> str:
    """Pick "flash" when it is asked for and can run here, otherwise "sdpa"."""
    if (
        want_flash
        and device.type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and flash_attn_available()
        and torch.cuda.get_device_capability(device)[0] >= 8  # flash-attn 2 needs Ampere+
    ):
        return "flash"
    return "sdpa"


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str, dropout_p: float = 0.0
) -> torch.Tensor:
    """Causal attention of q, k, v (B, H, T, D) with the named kernel; returns (B, H, T, D).

    q may hold only the last position (B, H, 1, D): it sees every key, so no mask applies (the
    kernels disagree on how a causal mask aligns when q is shorter than k).
    """
    causal = q.size(-2) > 1
    if causal and q.size(-2) != k.size(-2):
        raise ValueError(f"q has {q.size(-2)} positions, k {k.size(-2)}: expected equal, or q 1")
    if kernel == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    if kernel == "flash":
        flash_attn_func = _flash_attn_func()
        if flash_attn_func is None:
            raise RuntimeError("kernel 'flash' requested but flash-attn is not importable")
        # flash-attn wants (B, T, H, D)
        y = flash_attn_func(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=dropout_p,
            causal=causal,
        )
        return y.transpose(1, 2)
    if kernel == "manual":
        T, D = q.size(-2), q.size(-1)
        # autocast would quietly run the matmuls in half precision; the reference must not
        with torch.autocast(device_type=q.device.type, enabled=False):
            att = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(D)  # (B, H, T, T)
            if causal:
                future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(diagonal=1)
                att = att.masked_fill(future, float("-inf"))
            att = att.softmax(dim=-1)
            if dropout_p > 0.0:
                att = F.dropout(att, p=dropout_p)
            y = att @ v.float()
        return y.to(q.dtype)
    raise ValueError(f"unknown attention kernel {kernel!r}; expected one of {KERNELS}")
