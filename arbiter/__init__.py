"""Arbiter: hyperparameter sweeps of small and deep-and-narrow transformers on Ray Tune.

Subpackages by concern, imports pointing one way (docs/architecture.md draws them):
`cli` -> `commands` -> `tune`, `experiments`, `report` -> `core` -> `models`, with `config` (the
validated settings every layer reads), `errors` and `ui` below them all. Only `tune` and the
commands import Ray; `core` and `models` never do.
"""

__version__ = "0.1.0"
