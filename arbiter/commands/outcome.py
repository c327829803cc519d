"""How a sweep, a resume or a long run ended: its trials' table, what to run to continue, and
the exit code."""

from __future__ import annotations

from arbiter.commands.exit_codes import ExitCode
from arbiter.commands.status import print_table
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record
from arbiter.experiments.trials import ERRORED, FINISHED
from arbiter.tune.state import read_trials


def outcome(path: Location, record: Record, again: str, budget_spent: bool = False) -> ExitCode:
    """Print the saved outcome of the experiment at `path`: DONE when every trial finished,
    FAILED when one failed, else INTERRUPTED (or BUDGET_SPENT) with `again`, the command that
    continues it."""
    sweep = record.config.sweep
    assert sweep is not None
    trials = read_trials(path, sweep.metric, sweep.mode)
    print_table(path, record, trials, sweep.metric)
    unfinished = [t for t in trials if t.status not in (FINISHED, ERRORED)]
    # A long run without a saved trial stopped before it began: running it again starts it.
    if unfinished or (record.kind == "long" and not trials):
        why = "time budget spent" if budget_spent else "interrupted"
        count = "" if record.kind == "long" else f": {len(unfinished)} trial(s) unfinished"
        print(f"{why}{count}; continue with `{again}`")
        return ExitCode.BUDGET_SPENT if budget_spent else ExitCode.INTERRUPTED
    if any(t.status == ERRORED for t in trials):
        return ExitCode.FAILED
    return ExitCode.DONE
