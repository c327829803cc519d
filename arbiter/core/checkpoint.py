"""Checkpoints that resume a run exactly: atomic saves, integrity checks, pruning, RNG state.

A checkpoint is `OUT/checkpoints/step_{step:08d}/` holding `state.pt` (one `torch.save` of the
caller's dict) and `meta.json` (written last: step, sha256 and size of state.pt, the resolved
config, library versions, time). The caller's state (model/optimizer/GradScaler state_dicts, step,
data cursor, `capture_rng()`) must hold only tensors and primitives, because it is read back with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import posixpath
import random
import re
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import arbiter
from arbiter.errors import RunFailed

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
META_FILE = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# The folders Ray Tune copies a trial's reported checkpoints to, numbered in report order.
_TUNE_DIR = re.compile(r"^checkpoint_(\d+)$")
# Room left over the state's tensors for the zip structure, pickled metadata and meta.json.
SPACE_MARGIN_BYTES = 64 * 1024
# Temporary directories: a save in progress, or an old copy of a step being replaced.
_TMP_PREFIX = ".tmp-"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(
    out_dir: Path,
    step: int,
    state: dict[str, Any],
    config: dict[str, Any],
    keep: int,
    milestone_interval: int = 0,
) -> Path:
    """Write `state` as the checkpoint of `step` atomically, prune to `keep`; return its path.

    Checkpoints at multiples of `milestone_interval` (when > 0) are never pruned.

    Raises RunFailed (one line) when the folder cannot be written (a full disk, say); earlier
    checkpoints survive.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    root = Path(out_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp = root / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    old = root / f"{_TMP_PREFIX}old-{final.name}-{os.getpid()}"
    moved_aside = False
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _check_space(root, state)
        _write_files(tmp, step, state, config)
        if final.exists():
            # rename cannot replace a non-empty directory: move the old copy aside first. A crash
            # right here loses this step (both copies are temp dirs, pruned later); older remain.
            os.rename(final, old)
            moved_aside = True
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException as exc:  # also a pickling error or Ctrl-C: leave no half-written step
        shutil.rmtree(tmp, ignore_errors=True)
        if moved_aside and not final.exists():
            os.rename(old, final)
        if isinstance(exc, OSError):
            reason = (exc.strerror or str(exc)).replace("\n", " ")
            raise RunFailed(
                f"cannot write checkpoint in {root}: {reason}; earlier checkpoints are intact"
            ) from exc
        raise
    shutil.rmtree(old, ignore_errors=True)
    _prune(root, keep, final, milestone_interval)
    return final


def _write_files(folder: Path, step: int, state: dict[str, Any], config: dict[str, Any]) -> None:
    """`state` and its meta.json (hash, size, config, versions) into `folder`, synced to disk."""
    with open(folder / STATE_FILE, "wb") as f:
        try:
            torch.save(state, f)
        except RuntimeError as exc:  # torch's zip writer reports a failed write this way
            detail = str(exc).splitlines()[0]
            raise OSError(errno.EIO, f"writing {STATE_FILE} failed ({detail})") from exc
        f.flush()
        os.fsync(f.fileno())
    meta = {
        "step": step,
        "state_sha256": file_sha256(folder / STATE_FILE),
        "state_bytes": (folder / STATE_FILE).stat().st_size,
        "config": config,
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "arbiter": arbiter.__version__,
        },
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # meta.json last: its presence (with a matching hash) is what marks a checkpoint valid.
    with open(folder / META_FILE, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved in checkpoint directory `path`; CheckpointError if it is invalid."""
    path = Path(path)
    _check_meta(path, full=True)
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unloadable files
        raise CheckpointError(f"{STATE_FILE} does not load: {exc}".splitlines()[0]) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{STATE_FILE} holds a {type(state).__name__}, not a dict")
    return state


def latest_checkpoint(out_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint under `out_dir` and its state; None when there is none."""
    return _first_valid([str(p) for p in _step_dirs(Path(out_dir) / "checkpoints")])


def usable_checkpoint(
    path: str | Path,
    siblings: Iterable[str] | None = None,
    fetch: Callable[[str], Path] = Path,
) -> tuple[Path, dict[str, Any]] | None:
    """Checkpoint `path` if it is valid, else the newest valid one among its older siblings.

    Ray Tune hands a trial the checkpoint it recorded last, `checkpoint_NNNNNN/` in the trial's
    folder; if that one was truncated (a full disk or a lost connection during the copy to
    storage, say), the trial continues from the previous one instead of failing again on every
    retry. A local folder's siblings are listed here; a checkpoint in object storage comes with
    `siblings` (the names in its trial's folder) and `fetch`, which downloads one candidate
    (a path in the store) and returns its local folder, newest first and only as needed.
    """
    path = str(path)
    parent, name = posixpath.split(path.rstrip("/"))
    match = _TUNE_DIR.match(name)
    if match is None:
        return _first_valid([path], fetch)
    if siblings is None:
        siblings = [p.name for p in Path(parent).iterdir()]
    index = int(match.group(1))
    numbered = ((int(m.group(1)), n) for n in siblings if (m := _TUNE_DIR.match(n)))
    older = sorted(((i, n) for i, n in numbered if i < index), reverse=True)
    return _first_valid([path, *(posixpath.join(parent, n) for _, n in older)], fetch)


def _first_valid(
    candidates: list[str], fetch: Callable[[str], Path] = Path
) -> tuple[Path, dict[str, Any]] | None:
    """The first of `candidates` (newest first) that loads, warning about each one skipped."""
    for i, candidate in enumerate(candidates):
        try:
            path = fetch(candidate)
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            after = (
                f"falling back to {posixpath.basename(candidates[i + 1])}"
                if i + 1 < len(candidates)
                else "no older checkpoint to fall back to"
            )
            log.warning("checkpoint %s is corrupt (%s); %s", candidate, exc, after)
    return None


def capture_rng() -> dict[str, Any]:
    """The python, numpy, torch (and CUDA) generator states, in weights_only-loadable types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    rng: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            # uint32 words widened to int64, a dtype every torch version saves and loads.
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """Put every generator back in the state `capture_rng` recorded."""
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = rng["numpy"]
    keys = np.asarray(n["keys"].numpy(), dtype=np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        # A resumed trial may see fewer GPUs than the saving one: restore the devices it has.
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"][: torch.cuda.device_count()]])


def _check_meta(path: Path, full: bool) -> None:
    """Raise CheckpointError unless meta.json parses and matches state.pt (hash only if full)."""
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        size, digest = int(meta["state_bytes"]), str(meta["state_sha256"])
    except FileNotFoundError as exc:
        raise CheckpointError(f"{META_FILE} is missing") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{META_FILE} is unreadable: {exc}") from exc
    match = _STEP_DIR.match(path.name)
    if match and meta.get("step") != int(match.group(1)):
        raise CheckpointError(f"{META_FILE} says step {meta.get('step')}")
    try:
        actual = (path / STATE_FILE).stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{STATE_FILE} is missing") from exc
    if actual != size:
        raise CheckpointError(f"size mismatch: {STATE_FILE} has {actual} bytes, expected {size}")
    if full and file_sha256(path / STATE_FILE) != digest:
        raise CheckpointError("sha256 mismatch")


def _check_space(root: Path, state: dict[str, Any]) -> None:
    """Fail before writing when the disk cannot hold the checkpoint (with a little room for the
    file's own structure): a clear 'No space left on device', not a torn file."""
    needed = _tensor_bytes(state) * 1.01 + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(root).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"{os.strerror(errno.ENOSPC)}: the checkpoint needs about {needed / 2**20:.3g} MiB, "
            f"{free / 2**20:.3g} MiB are free",
        )


def _tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a nested state (what torch.save will write, near enough)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _prune(root: Path, keep: int, written: Path, milestone_interval: int) -> None:
    """Keep the newest `keep` valid checkpoints, `written` and the milestones; delete older ones
    and temp dirs."""
    # One process writes a run's folder, and its own save is done: any temp dir is a crash's.
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    valid = 0
    for path in _step_dirs(root):
        step = int(path.name.removeprefix("step_"))
        if milestone_interval and step % milestone_interval == 0:
            continue  # kept for good, and not counted towards `keep`
        if valid >= keep and path != written:
            shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            # Size check only: hashing every kept checkpoint on every save costs too much I/O.
            _check_meta(path, full=False)
            valid += 1
        except CheckpointError:
            pass  # an invalid one does not count towards `keep`; it goes once older than those


def _step_dirs(root: Path) -> list[Path]:
    """Checkpoint directories under `root`, newest step first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (a state file can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename or new file inside `path` durable (POSIX directories can be fsync'd)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
