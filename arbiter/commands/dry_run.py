"""`arbiter sweep --dry-run`: every trial of a template with its cost, without starting Ray.

One row per trial: swept values (and the sizes `[sweep.budget]` derived, with each trial's
distance from the budget), parameters, training FLOPs per token and estimated training memory,
with a mark on trials that cannot fit the smallest GPU visible here, and how trials share a GPU
(`--trials-per-gpu`).
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from arbiter.config.budget import derived_keys
from arbiter.config.estimate import estimate
from arbiter.config.schema import Config, SweepConfig
from arbiter.config.space import Grid
from arbiter.config.trials import Trial
from arbiter.core.hardware import free_gpu_memory, visible_gpus
from arbiter.errors import UserError
from arbiter.tune.packing import auto_packing
from arbiter.ui import console, gib, show, si


def print_dry_run(
    path: Path,
    template: Config,
    trials: list[Trial],
    gpus: int | None,
    trials_per_gpu: int | str = 1,
) -> None:
    """The heading, the table of trials and what was checked against this machine's GPUs."""
    assert template.sweep is not None
    sweep, out = template.sweep, console()
    devices = visible_gpus()
    limit = min((g.memory_bytes for g in devices), default=None)
    out.print(f"{path}: {len(trials)} trials, {_how_run(sweep, gpus, trials_per_gpu)}")
    if sweep.budget:
        out.print(
            f"Each trial sized to a budget of {si(round(sweep.budget.params))} parameters: "
            f"{sweep.budget.derive} derived (within {sweep.budget.tolerance:.0%})."
        )
    table, largest, too_big = _cost_table(sweep, trials, limit)
    out.print(table)
    if any(
        not isinstance(axis, Grid) or sweep.strategy != "grid" for axis in sweep.axes().values()
    ):
        out.print(
            "Sampled values are a seeded preview: Ray Tune draws its own when the sweep runs."
        )
    if limit is None:
        out.print(
            "No GPU visible here: memory is estimated for a GPU run but not checked against one."
        )
    else:
        names = ", ".join(sorted({g.name for g in devices}))
        out.print(
            f"Checked against {len(devices)} GPU(s) ({names}), smallest {gib(limit)}: "
            f"{too_big} trial(s) do not fit."
        )
    if gpus != 0:
        out.print(_packing(largest, trials_per_gpu))
    if gpus and len(devices) and gpus > len(devices):
        out.print(f"Note: --gpus {gpus} asks for more GPUs than the {len(devices)} visible here.")


def _how_run(sweep: SweepConfig, gpus: int | None, trials_per_gpu: int | str) -> str:
    """The strategy, scheduler, ranking and how many trials run at once."""
    per_gpu = "one per GPU" if trials_per_gpu == 1 else f"{trials_per_gpu} per GPU"
    if gpus == 0:
        concurrency = "one per CPU slot"
    elif gpus and trials_per_gpu != "auto":
        concurrency = f"{gpus * int(trials_per_gpu)} at a time, {per_gpu}"
    else:
        concurrency = per_gpu
    return (
        f"strategy {sweep.strategy}, scheduler {sweep.scheduler}, "
        f"ranked by {sweep.metric} ({sweep.mode}), {concurrency}"
    )


def _cost_table(
    sweep: SweepConfig, trials: list[Trial], limit: int | None
) -> tuple[Table, int, int]:
    """One row per trial; with the largest trial's training memory (for the packing line) and
    how many trials do not fit `limit` bytes (the smallest GPU; None: no GPU to check)."""
    keys = list(sweep.space)
    derived = derived_keys(sweep.budget) if sweep.budget else []
    table = Table(
        "#",
        *keys,
        *derived,
        "params",
        *(["vs budget"] if sweep.budget else []),
        "FLOPs/token",
        "train memory",
        "fits GPU",
        box=None,
        header_style="bold",
    )
    too_big = largest = 0
    for trial in trials:
        cost = estimate(trial.config)
        largest = max(largest, cost.memory_bytes)
        fits = "-" if limit is None else ("yes" if cost.memory_bytes <= limit else "NO")
        too_big += fits == "NO"
        values = [show(trial.overrides[k]) for k in keys]
        sizes = [show(getattr(trial.config.model, k.split(".")[1])) for k in derived]
        off = [f"{sweep.budget.deviation(cost.params):+.1%}"] if sweep.budget else []
        table.add_row(
            str(trial.index),
            *values,
            *sizes,
            si(cost.params),
            *off,
            si(cost.flops_per_token),
            gib(cost.memory_bytes),
            fits,
        )
    return table, largest, too_big


def _packing(largest: int, trials_per_gpu: int | str) -> str:
    """How trials share a GPU: K of the largest trial (`largest` bytes of training memory)
    against the smallest GPU's free memory here, or what `auto` would choose."""
    free = free_gpu_memory()
    if trials_per_gpu == "auto":
        if not free:
            return "Packing auto: decided at start from the free memory of the cluster's GPUs."
        try:
            return auto_packing(largest, min(free)).reason.capitalize() + "."
        except UserError as exc:
            return str(exc)
    k = int(trials_per_gpu)
    need = f"{k} x ~{gib(largest)} (the largest trial)"
    if not free:
        return f"Packing {k} per GPU: needs {need} per GPU."
    verdict = "fits" if k * largest <= min(free) else "does NOT fit"
    return f"Packing {k} per GPU: {need} {verdict} in the smallest GPU's {gib(min(free))} free."
