"""Two experiments side by side (`arbiter report A B --out DIR`): each one's seed groups, matched
by configuration, as a table in summary.md and as summary.json. The plot of both experiments'
groups is `seed_curves`'s.

Groups are matched on the keys both experiments carry (every key of a space but the seed): with
the same keys that pairs each group with its twin; when one experiment sweeps a key the other
does not, a group of the other pairs with each of its groups that agree on the shared keys. A
group without a partner gets a row of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arbiter.core.grokking import THRESHOLD
from arbiter.report.data import Report, is_number, value_key
from arbiter.report.groups import Group, group_json, group_keys, seed_groups
from arbiter.report.summary import PLOT_TITLES, group_cells, group_columns, md_row
from arbiter.ui import show, tally


@dataclass
class Comparison:
    reports: list[Report]  # the two experiments, in the order given
    groups: list[list[Group]]  # each experiment's seed groups
    keys: list[str]  # the keys both experiments' groups carry: they are matched on these
    rows: list[tuple[int | None, int | None]]  # (group of the first, of the second) per row

    def config(self, row: tuple[int | None, int | None]) -> dict[str, Any]:
        """A row's configuration: both groups' values (they agree on the keys they share)."""
        config: dict[str, Any] = {}
        for groups, index in zip(self.groups, row, strict=True):
            if index is not None:
                config = {**groups[index].config, **config}
        return config

    def names(self) -> list[str]:
        """The experiments' names, or their paths when the names are the same."""
        names = [r.name for r in self.reports]
        return names if names[0] != names[1] else [str(r.path) for r in self.reports]


def compare(first: Report, second: Report) -> Comparison:
    """Both experiments' seed groups, matched on the keys they share."""
    groups = [seed_groups(first), seed_groups(second)]
    keys = [k for k in group_keys(first) if k in group_keys(second)]
    rows: list[tuple[int | None, int | None]] = []
    partnered: set[int] = set()
    for i, a in enumerate(groups[0]):
        partners = [j for j, b in enumerate(groups[1]) if keys and _same(a.config, b.config, keys)]
        rows += [(i, j) for j in partners] or [(i, None)]
        partnered.update(partners)
    rows += [(None, j) for j in range(len(groups[1])) if j not in partnered]
    return Comparison([first, second], groups, keys, rows)


def comparison_json(comparison: Comparison, plots: Mapping[str, str]) -> dict[str, Any]:
    """summary.json of a comparison: each experiment with its groups, and the rows that match
    them (indices into each experiment's `groups`, null where it has no such group)."""
    return {
        "experiments": [
            {
                "name": report.name,
                "experiment": str(report.path),
                "template": report.template,
                "metric": report.metric,
                "mode": report.mode,
                "swept": report.swept,
                "n_trials": len(report.trials),
                "groups": [group_json(g) for g in groups],
            }
            for report, groups in zip(comparison.reports, comparison.groups, strict=True)
        ],
        "threshold": THRESHOLD,
        "matched_on": comparison.keys,
        "comparison": [
            {"config": comparison.config(row), "groups": list(row)} for row in comparison.rows
        ],
        "plots": dict(plots),
    }


def comparison_markdown(comparison: Comparison, plots: Mapping[str, str]) -> str:
    """summary.md of a comparison: the two experiments, their groups row by row, the plot."""
    names = comparison.names()
    lines = [f"# Comparison: {names[0]} and {names[1]}", ""]
    for name, report in zip(names, comparison.reports, strict=True):
        states = tally(t.status for t in report.trials)
        lines.append(
            f"- **{name}**: `{report.path}`; template `{report.template}`; metric "
            f"`{report.metric}` ({report.mode}); trials: {len(report.trials)} ({states})"
        )
    lines += [f"- written: {time.strftime('%Y-%m-%d %H:%M:%S')}", "", "## Groups side by side", ""]
    if comparison.keys:
        matched = ", ".join(f"`{k}`" for k in comparison.keys)
        lines.append(
            "Each experiment's trials are grouped by their swept values without the seed, and "
            f"the groups are matched on the keys both experiments sweep: {matched}. `-`: that "
            "experiment has no such group. Steps to grok are over the trials that grokked."
        )
    else:
        lines.append(
            "The experiments share no swept key, so their groups are listed one after the "
            "other, not matched."
        )
    keys = list(dict.fromkeys(k for groups in comparison.groups for g in groups for k in g.config))
    keys = comparison.keys + [k for k in keys if k not in comparison.keys]
    header = list(keys)
    for name, report in zip(names, comparison.reports, strict=True):
        header += [f"{name}: trials", *(f"{name}: {c}" for c in group_columns(report.metric))]
    lines += ["", md_row(header), md_row(["---"] * len(header))]
    for row in comparison.rows:
        config = comparison.config(row)
        cells = [show(config[k]) if k in config else "" for k in keys]
        for report, groups, index in zip(comparison.reports, comparison.groups, row, strict=True):
            if index is None:  # a dash under each of this experiment's columns
                cells += ["-"] * (1 + len(group_columns(report.metric)))
            else:
                cells += [str(len(groups[index].trials)), *group_cells(groups[index])]
        lines.append(md_row(cells))
    lines += ["", "## Plots", ""]
    for kind, file in plots.items():
        lines += [f"### {PLOT_TITLES.get(kind, kind)}", "", f"![{kind}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _same(a: Mapping[str, Any], b: Mapping[str, Any], keys: list[str]) -> bool:
    """Whether two configurations agree on `keys`; 1 and 1.0 are the same number (two
    templates may write one value either way)."""
    return all(_comparable(a.get(k)) == _comparable(b.get(k)) for k in keys)


def _comparable(value: Any) -> Any:
    return float(value) if is_number(value) else value_key(value)
