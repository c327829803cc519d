"""What an experiment folder says about its trials: state, swept values, last and best results.

Reads Tune's saved experiment state (readable from another terminal while the sweep runs, and
after it ended) and each trial's `result.json`. Trials that a Ctrl-C or a killed driver left
behind read RUNNING or PENDING in the saved state: that is what they are, unfinished.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from arbiter.experiment import Record

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


def read_trials(path: Path, metric: str, mode: str) -> list[TrialStatus]:
    """Every trial Tune recorded for the experiment at `path`, in creation order."""
    from ray.tune import ExperimentAnalysis

    if not any(path.glob("experiment_state-*.json")):
        return []
    # It warns about every trial that has not reported yet; here that is normal, not news.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = ExperimentAnalysis(str(path))
    trials = []
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        rows = result_rows(Path(trial.path))
        values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
        best = (max if mode == "max" else min)(values) if values else None
        trials.append(
            TrialStatus(
                id=trial.trial_id,
                status=_state(trial.status, rows),
                path=str(trial.path),
                config=dict(trial.config),
                last=_public(rows[-1]) if rows else {},
                best=best,
                error=_error(Path(trial.path)) if trial.status == ERRORED else None,
            )
        )
    return trials


def as_json(path: Path, record: Record, trials: list[TrialStatus]) -> str:
    return json.dumps(
        {"experiment": str(path), "template": record.template,
         "trials": [asdict(t) for t in trials]},
        indent=2,
    )  # fmt: skip


def print_table(path: Path, record: Record, trials: list[TrialStatus], metric: str) -> None:
    from rich.table import Table

    from arbiter.ui import console, tally

    keys = sorted({k for t in trials for k in t.config})
    # steps to fit (train accuracy >= 99%) and to grok (val accuracy >= 99%), see core.grokking
    table = Table("trial", *keys, "state", "step", metric, "best", "fit at", "grok at",
                  box=None, header_style="bold")  # fmt: skip
    for t in trials:
        table.add_row(
            t.id, *(_fmt(t.config.get(k)) for k in keys), t.status,
            _fmt(t.last.get("step")), _fmt(t.last.get(metric)), _fmt(t.best),
            _fmt(t.last.get("steps_to_fit")), _fmt(t.last.get("steps_to_grok")),
        )  # fmt: skip
    out = console()
    counts = tally(t.status for t in trials) or "no trials yet"
    out.print(f"{path}  ({record.template})  {counts}")
    out.print(table)
    for t in trials:
        if t.error:
            out.print(f"{t.id} failed: {t.error}")


def _state(saved: str, rows: list[dict[str, Any]]) -> str:
    """Tune saves its state every ~10 s: a trial saved as PENDING that has reported since has
    started (it is running, or was when the sweep was interrupted)."""
    return RUNNING if saved == PENDING and rows else saved


def result_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """Every result row Tune wrote for the trial in `trial_dir`, oldest first."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line being written as we read
    return rows


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A result row without Tune's bookkeeping (config, host names, paths)."""
    hidden = {"config", "hostname", "pid", "node_ip", "date", "trial_id", "experiment_tag",
              "checkpoint_dir_name", "done", "should_checkpoint"}  # fmt: skip
    return {k: v for k, v in row.items() if k not in hidden}


def _error(trial_dir: Path) -> str | None:
    """The last line of the trial's traceback: the exception and its message."""
    path = trial_dir / "error.txt"
    if not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
