"""`arbiter report`: a sweep's trials as plots, a Markdown summary and the same data as JSON.

Read-only on the experiment: it reads Tune's saved state and each trial's `result.json` (as
`arbiter status` does), so it works on a finished sweep and on one still running, and writes
only into its own folder: `<experiment>/report/`, or `./<name>-report/` for an experiment in
object storage, unless `out` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from arbiter.commands.exit_codes import ExitCode
from arbiter.errors import UserError
from arbiter.experiments.location import Location
from arbiter.experiments.record import read_record
from arbiter.experiments.storage import find_experiment
from arbiter.experiments.trials import result_rows
from arbiter.report.data import Report, make_report, trial_report
from arbiter.report.summary import SUMMARY_JSON, SUMMARY_MD, summary_json, summary_markdown


def report(experiment: str, storage: str | None = None, out: Path | None = None) -> ExitCode:
    from arbiter.report.plots import draw_all  # matplotlib: loaded by this command only

    data = load_report(find_experiment(experiment, storage))
    if not any(t.rows for t in data.trials):
        raise UserError(
            f"{data.name}: no trial has reported a result yet, so there is nothing to report "
            f"(`arbiter status {data.name}` shows its trials)"
        )
    default = Path(f"{data.name}-report") if data.path.remote else data.path.local / "report"
    folder = (out or default).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {folder}: cannot create the report folder: {exc}") from None
    plots = draw_all(data, folder)
    (folder / SUMMARY_JSON).write_text(json.dumps(summary_json(data, plots), indent=2))
    (folder / SUMMARY_MD).write_text(summary_markdown(data, plots))
    print(f"report of {data.name} ({len(data.trials)} trials): {folder / SUMMARY_MD}")
    print(f"plots in {folder}: {', '.join(plots.values())}")
    return ExitCode.DONE


def load_report(path: Location) -> Report:
    """Every trial of the experiment at `path` with its rows, measures and final metrics."""
    record = read_record(path)
    sweep = record.config.sweep
    assert sweep is not None  # only templates with [sweep] become experiments

    from arbiter.tune.state import read_trials  # Ray: after every check of the input

    trials = [
        trial_report(t, result_rows(path / t.path.rpartition("/")[2]))
        for t in read_trials(path, sweep.metric, sweep.mode)
    ]
    return make_report(path, Path(record.template).name, sweep.metric, sweep.mode, trials)
