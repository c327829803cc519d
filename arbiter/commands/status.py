"""`arbiter status`: an experiment's trials as a table or JSON, readable while it runs."""

from __future__ import annotations

import json
from dataclasses import asdict

from arbiter.commands.exit_codes import ExitCode
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record, read_record
from arbiter.experiments.storage import find_experiment
from arbiter.experiments.trials import TrialStatus
from arbiter.ui import console, show, tally


def status(experiment: str, storage: str | None, as_json: bool = False) -> ExitCode:
    path = find_experiment(experiment, storage)
    record = read_record(path)
    sweep = record.config.sweep
    assert sweep is not None

    from arbiter.tune.state import read_trials  # Ray: after every check of the input

    trials = read_trials(path, sweep.metric, sweep.mode)
    if as_json:
        print(status_json(path, record, trials))
    else:
        print_table(path, record, trials, sweep.metric)
    return ExitCode.DONE


def status_json(path: Location, record: Record, trials: list[TrialStatus]) -> str:
    return json.dumps(
        {
            "experiment": path.uri,
            "template": record.template,
            "extends": record.parent,
            "trials": [asdict(t) for t in trials],
        },
        indent=2,
    )


def print_table(path: Location, record: Record, trials: list[TrialStatus], metric: str) -> None:
    from rich.table import Table

    keys = sorted({k for t in trials for k in t.config})
    # steps to fit (train accuracy >= 99%) and to grok (val accuracy >= 99%), see core.grokking
    columns = ("state", "step", metric, "best", "fit at", "grok at")
    # where each trial ran last: its host when there are several, its GPU ids on GPU sweeps
    hosts = {t.last.get("hostname") for t in trials if t.last.get("hostname")}
    where = (["host"] if len(hosts) > 1 else []) + (["gpu"] if record.gpus else [])
    table = Table("trial", *keys, *columns, *where, box=None, header_style="bold")
    for t in trials:
        measures = (t.last.get(k) for k in ("step", metric))
        grokking = (t.last.get("steps_to_fit"), t.last.get("steps_to_grok"))
        cells = (*(t.config.get(k) for k in keys), t.status, *measures, t.best, *grokking)
        ran = {"host": t.last.get("hostname"), "gpu": t.last.get("gpu_ids") or None}
        table.add_row(t.id, *(show(c) for c in cells), *(show(ran[w]) for w in where))
    out = console()
    counts = tally(t.status for t in trials) or "no trials yet"
    out.print(f"{path}  ({record.template})  {counts}")
    if record.parent:
        changed = ", ".join(f"{k}={show(v)}" for k, v in record.parent["changed"].items())
        out.print(f"extends {record.parent['experiment']} with {changed}")
    out.print(table)
    for t in trials:
        if t.error:
            out.print(f"{t.id} failed: {t.error}")
