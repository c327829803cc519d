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
    """The cells of every body row of the markdown tables in `output`."""
    rows = []
    for line in output.splitlines():
        if line.startswith("|") and not line.startswith(("| model", "|---")):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_core_overhead_smoke_test_prints_both_loops() -> None:
    report = ROOT / "docs" / "benchmarks.md"
    before = report.read_text() if report.exists() else None
    done = subprocess.run(
        [sys.executable, "benchmarks/core_overhead.py", "--smoke-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    rows = table_rows(done.stdout)
    loops = [row[1] for row in rows]
    assert "plain" in loops
    assert any(loop.startswith("core") for loop in loops)
    for row in rows:
        seconds_per_step = float(row[3])  # the s/step column
        assert seconds_per_step > 0, row
    # A smoke test leaves the report alone.
    assert (report.read_text() if report.exists() else None) == before
