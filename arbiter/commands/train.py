"""`arbiter train`: one run of the training core without Ray.

Chooses the config (a file, or a legacy hardware tier: `arbiter.legacy`), the output folder and
the checkpoint to resume from, then runs `core.loop.train` with a progress display.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from arbiter import legacy
from arbiter.commands.exit_codes import ExitCode
from arbiter.config.schema import Config
from arbiter.errors import UserError
from arbiter.experiments.storage import check_writable

log = logging.getLogger(__name__)


def train(
    config_file: Path | None = None,
    *,
    tier: str | None = None,
    sets: list[str] | None = None,
    out: Path | None = None,
    resume: bool = False,
) -> ExitCode:
    """Train `config_file` (or the legacy `tier`'s config) into `out` (default
    runs/CONFIG-NAME); `resume` continues from the newest valid checkpoint there."""
    from arbiter.config.loading import load_config

    path = config_file or legacy.tier_config(legacy.choose_tier(tier))
    config = load_config(path, sets or [])
    out_dir = out or Path("runs") / Path(path).stem
    check_writable(out_dir, "--out")
    resume_from = _resume_point(out_dir) if resume else None
    if not resume and (out_dir / "checkpoints").is_dir():
        raise UserError(
            f"--out {out_dir}: holds checkpoints of an earlier run; "
            "add --resume to continue it, or choose another --out"
        )
    _train_with_progress(config, out_dir, resume_from)
    return ExitCode.DONE


def _train_with_progress(
    config: Config, out_dir: Path, resume_from: tuple[Path, dict[str, Any]] | None
) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from arbiter.core import loop

    steps = config.training.steps
    columns = (
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[summary]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not sys.stderr.isatty(), transient=False) as progress:
        bar = progress.add_task("train", total=steps, summary="")

        def report(metrics: dict[str, Any], saved: Path | None) -> None:
            summary = _summary(metrics)
            progress.update(bar, completed=metrics["step"], summary=summary)
            if progress.disable:
                log.info("step %d/%d  %s", metrics["step"], steps, summary)

        result = loop.train(config, out_dir, reporter=report, resume_from=resume_from)
    log.info("done: %s; metrics in %s", _summary(result.metrics), out_dir / "metrics.jsonl")


def _summary(metrics: dict[str, Any]) -> str:
    parts = [f"loss {metrics['train/loss']:.4f}"]
    for key in ("train/accuracy", "val/accuracy", "val/loss"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.4f}")
    parts.append(f"{metrics['tokens_per_s']:,.0f} tok/s")
    return "  ".join(parts)


def _resume_point(out_dir: Path) -> tuple[Path, dict[str, Any]]:
    from arbiter.core.checkpoint import latest_checkpoint

    found = latest_checkpoint(out_dir)
    if found is None:
        raise UserError(f"--resume: no valid checkpoint in {out_dir / 'checkpoints'}")
    return found
