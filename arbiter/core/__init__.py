"""The shared training core: one precision-aware PyTorch loop for `arbiter train` and every
Tune trial. It never imports Ray; a sweep only plugs in a reporter and a checkpoint to resume."""
