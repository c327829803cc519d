"""`arbiter train`: one run of the training core without Ray, and the seed's legacy tier menu.

Chooses the config (a file, a hardware tier, or the interactive `[1] High VRAM` / `[2] Low VRAM`
menu), the output folder and the checkpoint to resume from, then runs `core.loop.train` with a
progress display.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from arbiter.config import Config
from arbiter.errors import UserError
from arbiter.experiment import check_writable
from arbiter.templates import tier_config

log = logging.getLogger(__name__)

# The seed's tiers: 12+ GB of GPU memory for high_vram, 4-6 GB for low_vram.
HIGH_VRAM_BYTES = 12 * 10**9
MENU = {"1": "high_vram", "2": "low_vram"}


def run_train(args: argparse.Namespace) -> int:
    from arbiter.loading import load_config

    path = args.config or tier_config(_choose_tier(args.tier))
    config = load_config(path, args.set)
    out_dir = args.out or Path("runs") / Path(path).stem
    check_writable(out_dir, "--out")
    resume_from = _resume_point(out_dir) if args.resume else None
    if not args.resume and (out_dir / "checkpoints").is_dir():
        raise UserError(
            f"--out {out_dir}: holds checkpoints of an earlier run; "
            "add --resume to continue it, or choose another --out"
        )
    _train_with_progress(config, out_dir, resume_from)
    return 0


def _train_with_progress(
    config: Config, out_dir: Path, resume_from: tuple[Path, dict[str, Any]] | None
) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from arbiter.core.loop import train

    steps = config.training.steps
    columns = (TextColumn("step {task.completed}/{task.total}"), BarColumn(),
               TextColumn("{task.fields[summary]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not sys.stderr.isatty(), transient=False) as progress:
        bar = progress.add_task("train", total=steps, summary="")

        def report(metrics: dict[str, Any], saved: Path | None) -> None:
            summary = _summary(metrics)
            progress.update(bar, completed=metrics["step"], summary=summary)
            if progress.disable:
                log.info("step %d/%d  %s", metrics["step"], steps, summary)

        result = train(config, out_dir, reporter=report, resume_from=resume_from)
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


def _choose_tier(tier: str | None) -> str:
    """--tier as given, `auto` by GPU memory, or the interactive menu on a terminal."""
    from arbiter.core.hardware import visible_gpus

    if tier in MENU.values():
        return tier
    gpus = visible_gpus()
    memory = min((g.memory_bytes for g in gpus), default=0)
    suggestion = "high_vram" if memory >= HIGH_VRAM_BYTES else "low_vram"
    if tier == "auto":
        if not gpus:
            raise UserError("--tier auto: no GPU visible; the tiers are GPU configs (use --config)")
        return suggestion
    if not sys.stdin.isatty():
        raise UserError("train: give --config FILE or --tier high_vram|low_vram|auto (no terminal)")
    seen = f"{gpus[0].name}, {memory / 1e9:.1f} GB" if gpus else "no GPU detected"
    print(f"Detected: {seen}")
    print("  [1] High VRAM tier (12+ GB: batch 4 x 4, bf16, flash attention)")
    print("  [2] Low VRAM tier (4-6 GB: batch 1 x 32, fp16, gradient checkpointing)")
    default = "1" if suggestion == "high_vram" else "2"
    answer = input(f"Select a tier [{default}]: ").strip() or default
    if answer not in MENU:
        raise UserError(f"tier menu: '{answer}' is not a choice; allowed: 1, 2")
    return MENU[answer]
