"""`arbiter sweep --dry-run`: every trial of a template with its cost, without starting Ray.

One row per trial: swept values, parameters, training FLOPs per token and estimated training
memory, with a mark on trials that cannot fit the smallest GPU visible here.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from arbiter.config.schema import Config
from arbiter.config.space import Grid
from arbiter.config.trials import Trial
from arbiter.core.estimate import estimate
from arbiter.core.hardware import visible_gpus
from arbiter.ui import console, gib, show, si


def print_dry_run(path: Path, template: Config, trials: list[Trial], gpus: int | None) -> None:
    assert template.sweep is not None
    sweep, out = template.sweep, console()
    devices = visible_gpus()
    limit = min((g.memory_bytes for g in devices), default=None)
    concurrency = (
        f"{gpus} at a time" if gpus else ("one per CPU slot" if gpus == 0 else "one per GPU")
    )
    out.print(
        f"{path}: {len(trials)} trials, strategy {sweep.strategy}, scheduler {sweep.scheduler}, "
        f"ranked by {sweep.metric} ({sweep.mode}), {concurrency}"
    )
    keys = list(sweep.space)
    table = Table(
        "#",
        *keys,
        "params",
        "FLOPs/token",
        "train memory",
        "fits GPU",
        box=None,
        header_style="bold",
    )
    too_big = 0
    for trial in trials:
        cost = estimate(trial.config)
        fits = "-" if limit is None else ("yes" if cost.memory_bytes <= limit else "NO")
        too_big += fits == "NO"
        values = [show(trial.overrides[k]) for k in keys]
        table.add_row(
            str(trial.index),
            *values,
            si(cost.params),
            si(cost.flops_per_token),
            gib(cost.memory_bytes),
            fits,
        )
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
    if gpus and len(devices) and gpus > len(devices):
        out.print(f"Note: --gpus {gpus} asks for more GPUs than the {len(devices)} visible here.")
