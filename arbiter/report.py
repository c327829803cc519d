"""`arbiter report`: a sweep's trials as plots, a Markdown summary and the same data as JSON.

Read-only on the experiment: it reads Tune's saved state and each trial's `result.json` (as
`arbiter status` does), so it works on a finished sweep and on one still running, and writes
only into its own folder (`<experiment>/report/` unless `--out` says otherwise). The data side
lives here and never imports matplotlib; `report_plots` draws.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbiter.core.grokking import PHASE_ACCURACY, PHASE_GAP, THRESHOLD, measures_from_rows, phase
from arbiter.errors import UserError
from arbiter.experiment import find_experiment, read_record
from arbiter.status import TrialStatus, read_trials, result_rows

GROK_KEYS = ("steps_to_fit", "steps_to_grok", "grok_delay")
FINAL_KEYS = ("train/accuracy", "val/accuracy", "train/loss", "val/loss")
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
BEST_SHOWN = 3


@dataclass
class TrialReport:
    """One trial as the report shows it. `rows` are its result rows, one per step."""

    id: str
    status: str
    config: dict[str, Any]
    step: int | None
    measures: dict[str, int]
    final: dict[str, float]
    best: float | None
    error: str | None
    phase: str | None  # Liu et al.'s phase at the last row (None without rows)
    rows: list[dict[str, Any]] = field(repr=False)


@dataclass
class Report:
    """An experiment's trials and what the plots and tables need to know about the sweep."""

    name: str
    path: Path
    template: str
    metric: str
    mode: str
    keys: list[str]  # every key the trials' configs carry (the template's axes)
    swept: list[str]  # those that take more than one value: the plots' axes
    trials: list[TrialReport]


def run_report(args: argparse.Namespace) -> int:
    from arbiter.report_plots import draw_all  # matplotlib: loaded by this command only

    report = load_report(find_experiment(args.experiment, args.storage))
    if not any(t.rows for t in report.trials):
        raise UserError(
            f"{report.name}: no trial has reported a result yet, so there is nothing to report "
            f"(`arbiter status {report.name}` shows its trials)"
        )
    out = (args.out or report.path / "report").expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the report folder: {exc}") from None
    plots = draw_all(report, out)
    (out / SUMMARY_JSON).write_text(json.dumps(summary_json(report, plots), indent=2))
    (out / SUMMARY_MD).write_text(summary_markdown(report, plots))
    print(f"report of {report.name} ({len(report.trials)} trials): {out / SUMMARY_MD}")
    print(f"plots in {out}: {', '.join(plots.values())}")
    return 0


def load_report(path: Path) -> Report:
    """Every trial of the experiment at `path` with its rows, measures and final metrics."""
    record = read_record(path)
    sweep = record.config.sweep
    assert sweep is not None  # only templates with [sweep] become experiments
    trials = [
        trial_report(t, result_rows(Path(t.path)))
        for t in read_trials(path, sweep.metric, sweep.mode)
    ]
    return make_report(path, Path(record.template).name, sweep.metric, sweep.mode, trials)


def trial_report(status: TrialStatus, rows: Iterable[Mapping[str, Any]]) -> TrialReport:
    """A trial as `arbiter status` reads it, with its result rows (one per step from here on)."""
    rows = one_row_per_step(rows)
    last = rows[-1] if rows else {}
    return TrialReport(
        id=status.id,
        status=status.status,
        config=status.config,
        step=last.get("step"),
        # the run's own measures see every evaluation; rows only those that were reported
        measures={k: last[k] for k in GROK_KEYS if k in last} or measures_from_rows(rows),
        final={k: last[k] for k in FINAL_KEYS if is_number(last.get(k))},
        best=status.best,
        error=status.error,
        phase=phase(rows) if rows else None,
        rows=rows,
    )


def make_report(
    path: Path, template: str, metric: str, mode: str, trials: list[TrialReport]
) -> Report:
    keys = sorted({k for t in trials for k in t.config})
    return Report(
        name=path.name,
        path=path,
        template=template,
        metric=metric,
        mode=mode,
        keys=keys,
        swept=swept_keys(trials, keys),
        trials=trials,
    )


