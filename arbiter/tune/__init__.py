"""Everything that touches Ray: connecting to a cluster (`cluster`), building and running the
Tuner (`tuner`), the trial function (`trainable`), schedulers and stop rules
(`grokking_scheduler`, `stopper`), the sweep's terminal progress (`progress`), the translation of
a space to Tune (`search_space`) and reading Tune's saved experiment state (`state`).

May import `config`, `core`, `experiments` and `ui`; only the commands import it. No module
outside this package and `commands` imports `ray`.
"""

import os

# Tune's newer console output prints its own banner and tables even at verbose=0; the legacy
# engine is silent at 0, leaving the terminal to SweepProgress.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Tune warns when checkpoints come faster than its state snapshots; frequent checkpoints of
# small models are a choice here, and the warning would flood the sweep's terminal.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
