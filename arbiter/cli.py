"""The `arbiter` command line: parsing, dispatch to `arbiter.commands`, and one-line errors.

Only parsing lives here. Each command module is imported when its command runs, so `validate`
and `templates` never import Ray or torch and the command line starts quickly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import get_args

from arbiter import __version__
from arbiter.commands.exit_codes import ExitCode
from arbiter.config.schema import MAX_TRIALS_PER_GPU, SweepConfig
from arbiter.errors import RunFailed, UserError
from arbiter.experiments.storage import DEFAULT_STORAGE


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit code 2), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except UserError as exc:
        print(f"arbiter: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except RunFailed as exc:
        print(f"arbiter: run failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="arbiter", description="Transformer sweeps on Ray Tune.")
    parser.add_argument("--version", action="version", version=f"arbiter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_sweep(commands)
    _add_long(commands)
    _add_experiment_commands(commands)
    _add_extend(commands)
    _add_ui(commands)
    _add_train(commands)
    _add_tools(commands)
    return parser


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="run a sweep template on Ray Tune")
    # Not argparse-required: the legacy --base-config alone may give the template instead.
    sweep.add_argument("--template", help="template path or name (see `arbiter templates`)")
    sweep.add_argument(
        "--base-config",
        metavar="FILE",
        help="legacy: a config layered under --template, or the template itself without one",
    )
    sweep.add_argument(
        "--strategy",
        choices=get_args(SweepConfig.model_fields["strategy"].annotation),  # the schema's list
        help="legacy: overrides [sweep] strategy (same as --set sweep.strategy=S)",
    )
    _placement_flags(sweep, "GPUs to use (0: CPU trials)", "each trial reserves")
    sweep.add_argument(
        "--trials-per-gpu",
        type=_trials_per_gpu,
        metavar="K|auto",
        help="trials sharing each GPU, 1/K of it each (default: the template's [sweep] "
        "trials_per_gpu, else 1); auto: as many as fit in the smallest GPU's free memory",
    )
    _storage_flag(sweep)
    sweep.add_argument("--name", help="experiment name (default: template name and a timestamp)")
    sweep.add_argument(
        "--resume-if-exists",
        action="store_true",
        help="resume --name if it exists with this same template (a requeued job's command)",
    )
    _set_flag(sweep)
    sweep.add_argument(
        "--dry-run", action="store_true", help="list the trials and their cost; start nothing"
    )
    sweep.set_defaults(run=_sweep)


def _add_long(commands: argparse._SubParsersAction) -> None:
    long = commands.add_parser(
        "long", help="one long run as a Ray Tune trial, retried and resumed until it is done"
    )
    long.add_argument("--template", required=True, help="template path or name")
    _placement_flags(long, "0: run on the CPU (default: one GPU if any)", "the run reserves")
    _storage_flag(long)
    long.add_argument(
        "--name", help="experiment name (default: TEMPLATE-long; the same name resumes it)"
    )
    _set_flag(long)
    long.add_argument(
        "--hours", type=_positive_float, help="stop resumably after this wall-clock time"
    )
    long.set_defaults(run=_long)


def _add_experiment_commands(commands: argparse._SubParsersAction) -> None:
    """resume, status and report: the commands that take an experiment by name or folder."""
    for verb, text in (
        ("resume", "resume an interrupted sweep"),
        ("status", "show a sweep's trials"),
        ("report", "plots and a summary of a sweep, finished or running"),
    ):
        command = commands.add_parser(verb, help=text)
        command.add_argument("experiment", metavar="NAME|PATH", help="experiment name or folder")
        _storage_flag(command)
        if verb == "status":
            command.add_argument("--json", action="store_true", help="print a JSON object")
        if verb == "resume":
            command.add_argument(
                "--address", help="the Ray cluster to resume on (auto or HOST:PORT)"
            )
        if verb == "report":
            command.add_argument(
                "other",
                nargs="?",
                metavar="OTHER",
                help="a second experiment: both experiments' seed groups side by side "
                "(needs --out)",
            )
            command.add_argument(
                "--out",
                type=Path,
                help="folder for the report (default: in the experiment; ./NAME-report for one in "
                "object storage; required with two experiments)",
            )
        command.set_defaults(run={"resume": _resume, "status": _status, "report": _report}[verb])


def _add_extend(commands: argparse._SubParsersAction) -> None:
    extend = commands.add_parser(
        "extend", help="continue a sweep's trials from their checkpoints, as a new experiment"
    )
    extend.add_argument(
        "parent", metavar="PARENT", help="the experiment to continue (name or folder)"
    )
    extend.add_argument("--name", required=True, help="the new experiment's name")
    _set_flag(extend)
    _storage_flag(extend)
    _placement_flags(extend, "GPUs to use (default: the parent's)", "each trial reserves")
    extend.set_defaults(run=_extend)


def _add_ui(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser("ui", help="the MLflow UI of a sweep's runs (logging.trackers)")
    ui.add_argument("experiment", metavar="NAME|PATH", help="experiment name or folder")
    _storage_flag(ui)
    ui.add_argument("--port", type=_positive, default=5000, help="port on 127.0.0.1 (5000)")
    ui.add_argument("--print", action="store_true", help="print the command, do not start it")
    ui.set_defaults(run=_ui)


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train one run without Ray (the legacy flow)")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="a run config file")
    source.add_argument(
        "--tier", choices=("high_vram", "low_vram", "auto"), help="a legacy hardware tier"
    )
    _set_flag(train)
    train.add_argument("--out", type=Path, help="output folder (default: runs/<config name>)")
    train.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --out"
    )
    train.set_defaults(run=_train)


def _add_tools(commands: argparse._SubParsersAction) -> None:
    """prepare-text, validate and templates: the commands that start no training."""
    prepare = commands.add_parser("prepare-text", help="make uint16 token files from text files")
    prepare.add_argument("files", type=Path, nargs="+", metavar="FILE")
    prepare.add_argument("--out", type=Path, required=True, help="folder for train.bin and val.bin")
    prepare.add_argument("--val-fraction", type=float, default=0.1, help="share held out (0.1)")
    prepare.add_argument(
        "--vocab-size",
        type=_vocab_size,
        default=256,
        help="256: byte tokens (default); more: train a byte-level BPE of that many tokens",
    )
    prepare.add_argument(
        "--tokenizer", metavar="bytes|FILE", help="bytes, or a tokenizer.json to reuse its ids"
    )
    prepare.set_defaults(run=_prepare_text)

    validate = commands.add_parser(
        "validate", help="check config files and every trial of templates"
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _set_flag(validate)
    validate.set_defaults(run=_validate)

    templates = commands.add_parser("templates", help="list the sweep templates")
    templates.set_defaults(run=_templates)


def _placement_flags(command: argparse.ArgumentParser, gpus_help: str, cpus_help: str) -> None:
    """Where the trials run: GPUs and CPUs per trial, the Ray cluster, its dashboard."""
    command.add_argument("--gpus", type=_count, help=gpus_help)
    command.add_argument("--cpus-per-trial", type=_positive, default=1, help=f"CPUs {cpus_help}")
    command.add_argument("--address", help="join an existing Ray cluster: auto or HOST:PORT")
    command.add_argument(
        "--dashboard-host", default="127.0.0.1", help="where the Ray dashboard listens"
    )


def _sweep(args: argparse.Namespace) -> int:
    from arbiter.commands.sweep import sweep

    return sweep(
        args.template,
        gpus=args.gpus,
        cpus_per_trial=args.cpus_per_trial,
        address=args.address,
        storage=args.storage,
        name=args.name,
        sets=args.set,
        dashboard_host=args.dashboard_host,
        dry_run=args.dry_run,
        base_config=args.base_config,
        strategy=args.strategy,
        resume_if_exists=args.resume_if_exists,
        trials_per_gpu=args.trials_per_gpu,
    )


def _long(args: argparse.Namespace) -> int:
    from arbiter.commands.long import long

    return long(
        args.template,
        gpus=args.gpus,
        cpus_per_trial=args.cpus_per_trial,
        address=args.address,
        storage=args.storage,
        name=args.name,
        sets=args.set,
        hours=args.hours,
        dashboard_host=args.dashboard_host,
    )


def _resume(args: argparse.Namespace) -> int:
    from arbiter.commands.resume import resume

    return resume(args.experiment, args.storage, args.address)


def _status(args: argparse.Namespace) -> int:
    from arbiter.commands.status import status

    return status(args.experiment, args.storage, as_json=args.json)


def _report(args: argparse.Namespace) -> int:
    from arbiter.commands.report import compare_reports, report

    if args.other is not None:
        return compare_reports(args.experiment, args.other, args.storage, args.out)
    return report(args.experiment, args.storage, args.out)


def _extend(args: argparse.Namespace) -> int:
    from arbiter.commands.extend import extend

    return extend(
        args.parent,
        name=args.name,
        sets=args.set,
        storage=args.storage,
        gpus=args.gpus,
        cpus_per_trial=args.cpus_per_trial,
        address=args.address,
        dashboard_host=args.dashboard_host,
    )


def _ui(args: argparse.Namespace) -> int:
    from arbiter.commands.ui import ui

    return ui(args.experiment, args.storage, port=args.port, print_only=args.print)


def _train(args: argparse.Namespace) -> int:
    from arbiter.commands.train import train

    return train(args.config, tier=args.tier, sets=args.set, out=args.out, resume=args.resume)


def _prepare_text(args: argparse.Namespace) -> int:
    from arbiter.commands.prepare_text import prepare_text

    return prepare_text(args.files, args.out, args.val_fraction, args.vocab_size, args.tokenizer)


def _validate(args: argparse.Namespace) -> int:
    from arbiter.commands.validate import validate

    return validate(args.files, args.set)


def _templates(args: argparse.Namespace) -> int:
    from arbiter.commands.templates import templates

    return templates()


def _storage_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        help="experiments folder or s3://BUCKET/PREFIX, gs://BUCKET/PREFIX (default: "
        f"$ARBITER_STORAGE or {DEFAULT_STORAGE})",
    )


def _set_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. training.weight_decay=0.5 (repeatable)",
    )


def _count(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _vocab_size(text: str) -> int:
    value = _int(text)
    if not 256 <= value <= 65536:
        raise argparse.ArgumentTypeError(
            f"must be from 256 (bytes) to 65536 (uint16 token ids), got {value}"
        )
    return value


def _trials_per_gpu(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_TRIALS_PER_GPU} or auto, got {text!r}"
        ) from None
    if not 1 <= value <= MAX_TRIALS_PER_GPU:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_TRIALS_PER_GPU} or auto, got {value}"
        )
    return value


def _positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
