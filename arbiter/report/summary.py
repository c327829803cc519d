"""A report's summaries: `summary.md` (best trials, every trial's measures, the plots) and
`summary.json` (the same data, with null for what was not reached)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from arbiter.core.grokking import PHASE_ACCURACY, PHASE_GAP, THRESHOLD
from arbiter.report.data import FINAL_KEYS, GROK_KEYS, Report, ranked
from arbiter.ui import show, tally

SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
BEST_SHOWN = 3


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
    """summary.md: the experiment, its trials' states, the best trials, the plots. Kept whole: it
    is the document's outline, top to bottom."""
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
        values = ", ".join(f"`{k} = {show(t.config.get(k))}`" for k in report.keys)
        lines.append(
            f"{i}. **{t.id}**: best {report.metric} {show(t.best)}, steps_to_grok "
            f"{show(t.measures.get('steps_to_grok'))}; {values or 'no swept values'}"
        )
    if not best:
        lines.append("No trial has reported the metric yet.")
    lines += ["", "All other settings are the template's (saved in `arbiter.json`).", ""]
    lines += ["## Trials", ""]
    header = [
        "trial",
        *report.keys,
        "state",
        "step",
        *GROK_KEYS,
        "phase",
        "train acc",
        "val acc",
        "train loss",
        "val loss",
    ]
    lines.append(_md_row(header))
    lines.append(_md_row(["---"] * len(header)))
    for t in report.trials:
        lines.append(
            _md_row(
                [
                    t.id,
                    *(show(t.config.get(k)) for k in report.keys),
                    t.status,
                    show(t.step),
                    *(show(t.measures.get(k)) for k in GROK_KEYS),
                    show(t.phase),
                    *(show(t.final.get(k)) for k in FINAL_KEYS),
                ]
            )
        )
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
