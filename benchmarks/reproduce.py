"""Reproduce a published grokking result as an Arbiter sweep and compare it with the paper.

Each reproduction is a packaged template (`configs/sweep_templates/repro_*.toml`) that runs
through the real command line (`arbiter sweep`, then `arbiter report` for the plots), and a
table that puts our figure next to the published one, with the goal it must meet:

    python benchmarks/reproduce.py nanda [--gpus N] [--storage DIR] [--set KEY=VALUE ...]
                                         [--no-write]

- nanda: Nanda et al. 2023, the training-fraction sweep (a + b mod 113, full batch): the step
  at which test loss first falls below 0.1, for 30-60% of the table. Goal: within +-40% of
  each published figure, and the same ordering.

Exit code 0: the goal is met; 1: it is not; 2: a command failed. Unless `--no-write`, the table
is appended to docs/reproductions.md (with the date, command and machine) and the report's plots
are copied to docs/reproductions/. `--set` overrides template keys (e.g. a smaller modulus for a
quick look); such a run is not written.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from report import append_report, command_line, load_average, machine

from arbiter.report import Report, TrialReport, load_report

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPRODUCTIONS = DOCS / "reproductions.md"


@dataclass(frozen=True)
class Reproduction:
    template: str
    title: str
    table: Callable[[Report], tuple[str, bool]]  # markdown, goal met
    plot: str  # the report plot that shows the result best


def first_step(trial: TrialReport, metric: str, below: float) -> int | None:
    """The first evaluated step at which `metric` < `below`, or None."""
    return next((r["step"] for r in trial.rows if r.get(metric, below) < below), None)


# Nanda et al. 2023: epochs (= full-batch steps) to test loss < 0.1, by training fraction
NANDA_PUBLISHED = {0.3: 7930, 0.4: 3109, 0.5: 956, 0.6: 440}
NANDA_TOLERANCE = 0.4


def nanda_table(report: Report) -> tuple[str, bool]:
    lines = [
        "| train fraction | published (steps) | Arbiter (steps) | ratio | within +-40% |",
        "|---:|---:|---:|---:|---|",
    ]
    ours: dict[float, int | None] = {}
    met = True
    for trial in sorted(report.trials, key=lambda t: t.config["data.train_fraction"]):
        fraction = trial.config["data.train_fraction"]
        published = NANDA_PUBLISHED.get(fraction)
        step = ours[fraction] = first_step(trial, "val/loss", 0.1)
        ratio = step / published if step and published else None
        within = ratio is not None and abs(ratio - 1) <= NANDA_TOLERANCE
        met &= within
        lines.append(
            f"| {fraction} | {published or '-'} | {step if step else 'not reached'} | "
            f"{f'{ratio:.2f}' if ratio else '-'} | {'yes' if within else 'no'} |"
        )
    reached = [f for f, s in ours.items() if s]
    ordered = sorted(reached, key=lambda f: ours[f]) == sorted(reached, reverse=True)
    met &= ordered and len(reached) == len(NANDA_PUBLISHED)
    order = "fewer than two fractions reached it"
    if len(reached) > 1:
        order = "the same" if ordered else "different"
    lines.append("")
    lines.append(
        f"Ordering (more data, sooner): {order}. Goal: every fraction within +-40% of the "
        f"published step and the same ordering: {'met' if met else 'not met'}."
    )
    return "\n".join(lines) + "\n", met


REPRODUCTIONS_BY_NAME = {
    "nanda": Reproduction(
        "repro_nanda.toml",
        "Nanda et al. 2023: steps to test loss < 0.1 by training fraction",
        nanda_table,
        "grokking_curves.png",
    ),
}


class Failed(Exception):
    """An arbiter command of the reproduction failed: there is nothing to compare."""


def arbiter(*argv: str) -> None:
    command = [sys.executable, "-m", "arbiter", *argv]
    print("$", " ".join(command[2:]), flush=True)
    code = subprocess.run(command).returncode
    if code:
        raise Failed(f"reproduce: `{' '.join(command[2:])}` failed with exit code {code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reproduction", choices=sorted(REPRODUCTIONS_BY_NAME))
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to use (0: one trial per CPU)")
    parser.add_argument("--storage", type=Path, help="results folder (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    repro = REPRODUCTIONS_BY_NAME[args.reproduction]
    write = not (args.no_write or args.set)
    started = datetime.now(timezone.utc)
    load_before = load_average()
    name = f"repro-{args.reproduction}-{started:%Y%m%d-%H%M%S}"
    with tempfile.TemporaryDirectory() as scratch:
        storage = args.storage or Path(scratch)
        sets = [flag for value in args.set for flag in ("--set", value)]
        arbiter("sweep", "--template", repro.template, "--gpus", str(args.gpus),
                "--storage", str(storage), "--name", name, *sets)  # fmt: skip
        plots = storage / name / "report"
        arbiter("report", name, "--storage", str(storage), "--out", str(plots))
        table, met = repro.table(load_report(storage / name))
        print(table)
        if write:
            figure = DOCS / "reproductions" / f"{args.reproduction}.png"
            figure.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plots / repro.plot, figure)
            elapsed = datetime.now(timezone.utc) - started
            section = (
                f"\n## {started:%Y-%m-%d %H:%M} UTC: {repro.title}\n\n"
                f"Command: `{command_line()}` (template `{repro.template}`)\n\n"
                f"Machine: {machine()}\n\n"
                f"Load average (1 min): {load_before} before, {load_average()} after "
                f"({elapsed.seconds // 60} min elapsed)\n\n"
                f"{table}\n![{repro.title}](reproductions/{figure.name})\n"
            )
            append_report(REPRODUCTIONS, section)
    return 0 if met else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
