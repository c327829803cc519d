"""Token files of random ids for the benchmarks that train on the tokens task (`data.task =
"tokens"`): train.bin and val.bin, uint16, the format `arbiter prepare-text` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_random_tokens(folder: Path, vocab_size: int, count: int) -> None:
    """train.bin and val.bin in `folder`, each `count` random ids below `vocab_size` (seeded)."""
    rng = np.random.default_rng(0)
    for name in ("train.bin", "val.bin"):
        ids = rng.integers(0, vocab_size, count, dtype=np.uint16)
        (folder / name).write_bytes(ids.tobytes())
