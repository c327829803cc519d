"""Several trials per GPU: how many (`--trials-per-gpu K` or `auto`), and the GPU share each
trial reserves from Ray.

Ray counts resources in fixed point, 1/10,000 of a unit, and places a fractional GPU request on
one GPU only. A share of 1/K rounded to the nearest unit may admit only K-1 trials on a GPU
(1/7 -> 0.1429, and 7 x 0.1429 > 1); rounded down it admits exactly K, and never K+1, for every
K up to 99 (the schema allows 64). `auto` divides the smallest GPU's free memory by the
`--dry-run` estimate of the largest trial, which counts the CUDA context and workspaces each
trial (its own process) holds.

Nothing here imports Ray when loaded: `cluster_gpu_memory` imports it when called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from arbiter.config.estimate import estimate
from arbiter.config.trials import Trial
from arbiter.core.hardware import free_gpu_memory, visible_gpus
from arbiter.errors import UserError
from arbiter.ui import gib

RAY_UNITS = 10_000  # Ray's fixed-point resource unit: 1/10,000
AUTO_CAP = 16  # beyond this, kernel launches from many processes contend more than they gain
MARGIN = 0.9  # of the free memory: the estimate is an estimate, and allocators fragment


def gpu_share(trials_per_gpu: int) -> float:
    """The GPU fraction each of `trials_per_gpu` trials reserves: exactly that many fit on one
    GPU in Ray's fixed point, and never one more."""
    return math.floor(RAY_UNITS / trials_per_gpu) / RAY_UNITS


@dataclass(frozen=True)
class Packing:
    """How many trials share one GPU, and why (for the dry run and the start line)."""

    trials_per_gpu: int
    reason: str = ""


def auto_packing(largest_trial_bytes: int, smallest_gpu_free_bytes: int) -> Packing:
    """`auto`: as many of the largest trial as fit in the smallest GPU's free memory, with a
    margin, at most `AUTO_CAP`; one line and exit 2 when not even one fits."""
    need, free = gib(largest_trial_bytes), gib(smallest_gpu_free_bytes)
    usable = smallest_gpu_free_bytes * MARGIN
    k = min(int(usable // largest_trial_bytes), AUTO_CAP)
    if k < 1:
        raise UserError(
            f"--trials-per-gpu auto: the largest trial needs ~{need}, more than {gib(usable)} "
            f"of the smallest GPU's {free} free; shrink the model or the batch"
        )
    return Packing(k, f"packing {k} trials per GPU: largest trial needs ~{need} of {free} free")


def placement_words(gpus: int, packing: Packing) -> str:
    """Where a sweep's trials run, for its start line."""
    k = packing.trials_per_gpu
    if not gpus:
        return "CPUs, one trial per CPU slot"
    if k == 1:
        return f"{gpus} GPU(s), one per trial"
    return f"{gpus} GPU(s), {k} trials per GPU ({gpus * k} at once)"


def check_request(requested: int | str, gpus: int | None, address: str | None) -> None:
    """Before Ray starts: `--trials-per-gpu` other than 1 asks for GPUs, so `--gpus 0` (or no
    GPU on this machine, without a cluster) is one line. A template's value is ignored on CPUs
    instead (a GPU template smoke-tested on a laptop)."""
    no_gpus = gpus == 0 or (address is None and gpus is None and not visible_gpus())
    if requested != 1 and no_gpus:
        where = "--gpus is 0" if gpus == 0 else "this machine has no GPU"
        raise UserError(
            f"--trials-per-gpu {requested}: packs trials onto GPUs, and {where}; CPU trials "
            "take one --cpus-per-trial slot each"
        )


def decide(
    requested: int | str, gpus: int, trials: Sequence[Trial], address: str | None
) -> Packing:
    """How many trials share each of the sweep's `gpus` GPUs (1 for CPU trials). `auto` measures
    the free memory of this machine's GPUs, or of the joined cluster's (Ray connected)."""
    if gpus == 0:
        return Packing(1)
    if requested != "auto":
        return Packing(int(requested))
    largest = max(estimate(t.config).memory_bytes for t in trials)
    free = free_gpu_memory() if address is None else cluster_gpu_memory()
    if not free:
        raise UserError("--trials-per-gpu auto: no CUDA GPU found to measure; give a number")
    return auto_packing(largest, min(free))


def cluster_gpu_memory() -> list[int]:
    """The free bytes of every GPU of the joined Ray cluster, measured on the GPU nodes by one
    task each that reserves all of its node's GPUs (so, before trials start). UserError when a
    node's GPUs are not CUDA devices (logical GPUs, `ray start --num-gpus` on a CPU host)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote
    def free_memory() -> list[int] | None:
        import torch

        if not torch.cuda.is_available():
            return None
        return [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) >= 1]
    refs = {
        n["NodeManagerAddress"]: free_memory.options(
            num_gpus=int(n["Resources"]["GPU"]),
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
        ).remote()
        for n in nodes
    }
    free: list[int] = []
    for address, ref in refs.items():
        found = ray.get(ref, timeout=120)
        if not found:
            raise UserError(
                f"--trials-per-gpu auto: the GPUs of the node at {address} are not CUDA devices "
                "(logical GPUs?), so their memory cannot be measured; give a number instead"
            )
        free.extend(found)
    return free
