"""Reproduce a published grokking result as an Arbiter sweep and compare it with the paper.

Each reproduction is a packaged template (`configs/sweep_templates/repro_*.toml`) that runs
through the real command line (`arbiter sweep`, then `arbiter report` for the plots), and a
table that puts our figure next to the published one, with the goal it must meet:

    python benchmarks/reproduce.py NAME [--gpus N] [--trials-per-gpu K|auto]
                                        [--address HOST:PORT] [--storage DIR]
                                        [--set KEY=VALUE ...] [--no-write]
    python benchmarks/reproduce.py NAME --experiment DIR [--no-write]

- nanda: Nanda et al. 2023, the training-fraction sweep (a + b mod 113, full batch): the step
  at which test loss first falls below 0.1, for 30-60% of the table. Goal: within +-40% of
  each published figure, and the same ordering.
- grokfast: Lee et al. 2024, x * y mod 97: iterations to 95% validation accuracy with and
  without Grokfast-EMA and weight decay 0.005. Goal: a speed-up of at least 20x (theirs 43.8x).
- prieto: Prieto et al. 2025, softmax collapse without weight decay: the fp32 softmax run
  stalls with most training losses exactly 0; ⊥Grad generalizes with no memorization phase.
- prieto_mlp: Prieto et al. 2025's Figure 1, StableMax on their one-hot MLP (a + b mod 113)
  with no regularization, against softmax, three seeds each. Goal: the median StableMax seed
  passes 90% validation accuracy.
- phases: Liu et al. 2022's phases (comprehension, grokking, memorization, confusion) over
  learning rate x weight decay. Goal: all four appear.

The tables are in `repro_tables.py`. Exit code 0: the goal is met; 1: it is not; 2: a command
failed; 130: interrupted (Ctrl-C stops the sweep as its own would: resumable, with `--storage`).
Unless `--no-write`, the table is appended to docs/reproductions.md (with the date, the command
and the machine) and the report's main plot is copied to docs/reproductions/NAME.png.
`--set` overrides template keys (e.g. a smaller modulus for a quick look); such a run is not
written down, nor is one tabulated again with `--experiment DIR`, which tabulates a reproduction
that already ran (one finished with `arbiter resume`, or interrupted: its unfinished trials count
as not having got there).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from interrupts import EXIT_INTERRUPTED, run_through_interrupts
from report import Started, append_report
from repro_tables import (
    grokfast_table,
    nanda_table,
    phases_table,
    prieto_mlp_table,
    prieto_table,
    with_settings,
)

from arbiter.commands.report import load_report
from arbiter.experiments.location import Location
from arbiter.experiments.record import has_tune_state, read_record
from arbiter.report.data import Report

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPRODUCTIONS = DOCS / "reproductions.md"


@dataclass(frozen=True)
class Reproduction:
    title: str
    table: Callable[[Report], tuple[str, bool]]  # markdown, goal met
    plot: str  # the report plot that shows the result best


# name -> its template is configs/sweep_templates/repro_NAME.toml
REPRODUCTIONS_BY_NAME = {
    "nanda": Reproduction(
        "Nanda et al. 2023, steps to test loss < 0.1 by training fraction",
        nanda_table,
        "grokking_curves.png",
    ),
    "grokfast": Reproduction(
        "Grokfast (Lee et al. 2024), iterations to 95% validation accuracy",
        grokfast_table,
        "grokking_curves.png",
    ),
    "prieto": Reproduction(
        "softmax collapse (Prieto et al. 2025), StableMax, fp64 and orthograd without decay",
        prieto_table,
        "grokking_curves.png",
    ),
    "prieto_mlp": Reproduction(
        "StableMax on Prieto et al. 2025's one-hot MLP, no regularization",
        prieto_mlp_table,
        "grokking_curves.png",
    ),
    "phases": Reproduction(
        "phases of Liu et al. 2022 over learning rate x weight decay",
        phases_table,
        "phase_diagram.png",
    ),
}


class Failed(Exception):
    """An arbiter command of the reproduction failed or was interrupted: nothing to compare."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def arbiter(*argv: str) -> None:
    command = [sys.executable, "-m", "arbiter", *argv]
    print("$", " ".join(command[2:]), flush=True)
    code = run_through_interrupts(command)
    if code == EXIT_INTERRUPTED:
        raise Failed(f"reproduce: `{' '.join(command[2:4])}` was interrupted", code)
    if code:
        raise Failed(f"reproduce: `{' '.join(command[2:])}` failed with exit code {code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reproduction", choices=sorted(REPRODUCTIONS_BY_NAME))
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to use (0: one trial per CPU)")
    parser.add_argument(
        "--trials-per-gpu", metavar="K|auto", help="trials sharing each GPU (arbiter sweep's flag)"
    )
    parser.add_argument("--address", help="a running Ray cluster (default: an embedded local Ray)")
    parser.add_argument("--storage", type=Path, help="results folder (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--experiment",
        type=Path,
        help="tabulate this finished, resumed or interrupted experiment of the "
        "reproduction instead of running a new sweep",
    )
    args = parser.parse_args()
    repro = REPRODUCTIONS_BY_NAME[args.reproduction]
    write = not (args.no_write or args.set)
    started = Started()
    template = f"repro_{args.reproduction}.toml"
    if args.experiment and (args.set or args.address or args.storage):
        parser.error("--experiment tabulates what ran: --set, --address, --storage do not apply")
    # a temporary results folder only for a new sweep without --storage
    temporary = args.experiment is None and args.storage is None
    with tempfile.TemporaryDirectory() if temporary else nullcontext() as scratch:
        if args.experiment:
            experiment = args.experiment.resolve()
        else:
            name = f"repro-{args.reproduction}-{started.start:%Y%m%d-%H%M%S}"
            experiment = (args.storage or Path(scratch)) / name
            sets = [flag for value in args.set for flag in ("--set", value)]
            cluster = ["--address", args.address] if args.address else []
            packing = ["--trials-per-gpu", args.trials_per_gpu] if args.trials_per_gpu else []
            try:
                arbiter(
                    "sweep",
                    "--template",
                    template,
                    "--gpus",
                    str(args.gpus),
                    *packing,
                    *cluster,
                    "--storage",
                    str(experiment.parent),
                    "--name",
                    name,
                    *sets,
                )
            except Failed as exc:
                if exc.exit_code != EXIT_INTERRUPTED:
                    raise
                hint = interrupted_hint(args.reproduction, experiment, cluster, temporary)
                raise Failed(hint, EXIT_INTERRUPTED) from None
        plots = experiment / "report"
        arbiter("report", str(experiment), "--out", str(plots))
        report = load_report(Location.of(experiment))
        if report.template != template:
            raise Failed(f"reproduce: {experiment} ran {report.template}, not {template}")
        record = read_record(Location.of(experiment))
        table, met = repro.table(with_settings(report, record.resolved))
        print(table)
        if write and record.sets:  # --experiment of a run changed with --set
            write = False
            print(
                f"reproduce: {experiment.name} ran with --set {' --set '.join(record.sets)}: "
                "not written down",
                file=sys.stderr,
            )
        if write:
            figure = DOCS / "reproductions" / f"{args.reproduction}.png"
            figure.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plots / repro.plot, figure)
            body = (
                f"Template: `{template}`\n\n{table}\n![{repro.title}](reproductions/{figure.name})"
            )
            append_report(REPRODUCTIONS, started.section(repro.title, body))
    return 0 if met else 1


def interrupted_hint(
    reproduction: str, experiment: Path, cluster: list[str], temporary: bool
) -> str:
    if temporary:
        return "reproduce: interrupted; its temporary results are removed (--storage keeps them)"
    if not has_tune_state(
        Location.of(experiment)
    ):  # stopped before Tune saved anything: nothing to resume
        return f"reproduce: interrupted before the sweep began; {experiment} can be removed"
    resume = " ".join(
        ["arbiter resume", experiment.name, "--storage", str(experiment.parent), *cluster]
    )
    return (
        f"reproduce: interrupted; after `{resume}`, `python benchmarks/reproduce.py "
        f"{reproduction} --experiment {experiment}` compares it"
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
