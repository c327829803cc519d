"""Start-up latency: from typing `arbiter sweep` to the trial's first optimizer step, and from
typing `arbiter resume` to the first step after the checkpoint it resumes from.

Each round writes a one-trial CPU template to a temporary folder (the quickstart's 1 x 64 model
on a + b mod 97, fp32, `log_interval = 1` so that every step is reported, a checkpoint every
`--checkpoint-interval` steps, and far more steps than the round lets it run) and then:

1. starts `arbiter sweep --template T --gpus 0 --storage S --name N` as a subprocess: an embedded
   local Ray, one CPU trial;
2. once the trial's first checkpoint is in the experiment folder, interrupts the sweep with
   SIGINT, as Ctrl-C does, and waits for it to exit (Tune saves its state; exit code 130);
3. starts `arbiter resume N --storage S` and, once the trial reports its first step after the
   checkpoint, interrupts that too.

Clocks. Everything is wall-clock time (`time.time()`) on the one machine. The start is taken just
before the subprocess is created, so Python's start-up and imports count. "Ray up" is when the
command's `Ray dashboard:` log line reaches this process (the command is run unbuffered; where
there is no dashboard line, the `sweep NAME:` line stands for it), "experiment ready" when its
`sweep NAME: ...` or `resuming NAME: ...` line does. The trial's own times come from its result
rows: `trial_start` (set when the trial function begins, in `arbiter/tune/trainable.py`) and
`wall_time` (set when the row is reported). Tune's `time_total_s` cannot serve: it starts when
Tune first calls the trainable, not at a wall-clock moment this process knows, and after a restore
it carries on from the total saved with the checkpoint, so it counts time spent before the
interruption. The first row of the sweep is step 1's report, which also evaluates (every first
report does; the whole 97 x 97 table, tens of milliseconds for this model); the first row of the
resume is the step after the checkpoint, which does not.

Phases, each from the end of the previous one: process start -> Ray up -> experiment ready ->
trial function started -> first step reported. The table gives, for each command, the median of
each phase over `--rounds` rounds and the median and range of the total; the medians of the phases
need not add up to the median total.

    python benchmarks/startup.py [--rounds 3] [--checkpoint-interval 10] [--smoke-test]

It prints a markdown table and, unless `--no-write` or `--smoke-test`, appends it to
`docs/benchmarks.md` with the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report import REPORT, Started, publish

from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows

NAME = "startup"
EXIT_INTERRUPTED = 130
WAIT_S = 300.0  # longest wait for any one event before the round fails
POLL_S = 0.1

TEMPLATE = """
[model]
dim = 64
n_layers = 1
n_heads = 4
mlp = "gelu"
mlp_dim = 256

[training]
batch_size = 512
steps = 1000000  # never reached: the round interrupts the trial
warmup_steps = 10
eval_interval = 1000
precision = "fp32"
device = "cpu"

[checkpoint]
interval = {interval}

[logging]
log_interval = 1
enable_tensorboard = false

[sweep]
metric = "val/accuracy"
mode = "max"

[sweep.space]
"training.seed" = [0]
"""

PHASES = ("Ray up", "experiment ready", "trial function started", "first step reported")


class Command:
    """An `arbiter` subprocess whose output lines are stamped with the time they arrive."""

    def __init__(self, args: list[str]) -> None:
        arbiter = Path(sys.executable).parent / "arbiter"
        program = [str(arbiter)] if arbiter.is_file() else [sys.executable, "-m", "arbiter"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.lines: list[tuple[float, str]] = []
        self.started = time.time()
        self.process = subprocess.Popen(
            [*program, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # a signal for this command reaches nothing else
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def first_line(self, *prefixes: str) -> float | None:
        """When the first line starting with one of `prefixes` arrived, or None."""
        for stamp, line in list(self.lines):
            if line.startswith(prefixes):
                return stamp
        return None

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines[-40:])

    def wait_for(self, what: str, found: Callable[[], Any]) -> Any:
        """Poll `found` until it returns something; fail if the command exits or time runs out."""
        deadline = time.monotonic() + WAIT_S
        while True:
            value = found()
            if value is not None:
                return value
            if self.process.poll() is not None:
                self.reader.join(timeout=5)
                value = found()
                if value is not None:
                    return value
                raise SystemExit(
                    f"the command exited ({self.process.returncode}) before {what}:\n"
                    f"{self.output()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise SystemExit(f"no {what} after {WAIT_S:.0f} s:\n{self.output()}")
            time.sleep(POLL_S)

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C sends it; wait for the command to exit and return its exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SystemExit(f"the command did not stop within {WAIT_S:.0f} s of SIGINT") from None
        self.reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Timing:
    """One command of one round: seconds since its start for each phase, and the step."""

    marks: dict[str, float] = field(default_factory=dict)
    step: int = 0

    def phases(self) -> dict[str, float | None]:
        """Each phase's duration from the end of the previous one (None where it was not seen)."""
        out: dict[str, float | None] = {}
        before = 0.0
        for phase in PHASES:
            if phase in self.marks:
                out[phase] = self.marks[phase] - before
                before = self.marks[phase]
            else:
                out[phase] = None
        return out

    @property
    def total(self) -> float:
        return self.marks[PHASES[-1]]


