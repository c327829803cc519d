"""`scheduler = "grokking"`: a Ray Tune trial scheduler that does not kill runs that grok late.

ASHA and median stopping rank trials by their validation metric early on, and early on every run
that will grok looks like a failure: it memorizes its training set while validation accuracy stays
low, sometimes for thousands of steps. This scheduler stops a trial for one of two reasons only
(`[sweep.grokking]`, see `arbiter.config.GrokkingOptions`):

- it has grokked: validation accuracy >= `threshold` for `patience` distinct evaluations;
- it stopped progressing: from `fit_budget` steps on, a trial goes on only while, over the last
  `window` steps, the norm of its decayed weights fell by at least `min_norm_drop` (relative)
  or its validation accuracy rose by at least `min_val_gain`. A memorizing run whose weights
  still shrink under weight decay is on its way to grokking; one that neither shrinks nor
  generalizes is hopeless.

Each trial is judged on its own history, never against the other trials.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from arbiter.config.schema import GrokkingOptions
from arbiter.core.grokking import GROK_METRIC
from arbiter.tune.stopper import HeldTarget

log = logging.getLogger(__name__)

# The norm of the tensors weight decay acts on: the embeddings, undecayed by default, grow
# during the memorization plateau while the decayed matrices shrink towards grokking.
NORM_METRIC = "decayed_weight_norm"


class GrokkingScheduler(FIFOScheduler):
    """Trials start in submission order (FIFO); `on_trial_result` decides when one stops.

    State is plain data (ids, numbers), so the scheduler pickles with Tune's experiment state.
    Tune saves its scheduler only when the experiment starts, so after `arbiter resume` every
    trial starts with no history: it is judged again once it has run `window` more steps.
    """

    def __init__(
        self,
        options: GrokkingOptions,
        time_attr: str = "step",
        on_grokked: Callable[[str, int, float], None] | None = None,
        on_stalled: Callable[[str, int, str], None] | None = None,
    ) -> None:
        """`on_grokked(trial_id, step, val_accuracy)` and `on_stalled(trial_id, step, why)` hear
        of each trial this scheduler stops, and why."""
        super().__init__()
        self.time_attr = time_attr
        self.on_grokked = on_grokked
        self.on_stalled = on_stalled
        self.fit_budget = options.fit_budget
        self.window = options.window
        self.min_norm_drop = options.min_norm_drop
        self.min_val_gain = options.min_val_gain
        # "Grokked" is the stop rule's "held the target": several reports can carry the same
        # evaluation, and HeldTarget counts distinct eval_steps.
        self._grokked = HeldTarget(GROK_METRIC, options.threshold, options.patience, "max")
        # trial id -> (step, weight norm, val accuracy) of its recent reports, oldest first
        self._history: dict[str, deque[tuple[int, float, float]]] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # The rule watches val/accuracy and the weight norm whatever sweep.metric ranks by;
        # accepting Tune's metric and mode (without using them) keeps Tune from refusing them.
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        trial_id, step = trial.trial_id, result.get(self.time_attr)
        if step is None:
            return TrialScheduler.CONTINUE
        if self._grokked(trial_id, result):
            log.info(
                "grokking scheduler: stopping %s: grokked at step %d (val acc %.4f >= %g for %d "
                "evaluations)",
                trial_id,
                step,
                result[GROK_METRIC],
                self._grokked.threshold,
                self._grokked.patience,
            )
            self._history.pop(trial_id, None)
            if self.on_grokked is not None:
                self.on_grokked(trial_id, step, result[GROK_METRIC])
            return TrialScheduler.STOP
        norm, val = result.get(NORM_METRIC), result.get(GROK_METRIC)
        if norm is None or val is None:
            return TrialScheduler.CONTINUE
        history = self._history.setdefault(trial_id, deque())
        if history and step <= history[-1][0]:
            # Not later than the last report: the trial went back to an earlier checkpoint (a
            # retry after a failure); its old reports no longer describe this run.
            history.clear()
        history.append((step, norm, val))
        # Keep only what this and later judgements need: the newest report at or before
        # step - window (the reference), and everything after it.
        while len(history) > 1 and history[1][0] <= step - self.window:
            history.popleft()
        if step < self.fit_budget:
            return TrialScheduler.CONTINUE
        then, then_norm, then_val = history[0]
        if then > step - self.window:
            return TrialScheduler.CONTINUE  # not watched for a whole window yet
        shrinking = norm <= (1.0 - self.min_norm_drop) * then_norm
        generalizing = val - then_val >= self.min_val_gain
        if shrinking or generalizing:
            return TrialScheduler.CONTINUE
        why = (
            f"over {step - then} steps: weight norm {then_norm:.4g} -> {norm:.4g}, val acc "
            f"{then_val:.4f} -> {val:.4f}"
        )
        log.info("grokking scheduler: stopping %s at step %d: no progress %s", trial_id, step, why)
        if self.on_stalled is not None:
            self.on_stalled(trial_id, step, why)
        del self._history[trial_id]
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._history.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._history.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return (
            f"Using grokking scheduler: fit budget {self.fit_budget} steps, progress judged over "
            f"{self.window} steps; {len(self._history)} trial(s) watched."
        )
