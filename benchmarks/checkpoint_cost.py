"""Checkpoint cost: one checkpoint write against the training between two checkpoints.

Whether writing checkpoints in the background is worth its complexity depends on what a write
costs next to the steps between two writes. For each config this builds the model and its
optimizer state on the CPU (one optimizer step over zero gradients creates the moments), then
writes the state the way the training loop does (`save_checkpoint`: `torch.save`, fsync, the
sha256 that marks it valid, the atomic rename) `--rounds` times into a temporary folder on the
same disk as `--dir`, and takes the median. The sha256 column is the hashing part of that.

The overhead is write time / (checkpoint.interval x step time). On this CPU the step time of
the small configs is measured (the median of `--steps` steps of the training core); the GPU
configs' step time is estimated for an H100 at 40% MFU (bf16 dense peak 989 TFLOP/s, the
FLOPs of `arbiter.config.estimate`), which is the case the question is about: a fast GPU with a
checkpoint written from host memory. "break-even" is the step time at which the write costs 1%.

    python benchmarks/checkpoint_cost.py [--configs quickstart grokking_regime low_vram
                                          high_vram] [--rounds 3] [--steps 20] [--dir DIR]
                                         [--smoke-test] [--no-write]

It prints a markdown table and, unless `--no-write` or `--smoke-test`, appends it to
`docs/benchmarks.md` with the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from report import Started, publish

from arbiter.config.estimate import parameter_count, training_flops_per_token
from arbiter.config.loading import load_config
from arbiter.config.schema import Config
from arbiter.config.templates import find_template
from arbiter.config.trials import trial_config
from arbiter.core.checkpoint import STATE_FILE, file_sha256, save_checkpoint
from arbiter.core.hardware import PEAK_FLOPS
from arbiter.core.loop import train
from arbiter.core.model import build_model
from arbiter.core.optim import build_optimizer
from arbiter.legacy import TIERS, tier_config

ASSUMED_MFU = 0.40  # nanoGPT-style GPT-2 training on H100s reaches about this
MEASURED_ON_CPU_BELOW = 5_000_000  # parameters: small enough to time real steps here
DEFAULT_CONFIGS = ["quickstart", "grokking_regime", "low_vram", "high_vram"]


def load(name: str) -> Config:
    """A packaged template or tier by name."""
    return load_config(tier_config(name) if name in TIERS else find_template(f"{name}.toml"))


def write_seconds(config: Config, folder: Path, rounds: int) -> tuple[int, float, float]:
    """(state bytes, median seconds per checkpoint write, median seconds of its sha256)."""
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = build_optimizer(model, config.training, torch.device("cpu"))
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()  # creates the moments a real checkpoint holds
    optimizer.zero_grad(set_to_none=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 1}
    writes, hashes = [], []
    for r in range(rounds):
        started = time.perf_counter()
        path = save_checkpoint(folder, r + 1, state, {}, keep=1)
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        file_sha256(path / STATE_FILE)  # the hash save_checkpoint took, timed on its own
        hashes.append(time.perf_counter() - started)
    size = (path / STATE_FILE).stat().st_size
    return size, statistics.median(writes), statistics.median(hashes)


def cpu_step_seconds(config: Config, folder: Path, steps: int) -> float:
    """Median seconds per step of the training core on this CPU, timed between the reports of
    consecutive steps (the first and last steps, which also evaluate, are left out)."""
    settings = {
        "training.steps": steps + 2,
        "training.eval_interval": steps + 2,
        "training.warmup_steps": 0,
        "logging.log_interval": 1,
        "checkpoint.enable": False,
        "logging.enable_tensorboard": False,
        "training.device": "cpu",
    }
    reported: list[float] = []
    train(
        trial_config(config.run_settings(), settings),
        folder,
        reporter=lambda metrics, saved: reported.append(time.perf_counter()),
    )
    return statistics.median(b - a for a, b in zip(reported[:-2], reported[1:-1], strict=False))


def gpu_step_seconds(config: Config) -> float:
    tokens = config.training.effective_batch_size() * config.seq_len()
    return tokens * training_flops_per_token(config) / (ASSUMED_MFU * PEAK_FLOPS["H100"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="templates, tiers")
    parser.add_argument("--rounds", type=int, default=3, help="writes per config (median)")
    parser.add_argument("--steps", type=int, default=20, help="timed CPU steps (median)")
    parser.add_argument("--dir", type=Path, default=None, help="write under DIR (default: /tmp)")
    parser.add_argument("--smoke-test", action="store_true", help="quickstart, 1 round, 3 steps")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.configs, args.rounds, args.steps = ["quickstart"], 1, 3
    started = Started()
    lines = [
        "| config | parameters | checkpoint | write (s) | of which sha256 (s) | interval "
        "(steps) | step (s) | overhead | break-even step (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in args.configs:
        config = load(name)
        params = parameter_count(config)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="arbiter-bench-") as tmp:
            size, write, digest = write_seconds(config, Path(tmp) / "write", args.rounds)
            if params < MEASURED_ON_CPU_BELOW:
                step, where = cpu_step_seconds(config, Path(tmp) / "steps", args.steps), "CPU"
            else:
                step, where = gpu_step_seconds(config), "H100 est."
        interval = config.checkpoint.interval
        lines.append(
            f"| {name} | {params:,} | {size / 2**20:,.2f} MiB | {write:.4f} | {digest:.4f} | "
            f"{interval:,} | {step:.4f} ({where}) | {write / (interval * step):.2%} | "
            f"{write / (0.01 * interval):.4f} |"
        )
        print(f"{name} done", file=sys.stderr, flush=True)
    table = "\n".join(lines)
    notes = (
        f"Median of {args.rounds} write(s) per config on this machine's disk, fp32 model and "
        "AdamW state (12 bytes per parameter). Step: the training core's median step here "
        f"(CPU), or an H100 at {ASSUMED_MFU:.0%} MFU (estimated from the FLOPs per token). "
        "Overhead: write / (interval x step); break-even: the step time at which it is 1%."
    )
    publish(
        started,
        "checkpoint cost against the steps between two",
        f"{table}\n\n{notes}",
        write=not (args.no_write or args.smoke_test),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
