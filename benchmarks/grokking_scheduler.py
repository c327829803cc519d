"""Grokking-aware scheduling: the optimizer steps FIFO, ASHA and `scheduler = "grokking"` spend.

The grid (weight decay x training fraction of a + b mod p) holds configurations that generalize
late, long after they have memorized their training set. FIFO runs every trial to the full budget,
so it finds every configuration that groks within the budget, at full price. ASHA ranks trials by
validation accuracy at its rungs, where a late grokker still looks like a failure. The grokking
scheduler (arbiter/tune/grokking_scheduler.py) stops trials that grokked, and trials that stopped
progressing (weight norm no longer falling, validation accuracy no longer rising).

Each sweep runs through the real `arbiter sweep` command (embedded Ray, `--gpus 0`,
`--cpus-per-trial 1`: one CPU and one torch thread per trial, as many trials at once as the
machine has CPUs) with its storage in a temporary folder; then each trial's result rows are read
back. A configuration has grokked when its validation accuracy reached 0.99
(`arbiter.core.grokking.measures_from_rows`). Steps spent = the sum of every trial's last step;
the goal: every configuration that groks under FIFO also found, for at most 40% of FIFO's steps.
Wall times include starting Ray and depend on the machine's load; the steps do not.

    python benchmarks/grokking_scheduler.py [--steps 4000] [--weight-decays 0.1,0.3,1]
        [--train-fractions 0.3,0.4,0.5] [--seeds 1] [--dim 64] [--layers 1] [--smoke-test]

It prints markdown tables and, unless `--no-write` or `--smoke-test`, appends them to
`docs/benchmarks.md` with the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from interrupts import EXIT_INTERRUPTED, run_through_interrupts
from report import Started, publish

from arbiter.config.schema import GrokkingOptions
from arbiter.core.grokking import THRESHOLD, measures_from_rows
from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows
from arbiter.tune.state import read_trials

SCHEDULERS = ("fifo", "asha", "grokking")
DEFAULTS = GrokkingOptions()  # patience, min_norm_drop, min_val_gain: the template's defaults
GOAL_FRACTION = 0.40  # of FIFO's steps, with every FIFO grokker found
AXES = {
    "training.weight_decay": "weight decay",
    "data.train_fraction": "train fraction",
    "training.seed": "seed",
}

# The quickstart's task and optimizer (a + b mod p, AdamW at a constant 1e-3), no stop rule:
# under FIFO every trial runs its whole budget.
TEMPLATE = """
[model]
dim = {dim}
n_layers = {layers}
n_heads = {heads}
mlp = "gelu"
mlp_dim = {mlp_dim}
[training]
batch_size = 512
learning_rate = 1e-3
lr_schedule = "constant"
warmup_steps = 10
steps = {steps}
eval_interval = {eval_interval}
precision = "fp32"
device = "cpu"
[data]
modulus = {modulus}
[checkpoint]
interval = 1000
[logging]
log_interval = {eval_interval}
enable_tensorboard = false
[sweep]
metric = "val/accuracy"
mode = "max"
[sweep.asha]
grace_period = {grace}
reduction_factor = {reduction_factor}
[sweep.grokking]
threshold = {threshold}
fit_budget = {fit_budget}
window = {window}
[sweep.space]
"training.weight_decay" = {weight_decays}
"data.train_fraction" = {train_fractions}
"training.seed" = {seeds}
"""


@dataclass(frozen=True)
class Trial:
    last_step: int
    grok_step: int | None  # first evaluation with val accuracy >= THRESHOLD; None: never


def run_sweep(template: Path, scheduler: str, storage: Path) -> tuple[dict[tuple, Trial], float]:
    """One sweep through `arbiter sweep`: each configuration's outcome, and the wall time."""
    command = [
        sys.executable,
        "-m",
        "arbiter",
        "sweep",
        "--template",
        str(template),
        "--gpus",
        "0",
        "--cpus-per-trial",
        "1",
        "--storage",
        str(storage),
        "--name",
        scheduler,
        "--set",
        f"sweep.scheduler={scheduler}",
    ]
    print(f"== {scheduler}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    # the sweep's own progress goes to stderr: stdout is left to the tables
    code = run_through_interrupts(command, stdout=sys.stderr)
    wall = time.perf_counter() - start
    if code == EXIT_INTERRUPTED:
        print(f"the {scheduler} sweep was interrupted", file=sys.stderr)
        raise SystemExit(code)
    if code != 0:
        raise SystemExit(f"the {scheduler} sweep failed (exit code {code})")
    outcomes = {}
    for status in read_trials(Location.of(storage / scheduler), "val/accuracy", "max"):
        rows = result_rows(Location.of(status.path))
        key = tuple(status.config[axis] for axis in AXES)
        outcomes[key] = Trial(
            last_step=rows[-1]["step"] if rows else 0,
            grok_step=measures_from_rows(rows).get("steps_to_grok"),
        )
    return outcomes, wall


def tables(results: dict[str, tuple[dict[tuple, Trial], float]]) -> tuple[str, list[str]]:
    """The summary table, the per-configuration table, and the goal lines."""
    fifo = results["fifo"][0]
    grokkers = {key for key, trial in fifo.items() if trial.grok_step is not None}
    fifo_steps = sum(t.last_step for t in fifo.values())
    summary = [
        "| scheduler | trials | FIFO's grokkers found | steps spent | % of FIFO's steps "
        "| wall (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    goals = []
    for name, (trials, wall) in results.items():
        found = {key for key in grokkers if trials[key].grok_step is not None}
        steps = sum(t.last_step for t in trials.values())
        share = steps / fifo_steps
        summary.append(
            f"| {name} | {len(trials)} | {len(found)} of {len(grokkers)} | {steps} | "
            f"{share:.0%} | {wall:.0f} |"
        )
        if name != "fifo":
            met = bool(grokkers) and found == grokkers and share <= GOAL_FRACTION
            goals.append(
                f"{name}: {'met' if met else 'not met'} ({len(found)} of "
                f"{len(grokkers)} grokkers, {share:.0%} of FIFO's steps)"
            )
    detail = [
        "| " + " | ".join(AXES.values()) + " | " + " | ".join(results) + " |",
        "|" + "---|" * len(AXES) + "---:|" * len(results),
    ]
    for key in sorted(fifo):
        cells = [_cell(trials[key]) for trials, _ in results.values()]
        detail.append("| " + " | ".join(map(str, (*key, *cells))) + " |")
    return "\n".join(summary) + "\n\n" + "\n".join(detail), goals


def _cell(trial: Trial) -> str:
    """Where the trial stopped, and where it grokked if it did."""
    if trial.grok_step is None:
        return f"{trial.last_step}"
    return f"{trial.last_step} (grokked at {trial.grok_step})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="steps per trial (FIFO's budget)")
    parser.add_argument("--weight-decays", default="0.1,0.3,1.0", help="comma-separated")
    parser.add_argument("--train-fractions", default="0.3,0.4,0.5", help="comma-separated")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per configuration")
    parser.add_argument("--modulus", type=int, default=97)
    parser.add_argument("--dim", type=int, default=64, help="model width")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--eval-interval", type=int, default=100, help="also the log interval")
    parser.add_argument(
        "--fit-budget",
        type=int,
        default=1000,
        help="grokking: steps before a trial can be stopped for lack of progress",
    )
    parser.add_argument("--window", type=int, default=500, help="grokking: progress window")
    parser.add_argument("--grace", type=int, default=1000, help="ASHA's grace period")
    parser.add_argument("--reduction-factor", type=float, default=4.0, help="ASHA's")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="a 2 x 2 grid of tiny 300-step trials; write nothing",
    )
    args = parser.parse_args()
    if args.smoke_test:
        args.steps, args.weight_decays, args.train_fractions = 300, "0.1,1.0", "0.3,0.8"
        args.seeds, args.layers = 1, 1
        args.modulus, args.dim, args.heads, args.eval_interval = 23, 32, 2, 50
        args.fit_budget, args.window, args.grace = 100, 100, 100
    weight_decays = [float(v) for v in args.weight_decays.split(",")]
    train_fractions = [float(v) for v in args.train_fractions.split(",")]
    settings = dict(
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        mlp_dim=4 * args.dim,
        steps=args.steps,
        eval_interval=args.eval_interval,
        modulus=args.modulus,
        grace=args.grace,
        reduction_factor=args.reduction_factor,
        threshold=THRESHOLD,
        fit_budget=args.fit_budget,
        window=args.window,
        weight_decays=weight_decays,
        train_fractions=train_fractions,
        seeds=list(range(args.seeds)),
    )
    started = Started()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = work / "grid.toml"
        template.write_text(TEMPLATE.format(**settings))
        results = {name: run_sweep(template, name, work) for name in SCHEDULERS}
    text, goals = tables(results)
    goal_text = (
        f"Goal: every configuration that groks under FIFO found for at most "
        f"{GOAL_FRACTION:.0%} of FIFO's steps. " + "; ".join(goals) + "."
    )
    trials = len(weight_decays) * len(train_fractions) * args.seeds
    publish(
        started,
        "grokking scheduler vs ASHA vs FIFO",
        f"{trials} trials per scheduler: a + b mod {args.modulus}, {args.layers} x {args.dim} "
        f"model, AdamW lr 1e-3 constant, {args.steps} steps, evaluated every "
        f"{args.eval_interval}; weight decay {weight_decays} x train fraction "
        f"{train_fractions}, {args.seeds} seed(s). Each sweep through `arbiter sweep --gpus 0 "
        f"--cpus-per-trial 1` on an embedded Ray (one torch thread per trial). ASHA: grace "
        f"{args.grace} steps, reduction factor {args.reduction_factor:g}. Grokking: threshold "
        f"{THRESHOLD}, patience {DEFAULTS.patience}, fit budget {args.fit_budget}, window "
        f"{args.window}, min_norm_drop {DEFAULTS.min_norm_drop}, min_val_gain "
        f"{DEFAULTS.min_val_gain}. Grokked = validation accuracy reached {THRESHOLD}; steps "
        f"spent = sum of each trial's last step; a cell: the step the trial ended at (and "
        f"where it grokked).\n\n{text}\n\n{goal_text}",
        write=not (args.smoke_test or args.no_write),
    )


if __name__ == "__main__":
    main()
