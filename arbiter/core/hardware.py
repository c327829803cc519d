"""What hardware this process sees: GPUs and their memory.

torch is imported inside the functions so that commands which never touch a GPU start quickly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_bytes: int


def visible_gpus() -> list[Gpu]:
    """The CUDA devices torch can use here (respects CUDA_VISIBLE_DEVICES); empty on CPU hosts."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(Gpu(index, props.name, props.total_memory))
    return gpus


def free_gpu_memory() -> list[int]:
    """The free bytes of each CUDA device visible here (none on CPU hosts)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]


# Dense bf16/fp16 tensor-core peak FLOP/s per GPU, from the vendors' data sheets (no sparsity).
# Matched by substring of torch's device name; a GPU not listed gets no MFU figure.
PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card peaks at 756e12
    "A100": 312e12,
    "L40S": 362e12,
    "A6000": 155e12,
    "A10": 125e12,
    "4090": 165e12,
    "3090": 71e12,
    "V100": 125e12,
    "T4": 65e12,
}


def peak_flops(device_name: str) -> float | None:
    """The 16-bit dense peak of a GPU by name, or None when it is not in the table."""
    if "H100" in device_name and "PCIe" in device_name:
        return 756e12
    return next((peak for key, peak in PEAK_FLOPS.items() if key in device_name), None)
