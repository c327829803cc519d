"""`arbiter report`: a sweep's trials as plots, a Markdown summary and the same data as JSON;
with two experiments (`arbiter report A B --out DIR`), their seed groups side by side.

Read-only on the experiments: it reads Tune's saved state and each trial's `result.json` (as
`arbiter status` does), so it works on a finished sweep and on one still running, and writes
only into its own folder: `<experiment>/report/`, or `./<name>-report/` for an experiment in
object storage, unless `out` says otherwise. A comparison belongs to neither experiment, so it
needs `out`.
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
from arbiter.report.analysis import analyse
from arbiter.report.compare import compare, comparison_json, comparison_markdown
from arbiter.report.data import Report, make_report, trial_report
from arbiter.report.summary import SUMMARY_JSON, SUMMARY_MD, summary_json, summary_markdown


def report(experiment: str, storage: str | None = None, out: Path | None = None) -> ExitCode:
    # matplotlib: loaded by this command only
    from arbiter.report.analysis_plots import draw_analysis
    from arbiter.report.plots import draw_all

    data = load_report(find_experiment(experiment, storage))
    _check_results(data)
    default = Path(f"{data.name}-report") if data.path.remote else data.path.local / "report"
    folder = _folder(out or default)
    analysis = analyse(data)
    plots = draw_all(data, folder) | draw_analysis(data, analysis, folder)
    (folder / SUMMARY_JSON).write_text(json.dumps(summary_json(data, plots, analysis), indent=2))
    (folder / SUMMARY_MD).write_text(summary_markdown(data, plots, analysis))
    print(f"report of {data.name} ({len(data.trials)} trials): {folder / SUMMARY_MD}")
    print(f"plots in {folder}: {', '.join(plots.values())}")
    return ExitCode.DONE


def compare_reports(
    first: str, second: str, storage: str | None = None, out: Path | None = None
) -> ExitCode:
    """Two experiments' seed groups side by side, in `out`. Every check (the folder given, both
    experiments found, different, with results) comes before anything is written."""
    from arbiter.report.analysis_plots import draw_comparison  # matplotlib, as above

    if out is None:
        raise UserError(
            f"report {first} {second}: comparing two experiments needs --out DIR, a folder of "
            "its own (the comparison belongs to neither experiment)"
        )
    paths = [find_experiment(first, storage), find_experiment(second, storage)]
    if paths[0].uri == paths[1].uri:
        raise UserError(
            f"report {first} {second}: both name the experiment {paths[0].uri}; compare two "
            "different experiments"
        )
    reports = [load_report(path) for path in paths]
    for data in reports:
        _check_results(data)
    folder = _folder(out)
    comparison = compare(*reports)
    plots = draw_comparison(comparison, folder)
    (folder / SUMMARY_JSON).write_text(json.dumps(comparison_json(comparison, plots), indent=2))
    (folder / SUMMARY_MD).write_text(comparison_markdown(comparison, plots))
    a, b = reports
    print(
        f"comparison of {a.name} ({len(a.trials)} trials) and {b.name} ({len(b.trials)} "
        f"trials): {folder / SUMMARY_MD}"
    )
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
    template = Path(record.template).name
    return make_report(path, template, sweep.metric, sweep.mode, trials, record.parent)


def _check_results(data: Report) -> None:
    if not any(t.rows for t in data.trials):
        raise UserError(
            f"{data.name}: no trial has reported a result yet, so there is nothing to report "
            f"(`arbiter status {data.name}` shows its trials)"
        )


def _folder(out: Path) -> Path:
    """The report's folder, created."""
    folder = out.expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {folder}: cannot create the report folder: {exc}") from None
    return folder
