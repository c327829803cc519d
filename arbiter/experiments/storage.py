"""Where experiments live: the storage root (`--storage`, `$ARBITER_STORAGE`, the default), an
experiment's name, and finding or creating STORAGE/NAME. Only checked, never created, until a
sweep really starts: a dry run or a refused sweep writes nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from arbiter.errors import UserError
from arbiter.experiments.record import RECORD, Record

DEFAULT_STORAGE = "~/arbiter_results"
# The longest folder name common file systems (ext4, xfs, btrfs, APFS) allow.
NAME_MAX_BYTES = 255


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
