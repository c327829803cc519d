"""An experiment's trials as Arbiter shows them: a trial's state, swept values, last and best
results (`TrialStatus`), read from each trial's `result.json` and `error.txt`.

`tune.state` fills these from Tune's saved experiment state. Trials that a Ctrl-C or a killed
driver left behind read RUNNING or PENDING there: that is what they are, unfinished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from arbiter.experiments.location import Location

FINISHED = "TERMINATED"
ERRORED = "ERROR"
PENDING = "PENDING"
RUNNING = "RUNNING"


@dataclass(frozen=True)
class TrialStatus:
    id: str
    status: str
    path: str
    config: dict[str, Any]
    last: dict[str, Any]
    best: float | None
    error: str | None


def result_rows(trial_dir: Location) -> list[dict[str, Any]]:
    """Every result row Tune wrote for the trial in `trial_dir`, oldest first."""
    text = _read(trial_dir / "result.json")
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line being written as we read
    return rows


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A result row without Tune's bookkeeping (config, process, paths); the host name stays,
    with the node and GPU ids the trial reports, to say where it ran."""
    hidden = {
        "config",
        "pid",
        "node_ip",
        "date",
        "trial_id",
        "experiment_tag",
        "checkpoint_dir_name",
        "done",
        "should_checkpoint",
    }
    return {k: v for k, v in row.items() if k not in hidden}


def error_line(trial_dir: Location) -> str | None:
    """The last line of the trial's traceback: the exception and its message."""
    lines = [line.strip() for line in _read(trial_dir / "error.txt").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _read(file: Location) -> str:
    """The file's text; empty when it is not there (yet)."""
    try:
        return file.read_text()
    except FileNotFoundError:
        return ""
