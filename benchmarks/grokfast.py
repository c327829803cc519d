"""Steps to grok with and without Grokfast on a modular task that groks slowly without it.

The task is the quickstart's (a + b mod 97, 1 layer x 64, AdamW lr 1e-3, batch 512, constant
learning rate) with 30% of the table for training, where plain training memorises by ~600 steps
and generalises only around step 2,500 with weight decay 1, and far later with weight decay 0.1.
Each (weight decay, seed) pair runs twice through the real training core, once plain and once
with `training.grokfast = true` (alpha and lamb as given, the paper's 0.98 and 2.0 by default),
until validation accuracy reaches 99% or the step budget ends. Runs go two at a time, one thread
each. The table gives steps to fit (train accuracy >= 99%) and to grok (validation accuracy >=
99%), measured every `--eval-interval` steps, and the speed-up = plain steps / Grokfast steps.

    python benchmarks/grokfast.py [--weight-decay 1.0 0.1] [--seeds 0 1 2] [--steps 6000]
                                  [--alpha 0.98] [--lamb 2.0] [--block pre_norm|norm_stream]
                                  [--smoke-test] [--no-write]

`--block norm_stream` trains the same model with Grokfast's own block (the first LayerNorm
normalises the residual stream itself), to tell the block's share from the filter's.

It prints a markdown table and, unless `--no-write` or `--smoke-test`, appends it to
`docs/benchmarks.md` with the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from report import Started, publish

from arbiter.config.loading import load_config
from arbiter.config.templates import find_template
from arbiter.config.trials import trial_config
from arbiter.core.loop import train


class Grokked(Exception):
    """Ends a run at its first evaluation at 99% validation accuracy: the rest shows nothing."""


def one_run(job: tuple[float, int, bool, argparse.Namespace]) -> dict[str, Any]:
    weight_decay, seed, grokfast, args = job
    torch.set_num_threads(1)  # two runs share the two cores
    settings = {
        "data.train_fraction": 0.3,
        "training.weight_decay": weight_decay,
        "training.seed": seed,
        "training.steps": args.steps,
        "training.eval_interval": args.eval_interval,
        "training.grokfast": grokfast,
        "training.grokfast_alpha": args.alpha,
        "training.grokfast_lamb": args.lamb,
        "checkpoint.enable": False,
        "logging.log_interval": args.eval_interval,
        "logging.enable_tensorboard": False,
    }
    if args.block == "norm_stream":  # Grokfast's own block: LayerNorm on the residual stream
        settings |= {"model.block": "norm_stream", "model.norm": "layernorm"}
    config = trial_config(load_config(find_template("quickstart.toml")).run_settings(), settings)
    last: dict[str, Any] = {}

    def stop_once_grokked(metrics: dict[str, Any], saved: Path | None) -> None:
        last.update(metrics)
        if "steps_to_grok" in metrics:
            raise Grokked

    with tempfile.TemporaryDirectory() as out, contextlib.suppress(Grokked):
        train(config, Path(out), reporter=stop_once_grokked)
    return {
        "wd": weight_decay,
        "seed": seed,
        "grokfast": grokfast,
        "fit": last.get("steps_to_fit"),
        "grok": last.get("steps_to_grok"),
    }


def table(results: list[dict[str, Any]], budget: int) -> tuple[str, list[float]]:
    def shown(steps: int | None) -> str:
        return str(steps) if steps is not None else f"> {budget}"

    lines = [
        "| weight decay | seed | fit, plain | fit, Grokfast | grok, plain | grok, Grokfast "
        "| speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    speedups = []
    pairs = {(r["wd"], r["seed"], r["grokfast"]): r for r in results}
    for wd, seed in sorted({(r["wd"], r["seed"]) for r in results}, key=lambda k: (-k[0], k[1])):
        plain, fast = pairs[wd, seed, False], pairs[wd, seed, True]
        if plain["grok"] and fast["grok"]:
            speedup = f"{plain['grok'] / fast['grok']:.1f}x"
            speedups.append(plain["grok"] / fast["grok"])
        elif fast["grok"]:
            speedup = f"> {budget / fast['grok']:.1f}x"
        else:
            speedup = "-"
        lines.append(
            f"| {wd} | {seed} | {shown(plain['fit'])} | {shown(fast['fit'])} "
            f"| {shown(plain['grok'])} | {shown(fast['grok'])} | {speedup} |"
        )
    return "\n".join(lines), speedups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight-decay", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=6000, help="step budget of each run")
    parser.add_argument("--eval-interval", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=0.98)
    parser.add_argument("--lamb", type=float, default=2.0)
    parser.add_argument(
        "--block",
        choices=["pre_norm", "norm_stream"],
        default="pre_norm",
        help="the quickstart's pre-norm blocks, or Grokfast's (LayerNorm on the stream itself)",
    )
    parser.add_argument("--smoke-test", action="store_true", help="a tiny run; writes nothing")
    parser.add_argument("--no-write", action="store_true", help="do not append to the report")
    args = parser.parse_args()
    if args.smoke_test:
        args.weight_decay, args.seeds, args.steps = [1.0], [0], 100

    started = Started()
    jobs = [
        (wd, seed, grokfast, args)
        for wd in args.weight_decay
        for seed in args.seeds
        for grokfast in (False, True)
    ]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(one_run, jobs)
    text, speedups = table(results, args.steps)
    summary = (
        f"Median speed-up where both grokked: {statistics.median(speedups):.1f}x"
        if speedups
        else "No pair grokked both ways within the budget"
    )
    publish(
        started,
        f"Grokfast, steps to grok, a + b mod 97 with 30% of the table, {args.block} blocks",
        f"Grokfast alpha {args.alpha}, lamb {args.lamb}; blocks: {args.block}; evaluation every "
        f"{args.eval_interval} "
        f"steps; budget {args.steps} steps; two runs at a time, one thread each.\n\n"
        f"{text}\n\n{summary}.",
        write=not (args.smoke_test or args.no_write),
    )


if __name__ == "__main__":
    main()
