"""One module per command (`sweep`, `resume`, `status`, `report`, `train`, `long`, `validate`,
`templates`, `prepare_text`), each a function with typed parameters that returns an exit code
(`exit_codes`); `outcome` prints how a sweep ended, `dry_run` what it would run.

The top layer: may import every package of Arbiter. `cli` parses the command line and calls
these functions; nothing imports them back.
"""
