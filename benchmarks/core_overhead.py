"""Seconds per optimizer step of the Arbiter training core against a plain PyTorch loop.

The question this answers: what does `arbiter.core.loop.train` cost on top of the few lines of
PyTorch every training script has? Both loops train the same model (`build_model(config)`, seeded
the same way), on batches from the same data source (`make_task(config).train_batch()`), with the
same AdamW (same parameter groups, learning rate, betas, eps, weight decay), in fp32 on the CPU
with the same `torch.set_num_threads`. The plain loop is the minimal nanoGPT-style loop: forward,
fp32 cross-entropy, backward, `clip_grad_norm_`, `optimizer.step()`, `zero_grad()`; nothing else.
Before timing, a check confirms that both loops end with identical weights after the same steps:
they do the same work, so any difference in time is the core's overhead.

Two rows measure the core. "hot path" turns off checkpoints and TensorBoard and sets
`log_interval` and `eval_interval` to 10^9, so no measured step logs or evaluates: it is the
per-step cost of the loop itself. "quickstart logging" keeps `quickstart.toml`'s own settings
(log and evaluate every 100 steps, checkpoint every 1000 keeping 3, TensorBoard on), so readers
see what evaluation, metric rows and checkpoints add in a real run.

Method. The clock is the data source: both loops get the task wrapped in `StepClock`, which notes
`time.perf_counter()` each time a batch is asked for, i.e. at the start of every step (the core gets
it as `train`'s `task`; the benchmark fails unless it is asked once per step). The time between the
batch requests of steps k and k + 1 is the whole of step k: the data, forward, backward, clipping,
the optimizer step and everything the loop does after it, evaluation and logging included when step
k does them. A run of W + N + 1 steps is timed over its steps W+1 .. W+N (1-based): the set-up
before the first batch, the first W steps (allocator and oneDNN warm-up) and the last step (which
`train` always evaluates, logs and checkpoints) are left out, in both loops alike. s/step is the
mean over those N steps, periodic evaluations and metric rows included at their real rate
(checkpoints come every 1000 steps, so N < 1000 may hold none; the notes under the table say how
many fell inside). The "typical step" is the median over the same steps: it leaves out periodic work
and most of the slowdowns that other processes on the machine cause.

Every round runs each (model, loop) once, in a shuffled order; the table gives the median over
rounds of each statistic, the range of s/step, and overhead = median(core) / median(plain) - 1.
The learning-rate warmup is set to 0 so that both loops follow the same constant learning rate.

    python benchmarks/core_overhead.py [--steps N] [--rounds R] [--threads T] [--smoke-test]

It prints a markdown table and, unless `--no-write` or `--smoke-test`, appends it to
`docs/benchmarks.md` with the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from report import REPORT, Started, publish
from step_hook import StepHook

from arbiter.config.loading import load_config
from arbiter.config.schema import Config
from arbiter.config.templates import find_template
from arbiter.core.checkpoint import load_checkpoint
from arbiter.core.data import IGNORE_INDEX, Task, make_task
from arbiter.core.loop import train
from arbiter.core.model import build_model
from arbiter.core.optim import param_groups

NEVER = 10**9  # a log/eval interval no run reaches: only the (unmeasured) last step does them
QUICKSTART = "quickstart"  # the template every case starts from

PLAIN = "plain"
CORE_HOT = "core (hot path)"
CORE_LOGGING = "core (quickstart logging)"
LOOPS = (PLAIN, CORE_HOT, CORE_LOGGING)

SETTINGS = {
    PLAIN: "forward, fp32 cross-entropy, backward, clip, AdamW step, zero_grad",
    CORE_HOT: "checkpoints off, TensorBoard off, log_interval = eval_interval = 10^9",
    CORE_LOGGING: "log_interval 100, eval_interval 100, checkpoint every 1000 (keep 3), "
    "TensorBoard on",
}

# Every run: fp32 on the CPU, constant learning rate from step 0 (see the module docstring).
COMMON = ("training.device=cpu", "training.precision=fp32", "training.warmup_steps=0")
# The hot path: no measured step writes, evaluates or logs.
HOT_PATH = (
    "checkpoint.enable=false",
    "logging.enable_tensorboard=false",
    f"logging.log_interval={NEVER}",
    f"training.eval_interval={NEVER}",
)


@dataclass(frozen=True)
class Case:
    """A model and batch size: `quickstart.toml` with these `--set` overrides."""

    name: str
    sets: tuple[str, ...]


CASES = (
    Case("quickstart: 1 x 64, batch 512", ()),
    Case(
        "4 x 128, batch 256",
        ("model.n_layers=4", "model.dim=128", "model.mlp_dim=512", "training.batch_size=256"),
    ),
)
# Small enough that the smoke test takes seconds, yet with every part of both models.
SMOKE_CASES = (
    Case("smoke: 1 x 32, batch 64", ("model.dim=32", "model.mlp_dim=64", "training.batch_size=64")),
    Case(
        "smoke: 2 x 32, batch 32",
        ("model.n_layers=2", "model.dim=32", "model.mlp_dim=64", "training.batch_size=32"),
    ),
)


class StepClock(StepHook):
    """A task that notes the time of every training-batch request and otherwise passes through."""

    def __init__(self, task: Task) -> None:
        self.stamps: list[float] = []
        super().__init__(task, 1, lambda _request: self.stamps.append(time.perf_counter()))


def make_config(case: Case, loop: str, steps: int) -> Config:
    """The validated config of one run (the plain loop reads only model, data and optimizer)."""
    sets = [*COMMON, *case.sets, f"training.steps={steps}"]
    if loop == CORE_HOT:
        sets += HOT_PATH
    return load_config(find_template(QUICKSTART), sets)


def plain_loop(config: Config, task: Task) -> torch.nn.Module:
    """Train `config` on `task` the minimal nanoGPT way; returns the trained model."""
    t = config.training
    torch.manual_seed(t.seed)  # the core seeds the same way before building: same weights
    model = build_model(config)
    # The core's parameter groups (decay on matrices only) so that AdamW does the same arithmetic.
    optimizer = torch.optim.AdamW(
        param_groups(model, t.weight_decay, t.decay_embeddings),
        lr=t.learning_rate,
        betas=tuple(t.betas),
        eps=t.eps,
    )
    for _ in range(t.steps):
        x, y = task.train_batch()
        logits = model(x, last_only=task.answer_only)  # as the core: the answer's logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model


def run(config: Config, loop: str, out: Path) -> StepClock:
    """One whole run of `loop`; returns its clock, with one stamp per step."""
    clock = StepClock(make_task(config))
    gc.collect()  # a collection left over from the last run must not land inside this one
    if loop == PLAIN:
        plain_loop(config, clock)
    else:
        train(config, out, task=clock)
    t = config.training
    if len(clock.stamps) != t.steps * t.gradient_accumulation:
        raise RuntimeError(
            f"{loop}: {len(clock.stamps)} batch requests in {t.steps} steps; the step clock "
            "did not see every step"
        )
    return clock


def step_times(case: Case, loop: str, base: int, steps: int) -> list[float]:
    """Seconds of each of steps base+1 .. base+steps (1-based) of a run one step longer."""
    config = make_config(case, loop, base + steps + 1)
    with tempfile.TemporaryDirectory(prefix="arbiter-bench-") as out:
        stamps = run(config, loop, Path(out)).stamps
    return [stamps[k + 1] - stamps[k] for k in range(base, base + steps)]


def check_same_work(case: Case, steps: int) -> float:
    """Largest weight difference between the two loops after `steps` steps; exits if they differ.

    The core's final checkpoint holds its weights. This also warms up every loop once.
    """
    config = make_config(case, PLAIN, steps)
    plain = plain_loop(config, make_task(config)).state_dict()
    with tempfile.TemporaryDirectory(prefix="arbiter-bench-") as out:
        run(make_config(case, CORE_LOGGING, steps), CORE_LOGGING, Path(out))
        core = load_checkpoint(Path(out) / "checkpoints" / f"step_{steps:08d}")["model"]
    step_times(case, CORE_HOT, 0, steps - 1)
    worst = max((plain[name] - core[name]).abs().max().item() for name in core)
    if worst > 1e-5:
        raise SystemExit(
            f"{case.name}: the plain loop and the core disagree after {steps} steps "
            f"(largest weight difference {worst:.3g}); they are not doing the same work"
        )
    return worst


@dataclass
class Row:
    """One (model, loop): per round, the mean and the median of its measured step times."""

    means: list[float]
    medians: list[float]


def measure(
    cases: Sequence[Case], steps: int, base: int, rounds: int
) -> dict[tuple[str, str], Row]:
    """Every (case, loop) once per round, in a shuffled order each round."""
    rows = {(case.name, loop): Row([], []) for case in cases for loop in LOOPS}
    units = [(case, loop) for case in cases for loop in LOOPS]
    order = random.Random(0)  # a fixed seed: a rerun shuffles the same way
    for r in range(rounds):
        order.shuffle(units)
        for case, loop in units:
            times = step_times(case, loop, base, steps)
            rows[(case.name, loop)].means.append(statistics.fmean(times))
            rows[(case.name, loop)].medians.append(statistics.median(times))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return rows


def format_table(cases: Sequence[Case], rows: dict[tuple[str, str], Row]) -> str:
    """The markdown table: s/step and typical step with their overhead over the plain loop."""
    lines = [
        "| model | loop | settings | s/step | range over rounds | vs plain "
        "| typical step (s) | vs plain |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        plain = rows[(case.name, PLAIN)]
        plain_mean, plain_typical = statistics.median(plain.means), statistics.median(plain.medians)
        for loop in LOOPS:
            row = rows[(case.name, loop)]
            mean, typical = statistics.median(row.means), statistics.median(row.medians)
            spread = f"{min(row.means):.5f} – {max(row.means):.5f}"
            over = "" if loop == PLAIN else f"{mean / plain_mean - 1:+.1%}"
            typical_over = "" if loop == PLAIN else f"{typical / plain_typical - 1:+.1%}"
            model = case.name if loop == PLAIN else ""
            lines.append(
                f"| {model} | {loop} | {SETTINGS[loop]} | {mean:.5f} | {spread} | {over} "
                f"| {typical:.5f} | {typical_over} |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The defaults take about 2 minutes on a quiet 2-core machine (several more when it is busy).
    parser.add_argument(
        "--steps", type=int, default=100, help="measured steps per run (default 100)"
    )
    parser.add_argument(
        "--base-steps",
        type=int,
        default=20,
        help="unmeasured warm-up steps at the start of every run (default 20)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--no-write", action="store_true", help=f"do not append to {REPORT.name}")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="tiny models, few steps, one round, nothing written: checks that it runs",
    )
    args = parser.parse_args(argv)
    for name in ("steps", "base_steps", "rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = CASES
    if args.smoke_test:
        cases, args.steps, args.base_steps, args.rounds = SMOKE_CASES, 10, 3, 1
    started = Started()

    for case in cases:
        worst = check_same_work(case, args.base_steps)
        print(
            f"{case.name}: same weights after {args.base_steps} steps in both loops "
            f"(largest difference {worst:.2g})",
            file=sys.stderr,
        )
    rows = measure(cases, args.steps, args.base_steps, args.rounds)

    first, last = args.base_steps + 1, args.base_steps + args.steps
    # Periodic checkpoints and evaluations of the logging row that fell inside the measured steps.
    logging_config = make_config(cases[0], CORE_LOGGING, last + 1)
    interval, every = logging_config.checkpoint.interval, logging_config.training.eval_interval
    evaluations = last // every - args.base_steps // every
    checkpoints = last // interval - args.base_steps // interval
    table = format_table(cases, rows)
    notes = (
        f"Each run is {last + 1} steps; its steps {first}-{last} are timed one by one (from one "
        "batch request to the next), leaving out set-up, warm-up and the last step's evaluation "
        "and checkpoint. s/step: their mean (median over rounds); typical step: their median "
        f"(median over rounds). {args.rounds} rounds, each running every row once in a shuffled "
        f"order. In the measured steps the logging row evaluated and logged {evaluations} "
        f"time(s) and made {checkpoints} periodic checkpoint(s) (a real run: one per {interval} "
        f"steps). fp32 on the CPU, {args.threads} torch threads, constant learning rate (warmup "
        "0); same model, batches and AdamW in both loops, checked to end with identical weights. "
        "vs plain = median(core) / median(plain) - 1."
    )
    publish(
        started,
        "training core overhead over plain PyTorch",
        f"{table}\n\n{notes}",
        write=not (args.no_write or args.smoke_test),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
