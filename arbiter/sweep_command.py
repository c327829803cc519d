"""`arbiter sweep`, `arbiter resume` and `arbiter status`: the flows around `sweep.py`.

Order matters: everything the user can get wrong (template, trials, flags, name, GPUs) is checked
before Ray starts and before the experiment folder is written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from arbiter.errors import UserError
from arbiter.experiment import (
    Record,
    check_new_name,
    check_not_moved,
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
    from arbiter.config import Config
    from arbiter.dry_run import print_dry_run
    from arbiter.loading import load_config
    from arbiter.templates import find_template
    from arbiter.trials import plan_trials

    base = _base_config(args.base_config) if args.base_config else None
    if args.template:
        template_path = find_template(args.template)
    elif base:
        template_path, base = base, None  # the legacy flag alone: the base config is the template
    else:
        raise UserError(
            "sweep: a template is required: --template T (see `arbiter templates`), "
            "or the legacy --base-config FILE"
        )
    template = load_config(template_path, args.set, base)
    if template.sweep is None and args.template:
        raise UserError(
            f"{template_path}: has no [sweep] table; it is a run config (use `arbiter train`)"
        )
    if template.sweep is None:
        raise UserError(_nothing_to_sweep(template_path))
    sets = list(args.set)
    if args.strategy:
        # Recorded as the `--set` it stands for, so that `resume` rebuilds the same template.
        sets.append(f"sweep.strategy={args.strategy}")
        resolved = template.model_dump(mode="json")
        resolved["sweep"]["strategy"] = args.strategy
        template = Config.model_validate(resolved)
    assert template.sweep is not None
    trials = plan_trials(template, str(template_path))
    storage = storage_root(args.storage)
    notes = _legacy_notes(args, template_path, base, template.sweep.strategy)
    if args.dry_run:
        print(*notes, sep="\n", end="\n" if notes else "", file=sys.stderr)
        print_dry_run(template_path, template, trials, args.gpus)
        return 0
    name = args.name or default_name(template_path)
    check_new_name(storage, name)  # before Ray starts; new_experiment checks again after
    check_writable(storage, "--storage")

    from arbiter.sweep import (
        Placement,
        build_tuner,
        connect,
        fit,
        search_alg,
        warn_if_storage_is_local,
    )

    search_alg(template.sweep)  # a missing optional package is an error before Ray starts
    gpus = connect(args.address, args.gpus, args.dashboard_host)
    warn_if_storage_is_local(storage)
    # After every check of the input, so that a mistake stays one line on stderr.
    print(*notes, sep="\n", end="\n" if notes else "", file=sys.stderr)
    record = Record(
        template=str(template_path.resolve()),
        sets=sets,
        template_hash=template_hash(template),
        resolved=template.model_dump(mode="json"),
        gpus=gpus,
        cpus_per_trial=args.cpus_per_trial,
        base_config=str(base.resolve()) if base else None,
    )
    path = new_experiment(storage, name, record)
    where = f"{gpus} GPU(s), one per trial" if gpus else "CPUs, one trial per CPU slot"
    print(f"sweep {name}: {len(trials)} trial(s) on {where}; experiment in {path}")
    print(f"watch: arbiter status {name} --storage {storage}  |  tensorboard --logdir {path}")
    fit(build_tuner(path, template, Placement(gpus, args.cpus_per_trial)), path)
    return _finish(path, record, name, storage)


def resume_sweep(args: argparse.Namespace) -> int:
    from arbiter.loading import load_config
    from arbiter.sweep import Placement, build_tuner, connect, fit, warn_if_storage_is_local

    path = find_experiment(args.experiment, args.storage)
    record = read_record(path)
    if not has_tune_state(path):
        raise UserError(
            f"{path}: cannot be resumed: it stopped before Ray Tune saved its state; "
            "remove the folder and start the sweep again"
        )
    check_not_moved(path, record)
    files = [record.template, *([record.base_config] if record.base_config else [])]
    gone = [f for f in files if not Path(f).is_file()]
    if not gone:
        current = template_hash(load_config(record.template, record.sets, record.base_config))
        if current != record.template_hash:
            what = " with its --base-config ".join(files)
            raise UserError(
                f"{what}: changed since the sweep started; Ray Tune cannot resume a "
                "changed search space: restore the template or start a new sweep"
            )
    else:
        log.warning("%s is gone; resuming with the copy saved in %s", " and ".join(gone), path)
    connect(args.address, record.gpus, "127.0.0.1")
    warn_if_storage_is_local(path.parent)
    print(f"resuming {path.name}: unfinished and errored trials continue from their checkpoints")
    placement = Placement(record.gpus, record.cpus_per_trial)
    fit(build_tuner(path, record.config, placement, True, long=record.kind == "long"), path)
    return _finish(path, record, path.name, path.parent)


def show_status(args: argparse.Namespace) -> int:
    from arbiter.status import as_json, print_table, read_trials

    path = find_experiment(args.experiment, args.storage)
    record = read_record(path)
    sweep = record.config.sweep
    assert sweep is not None
    trials = read_trials(path, sweep.metric, sweep.mode)
    if args.json:
        print(as_json(path, record, trials))
    else:
        print_table(path, record, trials, sweep.metric)
    return 0


def _base_config(text: str) -> Path:
    """The --base-config file: a path, or a template name as --template takes them."""
    from arbiter.templates import find_template

    try:
        return find_template(text)
    except UserError:
        pass
    hint = ""
    with contextlib.suppress(UserError):
        # The legacy command ran from engine/ (`../configs/...`), and `cd engine` is gone:
        # point to the file of that name where templates are looked up.
        hint = f"; did you mean {find_template(Path(text).name)}?"
    raise UserError(f"--base-config {text}: file not found{hint}")


def _nothing_to_sweep(base: Path) -> str:
    """The error for `--base-config B` alone when B has no [sweep] table, naming the templates
    that extend B, since the legacy orchestrator's own default space is not known here."""
    from arbiter.loading import read_toml
    from arbiter.templates import list_templates

    extending = []
    for template in list_templates():
        try:
            parent = read_toml(template).get("extends")
        except UserError:
            continue
        if isinstance(parent, str) and (template.parent / parent).resolve() == base.resolve():
            extending.append(template.name)
    which = "see `arbiter templates`"
    if extending:
        which = f"one that extends it: {', '.join(extending)}"
    return (
        f"--base-config {base}: has no [sweep] table, so there is nothing to sweep; add "
        f"--template T ({which}) or a [sweep] table (see docs/migration.md)"
    )


def _legacy_notes(
    args: argparse.Namespace, template: Path, base: Path | None, strategy: str
) -> list[str]:
    """One line per legacy flag used, naming what replaces it."""
    notes = []
    if args.base_config:
        if base:
            instead = f'templates now say extends = "{base.name}"'
        else:
            instead = f"give it as --template {template}"
        notes.append(f"note: --base-config is the legacy form; {instead} (see docs/migration.md)")
    if args.strategy:
        notes.append(
            f'note: --strategy is the legacy form; templates now say strategy = "{strategy}" '
            f"in [sweep], or --set sweep.strategy={strategy} (see docs/migration.md)"
        )
    return notes


def _finish(path: Path, record: Record, name: str, storage: Path) -> int:
    """Print the saved outcome; the exit code says whether every trial finished."""
    from arbiter.status import ERRORED, FINISHED, print_table, read_trials

    sweep = record.config.sweep
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
