"""The shared training core: one precision-aware PyTorch loop for `arbiter train` and every
Tune trial, with its data, losses, optimizers and checkpoints.

Imports `models`, `config` and `errors` only: never Ray or the layers above (`tune`,
`experiments`, `report`, `commands`); a sweep plugs in a reporter and a checkpoint to resume.
"""