def trial_dir(experiment: Path) -> Path | None:
    found = [p.parent for p in experiment.glob("*/params.json")]
    return found[0] if len(found) == 1 else None


def has_checkpoint(experiment: Path) -> Path | None:
    trial = trial_dir(experiment)
    if trial is None:
        return None
    return next(iter(sorted(trial.glob("checkpoint_*"))), None)


def first_row(experiment: Path, since: float) -> dict[str, Any] | None:
    """The first result row of a trial function started after `since`."""
    trial = trial_dir(experiment)
    if trial is None:
        return None
    for row in result_rows(Location.of(trial)):
        if row.get("trial_start", 0.0) >= since and "wall_time" in row:
            return row
    return None


def marks(command: Command, ready: str, row: dict[str, Any]) -> Timing:
    start = command.started
    ray_up = command.first_line("Ray dashboard:")
    experiment = command.first_line(ready)
    timing = Timing(step=int(row["step"]))
    if ray_up is not None:
        timing.marks["Ray up"] = ray_up - start
    if experiment is not None:
        timing.marks["experiment ready"] = experiment - start
    timing.marks["trial function started"] = row["trial_start"] - start
    timing.marks["first step reported"] = row["wall_time"] - start
    return timing


def one_round(work: Path, interval: int) -> tuple[Timing, Timing]:
    template = work / "startup.toml"
    template.write_text(TEMPLATE.format(interval=interval))
    storage = work / "storage"
    experiment = storage / NAME

    sweep = Command(
        [
            "sweep",
            "--template",
            str(template),
            "--gpus",
            "0",
            "--storage",
            str(storage),
            "--name",
            NAME,
        ]
    )
    try:
        row = sweep.wait_for("a first result row", lambda: first_row(experiment, sweep.started))
        sweep.wait_for("a checkpoint", lambda: has_checkpoint(experiment))
        code = sweep.interrupt()
    finally:
        sweep.kill()
    if code != EXIT_INTERRUPTED:
        print(
            f"warning: the interrupted sweep exited with {code}, not {EXIT_INTERRUPTED}",
            file=sys.stderr,
        )
    first = marks(sweep, f"sweep {NAME}:", row)

    resume = Command(["resume", NAME, "--storage", str(storage)])
    try:
        row = resume.wait_for(
            "a step after the resume", lambda: first_row(experiment, resume.started)
        )
        resume.interrupt()
    finally:
        resume.kill()
    return first, marks(resume, f"resuming {NAME}:", row)


def fmt(values: Sequence[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{statistics.median(seen):.2f}" if seen else "-"


def format_table(rounds: list[tuple[Timing, Timing]]) -> str:
    lines = [
        "| command | "
        + " | ".join(f"→ {phase} (s)" for phase in PHASES)
        + " | total: start → first step (s) | range (s) | first step |",
        "|---|" + "---:|" * (len(PHASES) + 3),
    ]
    for index, command in enumerate(("arbiter sweep", "arbiter resume")):
        timings = [r[index] for r in rounds]
        phases = [t.phases() for t in timings]
        totals = [t.total for t in timings]
        steps = sorted({t.step for t in timings})
        cells = [fmt([p[phase] for p in phases]) for phase in PHASES]
        lines.append(
            f"| `{command}` | "
            + " | ".join(cells)
            + f" | {statistics.median(totals):.2f} | {min(totals):.2f} – {max(totals):.2f} "
            f"| step {', '.join(map(str, steps))} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--checkpoint-interval",
        type=int,
        default=10,
        help="steps between the trial's checkpoints (default 10)",
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not append to {REPORT.name}")
    parser.add_argument(
        "--smoke-test", action="store_true", help="one round, nothing written: checks that it runs"
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "checkpoint_interval"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke_test:
        args.rounds = 1
    started = Started()
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="arbiter-bench-") as tmp:
            rounds.append(one_round(Path(tmp), args.checkpoint_interval))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    table = format_table(rounds)
    notes = (
        f"One trial (1 x 64 model on a + b mod 97, fp32, batch 512, log_interval 1, a checkpoint "
        f"every {args.checkpoint_interval} steps) on an embedded local Ray (`--gpus 0`). Each "
        "column is the median over rounds of the time from the end of the previous phase; "
        "total and range: from the command's start to the first step's report. Ray up: the "
        "`Ray dashboard:` line (Python's start-up, the imports and `ray.init`); experiment "
        "ready: the `sweep NAME:` or `resuming NAME:` line; "
        "trial function started: the row's `trial_start`; first step reported: the row's "
        "`wall_time` (step 1 of the sweep, which also evaluates; for the resume, the step after "
        f"the checkpoint it resumed from). The sweep is interrupted with SIGINT once its trial "
        f"has a checkpoint, then resumed with `arbiter resume`. {args.rounds} round(s)."
    )
    publish(
        started,
        "start-up, `arbiter sweep` and `arbiter resume` to the first step",
        f"{table}\n\n{notes}",
        write=not (args.no_write or args.smoke_test),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
