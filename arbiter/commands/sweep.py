"""`arbiter sweep`: a template's trials on Ray Tune, in a new experiment.

Order matters: everything the user can get wrong (template, trials, flags, name, GPUs) is checked
before Ray starts and before the experiment folder is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from arbiter import legacy
from arbiter.commands.exit_codes import ExitCode
from arbiter.config.schema import Config
from arbiter.errors import UserError
from arbiter.experiments.lease import Lease
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record, has_tune_state, read_record, template_hash
from arbiter.experiments.storage import (
    check_name,
    check_new_name,
    check_storage,
    default_name,
    holds_record,
    new_experiment,
    storage_root,
)
from arbiter.tune.packing import check_request, placement_words


def sweep(
    template: str | None,
    *,
    gpus: int | None = None,
    cpus_per_trial: int = 1,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    sets: list[str] | None = None,
    dashboard_host: str = "127.0.0.1",
    dry_run: bool = False,
    base_config: str | None = None,
    strategy: str | None = None,
    resume_if_exists: bool = False,
    trials_per_gpu: int | str | None = None,
) -> ExitCode:
    """Run `template` (a path or a packaged name) as the experiment STORAGE/NAME; `base_config`
    and `strategy` are the legacy flags (`arbiter.legacy`). `resume_if_exists`: an existing
    NAME of the same template is resumed instead of refused (the one command a requeued job
    runs); `trials_per_gpu`: K or "auto" (None: the template's). Kept whole, so the order of
    the checks is visible."""
    from arbiter.commands.dry_run import print_dry_run
    from arbiter.config.trials import plan_trials

    sets = list(sets or [])
    template_path, base, config = _load_sweep(template, base_config, strategy, sets)
    assert config.sweep is not None
    trials = plan_trials(config, str(template_path))
    root = storage_root(storage)
    notes = legacy.notes(base_config, strategy, template_path, base, config.sweep.strategy)
    packed = trials_per_gpu if trials_per_gpu is not None else config.sweep.trials_per_gpu
    if dry_run:
        _print_notes(notes)
        print_dry_run(template_path, config, trials, gpus, packed)
        return ExitCode.DONE
    if trials_per_gpu is not None:
        check_request(trials_per_gpu, gpus, address)
    name = check_name(name or default_name(template_path))
    existing = resume_if_exists and holds_record(root / name)
    if existing:
        if has_tune_state(_same_sweep(root / name, template_path, config)):
            from arbiter.commands.resume import resume_experiment

            return resume_experiment(root / name, read_record(root / name), address)
        # else it stopped before Tune first saved: it starts over in its folder
    else:
        check_new_name(root, name)  # before Ray starts; new_experiment checks again after
    check_storage(root)

    from arbiter.tune.cluster import connect, warn_if_storage_is_local
    from arbiter.tune.packing import decide
    from arbiter.tune.trackers import check_trackers
    from arbiter.tune.tuner import Placement, build_tuner, fit

    check_trackers(config.logging.trackers, root)  # a missing extra: one line before Ray starts
    used = connect(address, gpus, dashboard_host)
    packing = decide(packed, used, trials, address)
    warn_if_storage_is_local(root)
    _print_notes(notes)  # after every check of the input: a mistake stays one line on stderr
    record = Record(
        template=str(template_path.resolve()),
        sets=sets,
        template_hash=template_hash(config),
        resolved=config.model_dump(mode="json"),
        gpus=used,
        cpus_per_trial=cpus_per_trial,
        base_config=str(base.resolve()) if base else None,
        trials_per_gpu=packing.trials_per_gpu,
    )
    path = root / name if existing else new_experiment(root, name, record)
    if packing.reason:
        print(packing.reason)
    print(
        f"sweep {name}: {len(trials)} trial(s) on {placement_words(used, packing)}; "
        f"experiment in {path}"
    )
    print(f"watch: arbiter status {name} --storage {root}  |  tensorboard --logdir {path}")
    with Lease(path):
        placement = Placement(used, cpus_per_trial, packing.trials_per_gpu)
        fit(build_tuner(path, config, placement), path)

    from arbiter.commands.outcome import outcome

    return outcome(path, record, f"arbiter resume {name} --storage {root}")


def _same_sweep(path: Location, template_path: Path, config: Config) -> Location:
    """`--resume-if-exists` on an existing experiment: it must be this same sweep."""
    found = read_record(path)
    if found.kind != "sweep" or template_hash(found.config) != template_hash(config):
        raise UserError(
            f"--name {path.name}: {path} holds another experiment (a different template, "
            f"--set or --base-config than {template_path.name}); choose another --name"
        )
    return path


def _load_sweep(
    template: str | None, base_config: str | None, strategy: str | None, sets: list[str]
) -> tuple[Path, Path | None, Config]:
    """The template's path, the legacy base config's, and the config they make with `sets`."""
    from arbiter.config.loading import load_config

    template_path, base = legacy.resolve_sweep_files(template, base_config)
    config = load_config(template_path, sets, base)
    if config.sweep is None and template:
        raise UserError(
            f"{template_path}: has no [sweep] table; it is a run config (use `arbiter train`)"
        )
    if config.sweep is None:
        raise UserError(legacy.nothing_to_sweep(template_path))
    return template_path, base, legacy.apply_strategy(config, strategy, sets)


def _print_notes(notes: list[str]) -> None:
    print(*notes, sep="\n", end="\n" if notes else "", file=sys.stderr)
