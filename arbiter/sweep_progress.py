"""The sweep's own terminal output: a line when a trial starts, groks, warns, ends or fails, and
a short progress line with the best trial so far, instead of Ray's raw log flood."""

from __future__ import annotations

import time
from typing import Any

from ray import tune

from arbiter.ui import tally

PROGRESS_EVERY_S = 15.0


class SweepProgress(tune.Callback):
    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.best: tuple[float, str] | None = None
        self.last_line = 0.0
        self.grokked: set[str] = set()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _say(f"started   {trial.trial_id}  {_values(trial.config)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and (self.best is None or self._better(value)):
            self.best = (value, trial.trial_id)
        if result.get("warning"):
            _say(f"warning   {trial.trial_id}  {result['warning']}")
        if "steps_to_grok" in result and trial.trial_id not in self.grokked:
            self.grokked.add(trial.trial_id)
            fit = result.get("steps_to_fit", "?")
            _say(f"grokked   {trial.trial_id}  at step {result['steps_to_grok']} (fit at {fit})")
        if time.monotonic() - self.last_line >= PROGRESS_EVERY_S:
            self.last_line = time.monotonic()
            _say(f"progress  {tally(t.status for t in trials)}{self._best_text()}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        _say(f"finished  {trial.trial_id}  step {last.get('step', '?')}  "
             f"{self.metric} {_fmt(last.get(self.metric))}")  # fmt: skip

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _say(f"errored   {trial.trial_id}  {_values(trial.config)} (details: arbiter status)")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.best is not None:
            _say(f"best      {self.best[1]}{self._best_text()}")

    def _better(self, value: float) -> bool:
        assert self.best is not None
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def _best_text(self) -> str:
        return "" if self.best is None else f"  best {self.metric} {_fmt(self.best[0])}"


def _values(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in config.items())


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {line}", flush=True)
