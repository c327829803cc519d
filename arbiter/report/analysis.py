"""What a report computes across trials rather than per trial: the seed groups (`groups`) and
the parameter importance (`importance`), computed once and read by the summaries and plots."""

from __future__ import annotations

from dataclasses import dataclass

from arbiter.report.data import Report
from arbiter.report.groups import Group, seed_groups
from arbiter.report.importance import Importance, importance


@dataclass
class Analysis:
    groups: list[Group]
    importance: Importance


def analyse(report: Report) -> Analysis:
    return Analysis(seed_groups(report), importance(report))
