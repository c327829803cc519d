"""Terminal and report output shared by every command: a console, and the one way values and
numbers are written (`show`, `si`, `gib`, `tally`)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable

from rich.console import Console


def console() -> Console:
    """A console for tables; wide when piped so that columns are never cut to 80 characters."""
    return Console() if sys.stdout.isatty() else Console(width=240, no_color=True)


def show(value: object, digits: int = 4) -> str:
    """A value as tables, progress lines and reports write it: `-` for none, a float as written
    (`1.0`, `0.1`) when `digits` significant digits hold it, else rounded to them, a string as
    it is, anything else as JSON (`true`, `[4, 8]`), the way a template or `--set` writes it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        rounded = f"{value:.{digits}g}"
        return repr(value) if float(rounded) == value else rounded
    if isinstance(value, str):
        return value
    return json.dumps(value)


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
