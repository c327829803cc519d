"""A report's summaries: `summary.md` (best trials, every trial's measures, the seed groups,
the parameter importance, the plots) and `summary.json` (the same data, with null for what was
not reached). The cells of a group's row are shared with the comparison of two experiments."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from arbiter.core.grokking import PHASE_ACCURACY, PHASE_GAP, THRESHOLD
from arbiter.report.analysis import Analysis, analyse
from arbiter.report.data import FINAL_KEYS, GROK_KEYS, Report, ranked
from arbiter.report.groups import SEED_KEY, Group, group_json, group_keys, median_of
from arbiter.report.importance import Importance
from arbiter.ui import show, tally

SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
BEST_SHOWN = 3


def summary_json(
    report: Report, plots: Mapping[str, str], analysis: Analysis | None = None
) -> dict[str, Any]:
    """The report's data: what summary.md shows, with null for what was not reached.
    `analysis`: the report's, when the caller has it already (else it is computed here)."""
    analysis = analysis or analyse(report)
    return {
        "experiment": str(report.path),
        "name": report.name,
        "template": report.template,
        "extends": report.extends,
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
        "groups": [group_json(g) for g in analysis.groups],
        "importance": analysis.importance.scores,
    }


PLOT_TITLES = {
    "grokking": "Grokking curves: train and validation accuracy",
    "loss": "Loss curves",
    "weight_norm": "Weight norm",
    "phase_diagram": "Phase diagram: Liu et al.'s phases and steps to grok",
    "metric_vs_params": "Final metric against each swept parameter",
    "seed_curves": "Seed groups: median validation accuracy, min-max band over the group",
    "parallel_coordinates": "Parallel coordinates: every trial's swept values and metric",
}


def summary_markdown(
    report: Report, plots: Mapping[str, str], analysis: Analysis | None = None
) -> str:
    """summary.md: the experiment, its trials' states, the best trials, the seed groups, the
    parameter importance, the plots. Kept whole: it is the document's outline, top to bottom."""
    analysis = analysis or analyse(report)
    states = tally(t.status for t in report.trials)
    lines = [
        f"# Report: {report.name}",
        "",
        f"- experiment: `{report.path}`",
        f"- template: `{report.template}`; metric: `{report.metric}` ({report.mode})",
        *_lineage(report),
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
    lines.append(md_row(header))
    lines.append(md_row(["---"] * len(header)))
    for t in report.trials:
        lines.append(
            md_row(
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
        lines += ["", *(f"- {t.id} failed: {md_cell(t.error or '')}" for t in failed)]
    lines += ["", *groups_markdown(report, analysis.groups)]
    lines += ["", *importance_markdown(report, analysis.importance)]
    lines += ["", "## Plots", ""]
    for kind, file in plots.items():
        lines += [f"### {PLOT_TITLES.get(kind, kind)}", "", f"![{kind}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


def groups_markdown(report: Report, groups: list[Group]) -> list[str]:
    """The seed groups section: one row per group."""
    lines = [
        "## Seed groups",
        "",
        f"Trials that differ only in `{SEED_KEY}`, or that repeat one point of the space, form a "
        "group. The step at which a run groks can move 2x with the seed alone, so judge a "
        "configuration by its group: how many of its trials grokked, and the median step with "
        "its range over those that did. `seed_curves.png` draws each group's validation accuracy "
        "(median and min-max band).",
        "",
    ]
    keys = group_keys(report)
    header = [*keys, "trials", *group_columns(report.metric)]
    lines += [md_row(header), md_row(["---"] * len(header))]
    for group in groups:
        values = [show(group.config.get(k)) for k in keys]
        lines.append(md_row([*values, str(len(group.trials)), *group_cells(group)]))
    if groups and all(len(g.trials) == 1 for g in groups):
        lines += [
            "",
            "Every group has one trial: the sweep repeats no configuration, so the spread between "
            f"seeds is unknown (sweep `{SEED_KEY}` or raise `sweep.num_samples` to see it).",
        ]
    return lines


def group_columns(metric: str) -> list[str]:
    """The header of a group's cells (`group_cells`)."""
    return ["grokked", "steps_to_grok median (min-max)", f"{metric} median (min-max)", "phases"]


def group_cells(group: Group) -> list[str]:
    """A group's cells under `group_columns`: "2/3" grokked (and how many still run), the steps
    to grok and the metric as "median (min-max)", the count of each phase."""
    data = group_json(group)
    running = f", {data['n_running']} running" if data["n_running"] else ""
    phases = ", ".join(f"{p} {n}" for p, n in sorted(data["phases"].items()))
    return [
        f"{data['n_grokked']}/{data['n']}{running}",
        spread(group.grok_steps),
        spread(group.metrics),
        phases or "-",
    ]


def spread(values: list[float]) -> str:
    """Numbers as `median (min-max)`, as one value where they all agree, `-` for none."""
    if not values:
        return "-"
    if min(values) == max(values):
        return show(values[0])
    middle = median_of(values)
    return f"{show(middle)} ({show(min(values))}-{show(max(values))})"


def importance_markdown(report: Report, importance: Importance) -> list[str]:
    """The parameter importance section: a column per outcome, a row per key, largest first."""
    lines = ["## Parameter importance", ""]
    if not importance.scores:
        return [*lines, f"No parameter importance: {importance.notes[0]}"]
    lines += [
        "Each swept key's share of the variance of an outcome across the trials, by fANOVA "
        "(Optuna's evaluator, seeded): the shares of one outcome sum to 1; keys with one value "
        "are left out. A swept seed's share is the part of the outcome no configuration decides. "
        "steps_to_grok is explained among the trials that grokked.",
        "",
    ]
    names = {"metric": f"{report.metric} (best per trial)", "steps_to_grok": "steps_to_grok"}
    outcomes = list(importance.scores)
    keys = list(dict.fromkeys(k for o in outcomes for k in importance.scores[o]))
    header = ["key", *(names[o] for o in outcomes)]
    lines += [md_row(header), md_row(["---"] * len(header))]
    for key in keys:
        lines.append(md_row([key, *(show(importance.scores[o].get(key)) for o in outcomes)]))
    return [*lines, "", *(f"- {note}" for note in importance.notes)] if importance.notes else lines


def md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _lineage(report: Report) -> list[str]:
    """The line that says which experiment this one extends, and with what."""
    if report.extends is None:
        return []
    changed = ", ".join(f"`{k}={show(v)}`" for k, v in report.extends["changed"].items())
    return [f"- extends `{report.extends['experiment']}` with {changed}"]
