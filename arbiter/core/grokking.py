"""Grokking measures: when a run fitted its training set and when it generalized.

`steps_to_fit` is the first evaluated step with train accuracy >= `THRESHOLD`, `steps_to_grok`
the first with validation accuracy >= `THRESHOLD`, and `grok_delay` the steps between them (the
length of the memorization plateau). They are measured at evaluation steps, so their resolution
is `training.eval_interval`. The loop reports them with every metric row once they are known;
`measures_from_rows` recomputes them from a trial's result rows (for reports and old runs), and
`phase` names the regime of a finished run the way Liu et al. (2022) draw their phase diagrams.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

THRESHOLD = 0.99
FIT_METRIC = "train/accuracy"
GROK_METRIC = "val/accuracy"


class GrokClock:
    """Follows a run's evaluations and remembers the first step each threshold was met."""

    def __init__(self) -> None:
        self.steps_to_fit: int | None = None
        self.steps_to_grok: int | None = None

    def observe(self, evaluation: Mapping[str, Any]) -> None:
        """Take one evaluation: the metrics of `evaluate` plus its `eval_step`."""
        step = evaluation["eval_step"]
        if self.steps_to_fit is None and evaluation.get(FIT_METRIC, 0.0) >= THRESHOLD:
            self.steps_to_fit = step
        if self.steps_to_grok is None and evaluation.get(GROK_METRIC, 0.0) >= THRESHOLD:
            self.steps_to_grok = step

    def metrics(self) -> dict[str, int]:
        """The measures known so far; a measure not yet reached is absent (not zero)."""
        out = {}
        if self.steps_to_fit is not None:
            out["steps_to_fit"] = self.steps_to_fit
        if self.steps_to_grok is not None:
            out["steps_to_grok"] = self.steps_to_grok
            if self.steps_to_fit is not None:
                out["grok_delay"] = self.steps_to_grok - self.steps_to_fit
        return out

    def state_dict(self) -> dict[str, int | None]:
        return {"steps_to_fit": self.steps_to_fit, "steps_to_grok": self.steps_to_grok}

    def load_state_dict(self, state: Mapping[str, int | None]) -> None:
        self.steps_to_fit = state["steps_to_fit"]
        self.steps_to_grok = state["steps_to_grok"]


def measures_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The grokking measures of a run from its metric rows (each with `eval_step`)."""
    clock = GrokClock()
    for row in rows:
        if "eval_step" in row:
            clock.observe(row)
    return clock.metrics()


# Liu et al. 2022 ("Towards Understanding Grokking: An Effective Theory of Representation
# Learning"), Appendix A, Table 1: accuracy thresholds and the largest fit-to-generalize gap of
# a run that comprehends (their budget is 10^5 steps; here it is the run's own length).
PHASE_ACCURACY = 0.9
PHASE_GAP = 1000
PHASES = ("comprehension", "grokking", "memorization", "confusion")


def phase(rows: Iterable[Mapping[str, Any]], gap: int = PHASE_GAP) -> str:
    """The phase of a finished run from its metric rows: comprehension (train and validation
    accuracy pass 90% less than `gap` steps apart), grokking (validation passes 90% `gap` or
    more steps after training does), memorization (only training does) or confusion (neither).
    """
    fit = generalize = None
    for row in rows:
        step = row.get("eval_step", row.get("step"))
        if fit is None and row.get(FIT_METRIC, 0.0) > PHASE_ACCURACY:
            fit = step
        if generalize is None and row.get(GROK_METRIC, 0.0) > PHASE_ACCURACY:
            generalize = step
    if generalize is None:
        return "confusion" if fit is None else "memorization"
    if fit is None or generalize - fit < gap:
        return "comprehension"
    return "grokking"
