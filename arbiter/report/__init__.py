"""`arbiter report`'s content: a sweep's trials as report data (`data`), its Markdown and JSON
summaries (`summary`) and its plots (`plots`, the only module that imports matplotlib).

Pure functions of the trials' results: imports `config`, `core.grokking`, `experiments.trials`
and `ui`, never Ray; the command reads the experiment and hands the trials in.
"""
