"""`arbiter resume`: an interrupted sweep continues where it stopped (Tune's own restore), with
its unfinished and failed trials picking up from their checkpoints. `arbiter sweep
--resume-if-exists` comes here too when its experiment exists."""

from __future__ import annotations

import logging
from pathlib import Path

from arbiter.commands.exit_codes import ExitCode
from arbiter.errors import UserError
from arbiter.experiments.lease import Lease
from arbiter.experiments.location import Location
from arbiter.experiments.record import (
    Record,
    check_not_moved,
    has_tune_state,
    read_record,
    template_hash,
)
from arbiter.experiments.storage import find_experiment

log = logging.getLogger(__name__)


def resume(experiment: str, storage: str | None = None, address: str | None = None) -> ExitCode:
    path = find_experiment(experiment, storage)
    return resume_experiment(path, read_record(path), address)


def resume_experiment(path: Location, record: Record, address: str | None) -> ExitCode:
    """Continue the experiment at `path` under its lease: every check first, then Ray."""
    if not has_tune_state(path):
        raise UserError(
            f"{path}: cannot be resumed: it stopped before Ray Tune saved its state; "
            "remove the folder and start the sweep again"
        )
    check_not_moved(path, record)
    _check_template(path, record)
    from arbiter.tune.trackers import check_trackers

    check_trackers(record.config.logging.trackers, path.parent)
    with Lease(path):
        from arbiter.commands.extend import parent_starts
        from arbiter.tune.cluster import connect, warn_if_storage_is_local
        from arbiter.tune.tuner import Placement, build_tuner, fit

        connect(address, record.gpus, "127.0.0.1")
        warn_if_storage_is_local(path.parent)
        print(
            f"resuming {path.name}: unfinished and errored trials continue from their checkpoints"
        )
        placement = Placement(record.gpus, record.cpus_per_trial, record.trials_per_gpu)
        long = record.kind == "long"
        starts = None  # an extended experiment's trials not yet begun start from its parent's
        if record.parent:
            starts = parent_starts(Location.of(record.parent["experiment"]), record.config)
        fit(build_tuner(path, record.config, placement, True, long=long, starts=starts), path)

    from arbiter.commands.outcome import outcome

    return outcome(path, record, f"arbiter resume {path.name} --storage {path.parent}")


def _check_template(path: Location, record: Record) -> None:
    """Ray Tune cannot resume a changed search space: refuse a template changed since the
    start; a template gone from this machine is replaced by the record's copy."""
    from arbiter.config.loading import load_config

    files = [record.template, *([record.base_config] if record.base_config else [])]
    gone = [f for f in files if not Path(f).is_file()]
    if gone:
        log.warning("%s is gone; resuming with the copy saved in %s", " and ".join(gone), path)
        return
    current = template_hash(load_config(record.template, record.sets, record.base_config))
    # against the record's settings as this version reads them (a setting added since the sweep
    # started takes its default in both), not the hash the sweep wrote
    if current != template_hash(record.config):
        what = " with its --base-config ".join(files)
        raise UserError(
            f"{what}: changed since the sweep started; Ray Tune cannot resume a "
            "changed search space: restore the template or start a new sweep"
        )