def one_row_per_step(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows in step order, the last one written for each step.

    A trial restarted from a checkpoint (a worker that died, `arbiter resume`) reports again the
    steps after that checkpoint; the later report is the one its run went on from. Rows without
    a step (none are expected) cannot be placed on a curve and are dropped.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            by_step.pop(step, None)  # re-insert so that dict order does not matter below
            by_step[step] = dict(row)
    return [by_step[s] for s in sorted(by_step)]


def series(rows: Iterable[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the rows that carry it as a finite number."""
    steps, values = [], []
    for row in rows:
        if is_number(row.get(key)):
            steps.append(row["step"])
            values.append(float(row[key]))
    return steps, values


def swept_keys(trials: Iterable[TrialReport], keys: Iterable[str]) -> list[str]:
    """The config keys whose value differs between trials.

    An axis with one value (or a sweep that repeats one point over seeds it does not sweep)
    varies nothing, and a plot along it would be a single column.
    """
    trials = list(trials)
    return [k for k in keys if len({value_key(t.config.get(k)) for t in trials}) > 1]


def value_key(value: Any) -> str:
    """A hashable, comparable stand-in for a config value (lists are values too)."""
    return json.dumps(value, sort_keys=True)


def sort_values(values: Iterable[Any]) -> list[Any]:
    """Distinct config values in a natural order: numbers by size, anything else by its text."""
    distinct = {value_key(v): v for v in values}.values()
    return sorted(distinct, key=lambda v: (0, v, "") if is_number(v) else (1, 0, value_key(v)))


def ranked(report: Report) -> list[TrialReport]:
    """Trials with a result, best first: by the experiment's best metric, then (since many
    grokking runs reach the same accuracy of 1.0) by the earlier grok, then by id."""
    sign = -1 if report.mode == "max" else 1
    scored = [t for t in report.trials if t.best is not None]
    return sorted(
        scored,
        key=lambda t: (sign * t.best, t.measures.get("steps_to_grok", math.inf), t.id),
    )


def summary_json(report: Report, plots: Mapping[str, str]) -> dict[str, Any]:
    """The report's data: what summary.md shows, with null for what was not reached."""
    return {
        "experiment": str(report.path),
        "name": report.name,
        "template": report.template,
        "metric": report.metric,
        "mode": report.mode,
        "threshold": THRESHOLD,
        "swept": report.swept,
        "best": [t.id for t in ranked(report)[:BEST_SHOWN]],
        "plots": dict(plots),
        "trials": [
            {
                "id": t.id,
                "status": t.status,
                "config": t.config,
                "step": t.step,
                **{k: t.measures.get(k) for k in GROK_KEYS},
                "phase": t.phase,
                "final": {k: t.final.get(k) for k in FINAL_KEYS},
                "best": t.best,
                "error": t.error,
            }
            for t in report.trials
        ],
    }


PLOT_TITLES = {
    "grokking": "Grokking curves: train and validation accuracy",
    "loss": "Loss curves",
    "weight_norm": "Weight norm",
    "phase_diagram": "Phase diagram: Liu et al.'s phases and steps to grok",
    "metric_vs_params": "Final metric against each swept parameter",
}


def summary_markdown(report: Report, plots: Mapping[str, str]) -> str:
    from arbiter.ui import tally

    states = tally(t.status for t in report.trials)
    lines = [
        f"# Report: {report.name}",
        "",
        f"- experiment: `{report.path}`",
        f"- template: `{report.template}`; metric: `{report.metric}` ({report.mode})",
        f"- trials: {len(report.trials)} ({states})",
        f"- written: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"`steps_to_fit` and `steps_to_grok` are the first evaluated steps with train and "
        f"validation accuracy >= {THRESHOLD}, `grok_delay` the steps between them; `-` means "
        "not reached (yet). They are measured at the reported evaluations. `phase` is the "
        f"trial's regime so far by Liu et al. (2022): train and validation accuracy past "
        f"{PHASE_ACCURACY} less than {PHASE_GAP} steps apart (comprehension) or more (grokking), "
        "only train (memorization), neither (confusion).",
        "",
        "## Best trials",
        "",
    ]
    best = ranked(report)[:BEST_SHOWN]
    for i, t in enumerate(best, 1):
        values = ", ".join(f"`{k} = {fmt(t.config.get(k))}`" for k in report.keys)
        lines.append(
            f"{i}. **{t.id}**: best {report.metric} {fmt(t.best)}, steps_to_grok "
            f"{fmt(t.measures.get('steps_to_grok'))}; {values or 'no swept values'}"
        )
    if not best:
        lines.append("No trial has reported the metric yet.")
    lines += ["", "All other settings are the template's (saved in `arbiter.json`).", ""]
    lines += ["## Trials", ""]
    header = ["trial", *report.keys, "state", "step", *GROK_KEYS, "phase",
              "train acc", "val acc", "train loss", "val loss"]  # fmt: skip
    lines.append(_md_row(header))
    lines.append(_md_row(["---"] * len(header)))
    for t in report.trials:
        lines.append(
            _md_row([
                t.id, *(fmt(t.config.get(k)) for k in report.keys), t.status, fmt(t.step),
                *(fmt(t.measures.get(k)) for k in GROK_KEYS), fmt(t.phase),
                *(fmt(t.final.get(k)) for k in FINAL_KEYS),
            ])
        )  # fmt: skip
    failed = [t for t in report.trials if t.error]
    if failed:
        lines += ["", *(f"- {t.id} failed: {_md_cell(t.error or '')}" for t in failed)]
    lines += ["", "## Plots", ""]
    for kind, file in plots.items():
        lines += [f"### {PLOT_TITLES.get(kind, kind)}", "", f"![{kind}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def is_number(value: Any) -> bool:
    """A finite int or float (bools are ints in Python, but not metric values)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)
