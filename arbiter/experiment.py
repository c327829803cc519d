"""An experiment folder: where it is, what template it ran, and whether Tune can restore it.

`STORAGE/NAME/arbiter.json` records the resolved template, its hash and the sweep's flags, so
`resume` runs exactly what was started and refuses a template that changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from arbiter.config import Config
from arbiter.errors import UserError
from arbiter.loading import describe_error, format_key

RECORD = "arbiter.json"
DEFAULT_STORAGE = "~/arbiter_results"
# The longest folder name common file systems (ext4, xfs, btrfs, APFS) allow.
NAME_MAX_BYTES = 255


@dataclass(frozen=True)
class Record:
    """What `arbiter.json` holds."""

    template: str
    sets: list[str]
    template_hash: str
    resolved: dict[str, Any]
    gpus: int
    cpus_per_trial: int
    # `arbiter sweep --base-config`: the file layered under the template, which `resume` needs
    # to rebuild the same template. Records written before the flag existed have none.
    base_config: str | None = None
    # "sweep", or "long" for `arbiter long`'s one-trial experiments (which resume by rerunning)
    kind: str = "sweep"
    # Where the experiment was started (resolved); `resume` checks it has not moved since.
    # Records written before it was kept have none.
    path: str | None = None

    @cached_property
    def config(self) -> Config:
        """The validated settings, validated once (`read_record` does it first, to refuse a
        record this version cannot run)."""
        return Config.model_validate(self.resolved)


def storage_root(flag: str | None) -> Path:
    """The experiments folder: --storage, else $ARBITER_STORAGE, else ~/arbiter_results.

    Only checked here, never created: a dry run or a refused sweep writes nothing.
    """
    path = Path(os.path.expanduser(flag or os.environ.get("ARBITER_STORAGE") or DEFAULT_STORAGE))
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise UserError(f"--storage {path}: cannot be used: {exc.strerror or exc}") from None
    if is_file:
        raise UserError(f"--storage {path}: is a file; give a folder for experiments")
    return path.resolve()


def check_writable(folder: Path, flag: str) -> None:
    """Refuse, before anything starts, a folder that cannot be created or written: a read-only
    file system, missing permissions, or a file on the way (access(2) answers all three)."""
    existing = folder
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:  # a name too long for the file system, say
        raise UserError(f"{flag} {folder}: cannot be used: {exc.strerror or exc}") from None
    if not existing.is_dir():
        raise UserError(f"{flag} {folder}: {existing} is a file; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder}: {existing} is not writable; choose another folder")


def default_name(template: Path) -> str:
    return f"{template.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def template_hash(config: Config) -> str:
    """A hash of the resolved template: equal when every setting is equal."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_new_name(storage: Path, name: str) -> Path:
    """STORAGE/NAME for a new experiment: a plain name (see `check_name`) no folder has yet."""
    path = storage / check_name(name)
    if path.exists():
        raise UserError(
            f"--name {name}: {path} already exists; `arbiter resume {name}` continues it, "
            "or choose another --name"
        )
    return path


def check_name(name: str) -> str:
    """A name cannot leave the storage folder (`..`, `/`), break the one-line messages that print
    it (control characters), or be longer than a folder name may be (refused before Ray starts).
    """
    if (
        name in ("", ".", "..")
        or "/" in name
        or not name.isprintable()
        or len(os.fsencode(name)) > NAME_MAX_BYTES
    ):
        raise UserError(
            f"--name {name!r}: must be a plain folder name: printable characters except '/', "
            f"not '.' or '..', at most {NAME_MAX_BYTES} bytes"
        )
    return name


def new_experiment(storage: Path, name: str, record: Record) -> Path:
    """Create STORAGE/NAME with its record; an existing name is refused, its folder untouched."""
    path = check_new_name(storage, name)
    try:
        path.mkdir(parents=True)
        record = replace(record, path=str(path.resolve()))
        (path / RECORD).write_text(json.dumps(asdict(record), indent=2))
    except OSError as exc:
        raise UserError(
            f"--storage {storage}: cannot create the experiment folder: {exc}"
        ) from None
    return path


def find_experiment(name_or_path: str, storage_flag: str | None) -> Path:
    """An experiment folder from a path, or a name under the storage folder."""
    direct = Path(name_or_path).expanduser()
    if _holds_record(direct):
        return direct.resolve()
    under = storage_root(storage_flag) / name_or_path
    if _holds_record(under):
        return under
    raise UserError(
        f"{name_or_path}: no Arbiter experiment here or under {storage_root(storage_flag)} "
        f"(looked for {RECORD})"
    )


def _holds_record(folder: Path) -> bool:
    """Whether `folder` has an experiment record; a path the OS refuses (too long) has none."""
    try:
        return (folder / RECORD).is_file()
    except OSError:
        return False


def read_record(path: Path) -> Record:
    """The experiment's record, its settings checked: a record this version cannot run (written
    by another version of Arbiter, or edited) is one line naming the key, not a traceback."""
    try:
        record = Record(**json.loads((path / RECORD).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{path / RECORD}: unreadable experiment record: {exc}") from None
    try:
        record.config  # noqa: B018 (validates, and keeps the result)
    except ValidationError as exc:
        key, problem = describe_error(exc)
        raise UserError(
            f"{path / RECORD}: {format_key(key)}: {problem}; the experiment was written by "
            "another version of Arbiter, or edited: use the version that started it"
        ) from None
    return record


def has_tune_state(path: Path) -> bool:
    """Tune can restore only once it saved an experiment state, not merely tuner.pkl."""
    return (path / "tuner.pkl").is_file() and any(path.glob("experiment_state-*.json"))


def check_not_moved(path: Path, record: Record) -> None:
    """Refuse to resume a sweep moved since it started while some of its trials are not yet
    created: Ray Tune 2.60 restores the trials it saved at the new place, but creates the
    others at the old one (its search algorithm's saved state keeps the old path)."""
    if record.path is None or Path(record.path).resolve() == path.resolve():
        return  # not moved, or the old path leads here
    newest = max(path.glob("experiment_state-*.json"))  # named by the time it was written
    created = len(json.loads(newest.read_text())["trial_data"])
    sweep = record.config.sweep
    assert sweep is not None
    if created < len(sweep.points()):
        raise UserError(
            f"{path}: was started at {record.path}, where Ray Tune would create the trials it "
            f"has not begun yet; move it back, or link that path here (ln -s {path} "
            f"{record.path})"
        )
