"""Where a run's metrics go: `OUT/metrics.jsonl` (one JSON object per log step) and TensorBoard.

On resume, rows after the checkpoint's step are dropped and TensorBoard purges them too, so a
resumed run's files read as if it had never been interrupted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from arbiter.errors import RunFailed

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends metric rows for one run; `resume_step` drops rows a resumed run will redo."""

    def __init__(self, out_dir: Path, tensorboard: bool, resume_step: int | None = None) -> None:
        self.path = out_dir / METRICS_FILE
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            _truncate_after(self.path, resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run in a reused folder starts a fresh log
        self._file = self.path.open("a", encoding="utf-8")
        self._tensorboard = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)

    def write(self, row: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk, say: one line, not a traceback
            raise RunFailed(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl (an empty list when there is none)."""
    path = out_dir / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_after(path: Path, step: int) -> None:
    if path.exists():
        kept = [row for row in read_metrics(path.parent) if row["step"] <= step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
