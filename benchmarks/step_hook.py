"""A training task that passes everything through to the real one and calls a hook as each step
begins: how the benchmarks time and probe the real core's steps from outside it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from arbiter.core.data import Batch, Task


class StepHook(Task):
    """Calls `hook(step)` (0-based) at the first of every `accumulation` training-batch requests,
    i.e. as each optimizer step begins; otherwise the wrapped task unchanged."""

    def __init__(self, task: Task, accumulation: int, hook: Callable[[int], None]) -> None:
        self.task, self.accumulation, self.hook = task, accumulation, hook
        self.vocab_size, self.seq_len = task.vocab_size, task.seq_len
        self.answer_only = task.answer_only
        self.requests = 0

    def train_batch(self) -> Batch:
        if self.requests % self.accumulation == 0:
            self.hook(self.requests // self.accumulation)
        self.requests += 1
        return self.task.train_batch()

    def eval_splits(self) -> dict[str, Iterable[Batch]]:
        return self.task.eval_splits()

    def state_dict(self) -> dict[str, Any]:
        return self.task.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task.load_state_dict(state)
