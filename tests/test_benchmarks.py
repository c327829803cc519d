"""The benchmarks still run: each is started with `--smoke-test` the way a user would start it.

Only that it runs and prints sane rows is checked; timings are never asserted, since they depend
on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def table_rows(output: str) -> list[list[str]]:
    """The cells of every body row of the markdown tables in `output` (headers left out)."""
    lines = output.splitlines()
    rows = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        is_header = following.startswith("|---")
        if line.startswith("|") and not line.startswith("|---") and not is_header:
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def run_smoke_test(script: str) -> str:
    """Run `benchmarks/SCRIPT --smoke-test`; check it left docs/benchmarks.md alone."""
    report = ROOT / "docs" / "benchmarks.md"
    before = report.read_text() if report.exists() else None
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--smoke-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (report.read_text() if report.exists() else None) == before
    return done.stdout


@pytest.mark.slow
def test_core_overhead_smoke_test_prints_both_loops() -> None:
    rows = table_rows(run_smoke_test("core_overhead.py"))
    loops = [row[1] for row in rows]
    assert "plain" in loops
    assert any(loop.startswith("core") for loop in loops)
    for row in rows:
        seconds_per_step = float(row[3])  # the s/step column
        assert seconds_per_step > 0, row


@pytest.mark.slow
def test_grokfast_smoke_test_runs_both_ways() -> None:
    # 100 steps: too few to fit or grok, so every measure reads as beyond the budget
    rows = table_rows(run_smoke_test("grokfast.py"))
    assert rows == [["1.0", "0", "> 100", "> 100", "> 100", "> 100", "-"]]
