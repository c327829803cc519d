"""The sweep's own terminal output: a line when a trial starts, groks, warns, ends or fails, and
a short progress line with the best trial so far, instead of Ray's raw log flood. A long run
(`arbiter long`) says instead where its one trial stands: step, metrics, speed and ETA."""

from __future__ import annotations

import time
from typing import Any

from ray import tune

from arbiter.ui import show, tally

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
            _say(self._progress(trials, result))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _say(f"retrying  {trial.trial_id}  from its newest checkpoint (its worker failed)")

    def _progress(self, trials: list, result: dict) -> str:
        return f"progress  {tally(t.status for t in trials)}{self._best_text()}"

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        _say(
            f"finished  {trial.trial_id}  step {last.get('step', '?')}  "
            f"{self.metric} {show(last.get(self.metric))}"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _say(f"errored   {trial.trial_id}  {_values(trial.config)} (details: arbiter status)")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.best is not None:
            _say(f"best      {self.best[1]}{self._best_text()}")

    def _better(self, value: float) -> bool:
        assert self.best is not None
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def _best_text(self) -> str:
        return "" if self.best is None else f"  best {self.metric} {show(self.best[0])}"


def _values(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={show(v)}" for k, v in config.items())


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {line}", flush=True)


class LongProgress(SweepProgress):
    """`arbiter long`: the progress line says where the one run stands and when it will end."""

    def __init__(self, metric: str, mode: str, steps: int) -> None:
        super().__init__(metric, mode)
        self.steps = steps
        self.first: tuple[float, int] | None = None  # (time, step) of this session's first result

    def _progress(self, trials: list, result: dict) -> str:
        step, now = result.get("step", 0), time.monotonic()
        if self.first is None or step < self.first[1]:  # a retry went back: measure afresh
            self.first = (now, step)
        rate = (step - self.first[1]) / (now - self.first[0]) if now > self.first[0] else 0.0
        eta = _duration((self.steps - step) / rate) if rate > 0 else "?"
        metrics = "  ".join(f"{k} {show(result[k])}" for k in LONG_METRICS if k in result)
        speed = f"{result['tokens_per_s']:,.0f} tok/s" if "tokens_per_s" in result else ""
        return (
            f"step {step:,}/{self.steps:,} ({100 * step / self.steps:.1f}%)  {metrics}  "
            f"{speed}  ETA {eta}"
        )


LONG_METRICS = ("train/loss", "train/accuracy", "val/accuracy", "decayed_weight_norm")


def _duration(seconds: float) -> str:
    """3725 -> '1h02m'; 42 -> '42s'."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds % 60:02d}s"
