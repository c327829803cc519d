"""Terminal output helpers shared by the commands: a console and human-readable numbers."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable

from rich.console import Console


def console() -> Console:
    """A console for tables; wide when piped so that columns are never cut to 80 characters."""
    return Console() if sys.stdout.isatty() else Console(width=240, no_color=True)


def si(value: float, unit: str = "") -> str:
    """1.23e9 -> '1.23G'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def tally(states: Iterable[str]) -> str:
    """["RUNNING", "RUNNING", "PENDING"] -> '1 pending, 2 running'."""
    counts = Counter(states)
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
