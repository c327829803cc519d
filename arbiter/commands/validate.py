"""`arbiter validate`: check config files, and every trial of templates, without starting
anything."""

from __future__ import annotations

import sys
from pathlib import Path

from arbiter.commands.exit_codes import ExitCode
from arbiter.config.loading import load_config
from arbiter.config.trials import plan_trials
from arbiter.errors import UserError


def validate(files: list[Path], sets: list[str] | None = None) -> ExitCode:
    """One `ok` line per valid file, one error line per invalid one; USAGE if any is."""
    failed = 0
    for path in files:
        try:
            config = load_config(path, sets or [])
            trials = plan_trials(config, str(path))
        except UserError as exc:
            print(f"arbiter: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        kind = f"template, {len(trials)} trials" if config.sweep else "run config"
        print(f"ok  {path}  ({kind})")
    return ExitCode.USAGE if failed else ExitCode.DONE
