"""`arbiter sweep`, `arbiter resume` and `arbiter status`: the flows around `sweep.py`.

Order matters: everything the user can get wrong (template, trials, flags, name, GPUs) is checked
before Ray starts and before the experiment folder is written.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from arbiter.errors import UserError
from arbiter.experiment import (
    Record,
    check_new_name,
    check_writable,
    default_name,
    find_experiment,
    has_tune_state,
    new_experiment,
    read_record,
    storage_root,
    template_hash,
)

log = logging.getLogger(__name__)

EXIT_TRIALS_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


def run_sweep(args: argparse.Namespace) -> int:
    from arbiter.dry_run import print_dry_run
    from arbiter.loading import load_config
    from arbiter.templates import find_template
    from arbiter.trials import plan_trials

    template_path = find_template(args.template)
    template = load_config(template_path, args.set)
    if template.sweep is None:
        raise UserError(
            f"{template_path}: has no [sweep] table; it is a run config (use `arbiter train`)"
        )
    trials = plan_trials(template, str(template_path))
    storage = storage_root(args.storage)
    if args.dry_run:
        print_dry_run(template_path, template, trials, args.gpus)
        return 0
    name = args.name or default_name(template_path)
    check_new_name(storage, name)  # before Ray starts; new_experiment checks again after
    check_writable(storage, "--storage")

    from arbiter.sweep import Placement, build_tuner, connect, search_alg

    search_alg(template.sweep)  # a missing optional package is an error before Ray starts
    gpus = connect(args.address, args.gpus, args.dashboard_host)
    record = Record(
        template=str(template_path.resolve()),
        sets=list(args.set),
        template_hash=template_hash(template),
        resolved=template.model_dump(mode="json"),
        gpus=gpus,
        cpus_per_trial=args.cpus_per_trial,
    )
    path = new_experiment(storage, name, record)
    where = f"{gpus} GPU(s), one per trial" if gpus else "CPUs, one trial per CPU slot"
    print(f"sweep {name}: {len(trials)} trial(s) on {where}; experiment in {path}")
    print(f"watch: arbiter status {name} --storage {storage}  |  tensorboard --logdir {path}")
    build_tuner(path, template, Placement(gpus, args.cpus_per_trial)).fit()
    return _finish(path, record, name, storage)


def resume_sweep(args: argparse.Namespace) -> int:
    from arbiter.loading import load_config
    from arbiter.sweep import Placement, build_tuner, connect

    path = find_experiment(args.experiment, args.storage)
    record = read_record(path)
    if not has_tune_state(path):
        raise UserError(
            f"{path}: cannot be resumed: it stopped before Ray Tune saved its state; "
            "remove the folder and start the sweep again"
        )
    if Path(record.template).is_file():
        current = template_hash(load_config(record.template, record.sets))
        if current != record.template_hash:
            raise UserError(
                f"{record.template}: changed since the sweep started; Ray Tune cannot resume a "
                "changed search space: restore the template or start a new sweep"
            )
    else:
        log.warning("%s is gone; resuming with the copy saved in %s", record.template, path)
    connect(args.address, record.gpus, "127.0.0.1")
    print(f"resuming {path.name}: unfinished and errored trials continue from their checkpoints")
    build_tuner(path, record.config(), Placement(record.gpus, record.cpus_per_trial), True).fit()
    return _finish(path, record, path.name, path.parent)


def show_status(args: argparse.Namespace) -> int:
    from arbiter.status import as_json, print_table, read_trials

    path = find_experiment(args.experiment, args.storage)
    record = read_record(path)
    sweep = record.config().sweep
    assert sweep is not None
    trials = read_trials(path, sweep.metric, sweep.mode)
    if args.json:
        print(as_json(path, record, trials))
    else:
        print_table(path, record, trials, sweep.metric)
    return 0


def _finish(path: Path, record: Record, name: str, storage: Path) -> int:
    """Print the saved outcome; the exit code says whether every trial finished."""
    from arbiter.status import ERRORED, FINISHED, print_table, read_trials

    sweep = record.config().sweep
    assert sweep is not None
    trials = read_trials(path, sweep.metric, sweep.mode)
    print_table(path, record, trials, sweep.metric)
    unfinished = [t for t in trials if t.status not in (FINISHED, ERRORED)]
    if unfinished:
        print(f"interrupted: {len(unfinished)} trial(s) unfinished; continue with "
              f"`arbiter resume {name} --storage {storage}`")  # fmt: skip
        return EXIT_INTERRUPTED
    if any(t.status == ERRORED for t in trials):
        return EXIT_TRIALS_FAILED
    return 0
