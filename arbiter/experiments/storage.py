"""Where experiments live: the storage root (`--storage`, `$ARBITER_STORAGE`, the default: a
local folder or an object store's URI, see `location`), an experiment's name, and finding or
creating STORAGE/NAME. Only checked, never created, until a sweep really starts: a dry run or a
refused sweep writes nothing (an object store's write check removes what it wrote).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from arbiter.errors import UserError
from arbiter.experiments.location import Location, reaching
from arbiter.experiments.record import RECORD, Record

DEFAULT_STORAGE = "~/arbiter_results"
# The longest folder name common file systems (ext4, xfs, btrfs, APFS) allow.
NAME_MAX_BYTES = 255


def storage_root(flag: str | None) -> Location:
    """The experiments folder or prefix: --storage, else $ARBITER_STORAGE, else
    ~/arbiter_results. Only checked here, never created: a dry run or a refused sweep writes
    nothing."""
    root = Location.of(flag or os.environ.get("ARBITER_STORAGE") or DEFAULT_STORAGE)
    if root.remote:
        return root
    path = root.local
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise UserError(f"--storage {path}: cannot be used: {exc.strerror or exc}") from None
    if is_file:
        raise UserError(f"--storage {path}: is a file; give a folder for experiments")
    return root


def check_storage(root: Location) -> None:
    """Refuse, before anything starts, storage that cannot be written: a local folder (see
    `check_writable`), or a bucket that is missing, unreachable, or refuses these credentials
    (a small object is written and removed)."""
    if not root.remote:
        check_writable(root.local, "--storage")
        return
    bucket = replace(root, path=root.path.split("/", 1)[0])
    with reaching(root):
        if not bucket.exists():
            raise UserError(f"--storage {root}: the bucket {bucket.name} does not exist; create it")
        probe = root / f".arbiter-write-check-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.delete()


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


def check_new_name(storage: Location, name: str) -> Location:
    """STORAGE/NAME for a new experiment: a plain name (see `check_name`) nothing has yet."""
    path = storage / check_name(name)
    with reaching(storage):
        taken = path.exists()
    if taken:
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


def new_experiment(storage: Location, name: str, record: Record) -> Location:
    """Create STORAGE/NAME with its record; an existing name is refused, its folder untouched."""
    path = check_new_name(storage, name)
    try:
        path.make_dir()
        (path / RECORD).write_text(json.dumps(asdict(replace(record, path=path.uri)), indent=2))
    except OSError as exc:
        raise UserError(
            f"--storage {storage}: cannot create the experiment folder: {exc}"
        ) from None
    return path


def find_experiment(name_or_path: str, storage_flag: str | None) -> Location:
    """An experiment from its path or URI, or its name under the storage root."""
    direct = Location.of(name_or_path, "experiment")
    if holds_record(direct):
        return direct
    root = storage_root(storage_flag)
    under = root / name_or_path
    if holds_record(under):
        return under
    raise UserError(
        f"{name_or_path}: no Arbiter experiment here or under {root} (looked for {RECORD})"
    )


def holds_record(folder: Location) -> bool:
    """Whether `folder` has an experiment record; a path the OS refuses (too long) has none."""
    with reaching(folder):
        try:
            return (folder / RECORD).is_file()
        except OSError:
            if folder.remote:
                raise
            return False
