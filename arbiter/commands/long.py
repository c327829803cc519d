"""`arbiter long`: one long run (the grokking regime's 500k steps, say) as a Ray Tune trial.

Tune's fault handling applies: after any failure (a crashed worker, a lost node, out of memory)
the run is retried from its newest checkpoint, without limit and with a back-off. The command is
idempotent: run it again after the driver died, a reboot or a Ctrl-C, and it picks up the same
experiment (named after the template unless `--name` says otherwise) instead of starting over.
`--hours H` bounds this session's wall-clock time; the run stops as on Ctrl-C, resumably.
`arbiter status` and `arbiter report` read it like any sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading

from arbiter.commands.exit_codes import ExitCode
from arbiter.config.schema import Config, SweepConfig
from arbiter.errors import UserError
from arbiter.experiments.lease import Lease
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record, has_tune_state, read_record, template_hash
from arbiter.experiments.storage import (
    check_name,
    check_new_name,
    check_storage,
    holds_record,
    new_experiment,
    storage_root,
)

log = logging.getLogger(__name__)

KIND = "long"


def long(
    template: str,
    *,
    gpus: int | None = None,
    cpus_per_trial: int = 1,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    sets: list[str] | None = None,
    hours: float | None = None,
    dashboard_host: str = "127.0.0.1",
) -> ExitCode:
    """Start or continue the long run of `template` as the experiment STORAGE/NAME (default
    NAME: TEMPLATE-long); `hours` bounds this session's wall-clock time. One straight sequence,
    kept whole so that the order is visible: every input check, then Ray, then the record."""
    from arbiter.config.loading import load_config
    from arbiter.config.templates import find_template
    from arbiter.config.trials import plan_trials

    template_path = find_template(template)
    config = long_config(load_config(template_path, sets or []), str(template_path))
    plan_trials(config, str(template_path))  # the run is valid before Ray starts
    root = storage_root(storage)
    name = check_name(name or f"{template_path.stem}-long")
    path = root / name
    record = Record(
        template=str(template_path.resolve()),
        sets=list(sets or []),
        template_hash=template_hash(config),
        resolved=config.model_dump(mode="json"),
        gpus=0,
        cpus_per_trial=cpus_per_trial,
        kind=KIND,
    )
    started = holds_record(path)
    restore = started and _continues(path, record)
    if not started:
        check_new_name(root, name)
        check_storage(root)
    from arbiter.tune.trackers import check_trackers

    check_trackers(config.logging.trackers, root)
    with contextlib.ExitStack() as held:
        if started:  # the lease before Ray starts: a second driver is one line
            held.enter_context(Lease(path))
        from arbiter.tune.cluster import connect, warn_if_storage_is_local
        from arbiter.tune.tuner import ATTEMPTS, Placement, build_tuner, fit

        # one run takes one GPU when there is one (or none with --gpus 0)
        used = min(connect(address, gpus, dashboard_host), 1)
        warn_if_storage_is_local(root)
        if not started:
            record = dataclasses.replace(record, gpus=used)
            new_experiment(root, name, record)
            held.enter_context(Lease(path))
        (path / ATTEMPTS).delete()  # a new session: no back-off owed
        verb = "continuing" if restore else "starting"
        print(f"{verb} {name}: {config.training.steps:,} steps; experiment in {path}")
        print(f"watch: arbiter status {name} --storage {root}  |  tensorboard --logdir {path}")
        tuner = build_tuner(path, config, Placement(used, cpus_per_trial), restore, long=True)
        budget = _Budget(hours)
        with budget:
            fit(tuner, path)

    from arbiter.commands.outcome import outcome

    again = f"arbiter long --template {template_path.name} --name {name}"
    again += f" --storage {root}" if root.uri != storage_root(None).uri else ""
    return outcome(path, record, again, budget.spent)


def long_config(template: Config, source: str) -> Config:
    """The template's base settings as a one-trial experiment: its space is not swept (a note
    says so; `--set` pins a point of it), its metric and stop rule are kept."""
    sweep = template.sweep or SweepConfig()
    if sweep.space:
        log.warning(
            "%s sweeps %s: the long run uses the base settings; pin a point with --set KEY=VALUE",
            source,
            ", ".join(sweep.space),
        )
    one = SweepConfig(metric=sweep.metric, mode=sweep.mode, stop=sweep.stop)
    return template.model_copy(update={"sweep": one})


def _continues(path: Location, record: Record) -> bool:
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
