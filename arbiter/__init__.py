"""Arbiter: hyperparameter sweeps of small and deep-and-narrow transformers on Ray Tune.

The package is layered (imports only point down): `cli` -> `sweep` -> `space`/`trainable` ->
`config` -> `core` (the training core, which never imports Ray). See DESIGN.md in the repository.
"""

__version__ = "0.1.0"
