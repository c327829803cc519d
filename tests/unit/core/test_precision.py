"""Tests for resolving a run's device and precision (CPU everywhere; one test needs a GPU)."""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from arbiter.core.precision import Precision, describe, resolve_device, resolve_precision
from arbiter.errors import UserError

CPU = torch.device("cpu")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend no GPU is visible, so the CPU-host behaviour is tested on GPU hosts too."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_device_without_cuda_is_cpu(no_cuda: None) -> None:
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU


def test_cuda_device_without_cuda_is_a_one_line_user_error(no_cuda: None) -> None:
    with pytest.raises(UserError, match=r"training\.device: 'cuda' requested") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)
    assert "use auto or cpu" in str(info.value)


def test_auto_on_cpu_is_fp32_without_scaling_or_autocast() -> None:
    p = resolve_precision("auto", CPU)
    assert (p.name, p.dtype, p.device) == ("fp32", torch.float32, CPU)
    assert isinstance(p.autocast(), contextlib.nullcontext)
    scaler = p.grad_scaler()
    assert isinstance(scaler, torch.amp.GradScaler)
    assert not scaler.is_enabled()
    assert resolve_precision("fp32", CPU) == p
    assert describe(p) == "cpu, fp32"


def test_disabled_scaler_passes_the_loss_through() -> None:
    # The loop always calls scale/step/update; for fp32 they must be a plain optimizer step.
    scaler = resolve_precision("fp32", CPU).grad_scaler()
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    loss = (weight * 2).sum()
    scaled = scaler.scale(loss)
    assert scaled is loss
    scaled.backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(weight.detach(), torch.zeros(3))


def test_fp16_on_cpu_is_a_one_line_user_error() -> None:
    with pytest.raises(UserError, match=r"training\.precision") as info:
        resolve_precision("fp16", CPU)
    message = str(info.value)
    assert "\n" not in message
    assert "use fp32 or bf16 on CPU" in message


def test_bf16_on_cpu_autocasts_matmuls_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="arbiter.core.precision"):
        p = resolve_precision("bf16", CPU)
    assert (p.name, p.dtype) == ("bf16", torch.bfloat16)
    assert any("slow" in r.getMessage() for r in caplog.records)
    assert not p.grad_scaler().is_enabled()  # bf16 has fp32's range: no loss scaling
    a, b = torch.randn(4, 8), torch.randn(8, 2)
    with p.autocast():
        inside = a @ b
    assert inside.dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32  # the context ends cleanly
    assert describe(p) == "cpu, bf16"


def test_unknown_values_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"training\.precision"):
        resolve_precision("fp8", CPU)
    with pytest.raises(UserError, match=r"training\.device"):
        resolve_device("tpu")


def test_bf16_on_a_gpu_without_bf16_names_what_it_supports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The capability queries are faked, so this runs without a GPU.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    gpu = torch.device("cuda", 0)
    with pytest.raises(UserError, match=r"training\.precision") as info:
        resolve_precision("bf16", gpu)
    message = str(info.value)
    assert "\n" not in message
    assert "Tesla T4" in message and "fp16" in message
    assert resolve_precision("auto", gpu).name == "fp16"
    assert resolve_precision("fp16", gpu).name == "fp16"
    assert resolve_precision("fp32", gpu).name == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_cuda_picks_bf16_where_native_else_fp16() -> None:
    device = resolve_device("auto")
    assert device.type == "cuda"
    p = resolve_precision("auto", device)
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert p.name == ("bf16" if native else "fp16")
    assert p.dtype == (torch.bfloat16 if native else torch.float16)
    assert p.grad_scaler().is_enabled() == (p.name == "fp16")
    a = torch.randn(4, 8, device=device)
    with p.autocast():
        assert (a @ a.T).dtype == p.dtype
    assert isinstance(p, Precision)
    assert describe(p).startswith(f"{device} (")
