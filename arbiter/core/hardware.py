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
