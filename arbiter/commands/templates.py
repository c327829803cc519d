"""`arbiter templates`: the sweep templates found here, with their trial counts."""

from __future__ import annotations

from arbiter.commands.exit_codes import ExitCode
from arbiter.config.loading import load_config
from arbiter.config.templates import list_templates
from arbiter.config.trials import plan_trials
from arbiter.ui import console


def templates() -> ExitCode:
    from rich.table import Table

    table = Table("template", "trials", "description", box=None, header_style="bold")
    for path in list_templates():
        config = load_config(path)
        trials = len(plan_trials(config, str(path))) if config.sweep else "-"
        table.add_row(path.name, str(trials), config.description)
    console().print(table)
    return ExitCode.DONE
