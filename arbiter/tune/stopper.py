"""A Tune stop rule: end a trial once its metric has held a target for k evaluations.

Reports repeat the latest evaluation between evaluations, so the rule counts distinct
`eval_step`s, not reports: "val/accuracy >= 0.99 for 3 evaluations" means three evaluations.
"""

from __future__ import annotations

from typing import Any

from ray import tune


class HeldTarget(tune.Stopper):
    def __init__(self, metric: str, threshold: float, patience: int, mode: str) -> None:
        self.metric, self.threshold, self.patience, self.mode = metric, threshold, patience, mode
        self._streaks: dict[str, tuple[int, int]] = {}  # trial id -> (last eval step, streak)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value, eval_step = result.get(self.metric), result.get("eval_step")
        if value is None or eval_step is None:
            return False
        last_step, streak = self._streaks.get(trial_id, (None, 0))
        if last_step is not None and eval_step < last_step:
            streak = 0  # the trial went back to an earlier checkpoint: count its evaluations anew
        if eval_step != last_step:
            reached = value >= self.threshold if self.mode == "max" else value <= self.threshold
            streak = streak + 1 if reached else 0
            self._streaks[trial_id] = (eval_step, streak)
        return streak >= self.patience

    def stop_all(self) -> bool:
        return False
