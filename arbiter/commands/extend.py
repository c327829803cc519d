"""`arbiter extend PARENT --name CHILD --set K=V ...`: a new experiment that continues PARENT's
trials from their newest checkpoints with changed settings (more steps, typically), and starts
the points that a larger `sweep.space` adds from step 0.

Ray Tune cannot change a finished experiment; CHILD is a Tune experiment of its own whose trials
begin from PARENT's checkpoints (`run_trial`'s `starts`). PARENT is only read. CHILD's record
names its parent and the changed settings; a setting a checkpoint fixes (the model, the data,
the optimizer) cannot change, and everything is checked before Ray starts.
"""

from __future__ import annotations

import copy

from arbiter.commands.exit_codes import ExitCode
from arbiter.config.loading import RawConfig, apply_sets, validate
from arbiter.config.schema import Config
from arbiter.errors import UserError
from arbiter.experiments.lease import Lease
from arbiter.experiments.lineage import (
    changed_settings,
    fixed_changes,
    newest_checkpoints,
    point_key,
)
from arbiter.experiments.location import Location
from arbiter.experiments.record import RECORD, Record, read_record, template_hash
from arbiter.experiments.storage import (
    check_name,
    check_new_name,
    check_storage,
    find_experiment,
    new_experiment,
    storage_root,
)
from arbiter.ui import show


def extend(
    parent: str,
    *,
    name: str,
    sets: list[str],
    storage: str | None = None,
    gpus: int | None = None,
    cpus_per_trial: int = 1,
    address: str | None = None,
    dashboard_host: str = "127.0.0.1",
) -> ExitCode:
    """Continue the experiment `parent` as the new experiment STORAGE/`name`. One sequence,
    kept whole so the order is visible: every check of the input, then Ray, then the parent's
    trials (Tune's saved state), then the new experiment."""
    from arbiter.config.trials import plan_trials

    parent_path = find_experiment(parent, storage)
    record = read_record(parent_path)
    if record.kind != "sweep":
        raise UserError(f"{parent_path}: an `arbiter {record.kind}` experiment; extend a sweep")
    source = str(parent_path / RECORD)
    raw = RawConfig(copy.deepcopy(record.resolved), {}, source)
    apply_sets(raw, sets)
    config = validate(raw)
    changed = changed_settings(record.config, config)
    if not changed:
        raise UserError(
            "extend: nothing changed: give --set KEY=VALUE, e.g. --set training.steps=N "
            "(more steps) or --set 'sweep.space={...}' (more points)"
        )
    fixed = fixed_changes(changed)
    if fixed:
        raise UserError(
            f"--set {fixed[0]}: a checkpoint of {parent_path.name} fixes it (the model, the data "
            "and the optimizer state go on as they are); allowed: training settings such as "
            "training.steps, and sweep.space"
        )
    trials = plan_trials(config, source)
    root = storage_root(storage)
    name = check_name(name)
    check_new_name(root, name)
    check_storage(root)

    from arbiter.tune.cluster import connect, warn_if_storage_is_local
    from arbiter.tune.trackers import check_trackers
    from arbiter.tune.tuner import Placement, build_tuner, fit

    check_trackers(config.logging.trackers, root)
    used = connect(address, gpus if gpus is not None else record.gpus, dashboard_host)
    starts = parent_starts(parent_path, config)  # Tune's state: after connect opts in to Ray
    warn_if_storage_is_local(root)
    child = Record(
        template=record.template,
        sets=[*record.sets, *sets],
        template_hash=template_hash(config),
        resolved=config.model_dump(mode="json"),
        gpus=used,
        cpus_per_trial=cpus_per_trial,
        base_config=record.base_config,
        trials_per_gpu=record.trials_per_gpu,
        parent={"experiment": parent_path.uri, "changed": changed},
    )
    path = new_experiment(root, name, child)
    went_on = sum(1 for t in trials if point_key(t.overrides) in starts)
    print(
        f"extend {parent_path.name} as {name}: {went_on} of {len(trials)} trial(s) continue from "
        f"its checkpoints, with {_listed(changed)}; experiment in {path}"
    )
    with Lease(path):
        placement = Placement(used, cpus_per_trial, record.trials_per_gpu)
        fit(build_tuner(path, config, placement, starts=starts), path)

    from arbiter.commands.outcome import outcome

    return outcome(path, child, f"arbiter resume {name} --storage {root}")


def parent_starts(parent: Location, config: Config) -> dict[str, str]:
    """Where each point the experiment at `parent` ran left off (`lineage.newest_checkpoints`)."""
    from arbiter.tune.state import read_trials

    assert config.sweep is not None
    return newest_checkpoints(read_trials(parent, config.sweep.metric, config.sweep.mode))


def _listed(changed: dict) -> str:
    return ", ".join(f"{key}={show(value)}" for key, value in changed.items())
