"""`arbiter long`: one long run (the grokking regime's 500k steps, say) as a Ray Tune trial.

Tune's fault handling applies: after any failure (a crashed worker, a lost node, out of memory)
the run is retried from its newest checkpoint, without limit and with a back-off. The command is
idempotent: run it again after the driver died, a reboot or a Ctrl-C, and it picks up the same
experiment (named after the template unless `--name` says otherwise) instead of starting over.
`--hours H` bounds this session's wall-clock time; the run stops as on Ctrl-C, resumably.
`arbiter status` and `arbiter report` read it like any sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import threading
from pathlib import Path

from arbiter.config import Config, SweepConfig
from arbiter.errors import UserError
from arbiter.experiment import (
    RECORD,
    Record,
    check_name,
    check_new_name,
    check_writable,
    has_tune_state,
    new_experiment,
    read_record,
    storage_root,
    template_hash,
)

log = logging.getLogger(__name__)

KIND = "long"
EXIT_FINISHED = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_BUDGET_SPENT = 75  # EX_TEMPFAIL: not done yet, run the same command again


def run_long(args: argparse.Namespace) -> int:
    from arbiter.loading import load_config
    from arbiter.templates import find_template
    from arbiter.trials import plan_trials

    template_path = find_template(args.template)
    template = load_config(template_path, args.set)
    config = long_config(template, str(template_path))
    plan_trials(config, str(template_path))  # the run is valid before Ray starts
    storage = storage_root(args.storage)
    name = check_name(args.name or f"{template_path.stem}-long")
    path = storage / name
    record = Record(
        template=str(template_path.resolve()),
        sets=list(args.set),
        template_hash=template_hash(config),
        resolved=config.model_dump(mode="json"),
        gpus=0,
        cpus_per_trial=args.cpus_per_trial,
        kind=KIND,
    )
    started = (path / RECORD).is_file()
    restore = started and _continues(path, record)
    if not started:
        check_new_name(storage, name)
        check_writable(storage, "--storage")

    from arbiter.sweep import Placement, build_tuner, connect, fit, warn_if_storage_is_local

    # one run takes one GPU when there is one (or none with --gpus 0)
    gpus = min(connect(args.address, args.gpus, args.dashboard_host), 1)
    warn_if_storage_is_local(storage)
    if not started:
        record = dataclasses.replace(record, gpus=gpus)
        new_experiment(storage, name, record)
    (path / "attempts.json").unlink(missing_ok=True)  # a new session: no back-off owed
    verb = "continuing" if restore else "starting"
    print(f"{verb} {name}: {config.training.steps:,} steps; experiment in {path}")
    print(f"watch: arbiter status {name} --storage {storage}  |  tensorboard --logdir {path}")
    tuner = build_tuner(path, config, Placement(gpus, args.cpus_per_trial), restore, long=True)
    budget = _Budget(args.hours)
    with budget:
        fit(tuner, path)
    return _outcome(path, record, name, storage, budget.spent)


def long_config(template: Config, source: str) -> Config:
    """The template's base settings as a one-trial experiment: its space is not swept (a note
    says so; `--set` pins a point of it), its metric and stop rule are kept."""
    sweep = template.sweep or SweepConfig()
    if sweep.space:
        log.warning(
            "%s sweeps %s: the long run uses the base settings; pin a point with --set KEY=VALUE",
            source, ", ".join(sweep.space),
        )  # fmt: skip
    one = SweepConfig(metric=sweep.metric, mode=sweep.mode, stop=sweep.stop)
    return template.model_copy(update={"sweep": one})


def _continues(path: Path, record: Record) -> bool:
    """Whether the experiment at `path`, this same long run, has a Tune state to continue from
    (False: it stopped before Tune first saved, and starts over in its folder); an experiment of
    anything else there is an error."""
    found = read_record(path)
    if found.kind != KIND:
        raise UserError(
            f"--name {path.name}: {path} holds a sweep, not a long run; choose another --name"
        )
    if found.template_hash != record.template_hash:
        raise UserError(
            f"{record.template}: differs from the one the long run {path.name} started with "
            "(the template or --set changed); restore them, or choose another --name"
        )
    return has_tune_state(path)


def _outcome(path: Path, record: Record, name: str, storage: Path, budget_spent: bool) -> int:
    from arbiter.status import ERRORED, FINISHED, print_table, read_trials

    sweep = record.config.sweep
    assert sweep is not None
    trials = read_trials(path, sweep.metric, sweep.mode)
    print_table(path, record, trials, sweep.metric)
    state = trials[0].status if trials else None
    if state == FINISHED:
        return EXIT_FINISHED
    if state == ERRORED:
        return EXIT_FAILED
    again = f"`arbiter long --template {Path(record.template).name} --name {name}"
    again += f" --storage {storage}`" if storage != storage_root(None) else "`"
    if budget_spent:
        print(f"time budget spent; continue with {again}")
        return EXIT_BUDGET_SPENT
    print(f"interrupted; continue with {again}")
    return EXIT_INTERRUPTED


class _Budget:
    """After `hours`, stop the run as Ctrl-C would: Tune saves its state, the run resumes."""

    def __init__(self, hours: float | None) -> None:
        self.hours = hours
        self.spent = False
        self._timer: threading.Timer | None = None

    def _interrupt(self) -> None:
        self.spent = True
        os.kill(os.getpid(), signal.SIGINT)

    def __enter__(self) -> _Budget:
        if self.hours:
            self._timer = threading.Timer(self.hours * 3600, self._interrupt)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
