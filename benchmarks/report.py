"""Shared by the benchmarks: the machine they ran on, the command, and docs/benchmarks.md.

`Started` builds the header every section of docs/benchmarks.md shares: start time, command,
machine, load average before and after, time elapsed.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
REPORT_HEADER = """# Benchmarks

Measured numbers about Arbiter, newest last. Every figure comes with the command and the machine
that produced it, and every ratio (such as the training core's overhead over a plain PyTorch
loop) is measured side by side in one run, interleaved, never across runs or machines: rerun the
command on your machine before comparing with a number here.
"""


def machine(uses_gpu: bool = False) -> str:
    """CPU model, cores, torch version and threads, and the GPU if there is one."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: keep platform's answer
    gpu = "none"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        gpu = ", ".join(names)
        if not uses_gpu:
            gpu += " (not used: this benchmark runs on the CPU)"
    return (
        f"{cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; GPU: {gpu}"
    )


def load_average() -> str:
    """The 1-minute load average: how busy the machine was with other work, or "unknown"."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):  # not a Unix
        return "unknown"


def command_line() -> str:
    """The command as typed from the current directory, to rerun it."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    return shlex.join([python, *sys.argv])


def append_report(path: Path, text: str) -> None:
    """Append a section to `path`, creating it with its header first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(REPORT_HEADER, encoding="utf-8")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


class Started:
    """A benchmark's start, for the header of the section it appends to its report
    (docs/benchmarks.md, or docs/reproductions.md for reproduce.py).

    Create it when the benchmark begins, before any measured work: it records the UTC start time
    (`start`) and the load average then (`load_before`). `section` adds the rest at the end.
    """

    def __init__(self, uses_gpu: bool = False) -> None:
        self.uses_gpu = uses_gpu
        self.start = datetime.now(timezone.utc)
        self.load_before = load_average()

    def section(self, title: str, body: str) -> str:
        """The whole markdown section, ready for `append_report`.

        A blank line, `## <start> UTC: <title>`, the command, the machine, the load average before
        and now with the time elapsed since the start, then `body` and a final newline.
        """
        elapsed = round((datetime.now(timezone.utc) - self.start).total_seconds())
        body = body.rstrip("\n")  # one final newline, whether or not body ends with one
        return (
            f"\n## {self.start:%Y-%m-%d %H:%M} UTC: {title}\n\n"
            f"Command: `{command_line()}`\n\n"
            f"Machine: {machine(self.uses_gpu)}\n\n"
            # Other work on the machine slows every benchmark: say how busy it was, and how long.
            f"Load average (1 min): {self.load_before} before, {load_average()} after "
            f"({elapsed // 60} min {elapsed % 60} s elapsed)\n\n"
            f"{body}\n"
        )


def publish(started: Started, title: str, text: str, write: bool, path: Path = REPORT) -> None:
    """Print a benchmark's result; if `write`, also append it to `path` as a section titled
    `title` (see `Started.section`) and say so on stderr."""
    print(text)
    if write:
        append_report(path, started.section(title, text))
        print(f"\nappended to {path}", file=sys.stderr)
