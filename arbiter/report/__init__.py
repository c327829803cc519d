"""`arbiter report`'s content: a sweep's trials as report data (`data`), its Markdown and JSON
summaries (`summary`), its per-trial plots (`plots`), and the analyses across trials: seed groups
(`groups`), parameter importance (`importance`, Optuna's fANOVA), the comparison of two
experiments (`compare`), and their plots (`seed_curves`, `parallel_coordinates`, drawn into a
folder by `analysis_plots`). Only the plotting modules (those and `style`) import matplotlib.

Pure functions of the trials' results: imports `config`, `core.grokking`, `experiments.trials`
and `ui`, never Ray; the command reads the experiment and hands the trials in.
"""
