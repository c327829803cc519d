"""The Tune function trainable: a trial's sampled values -> its full config -> `core.loop.train`.

Ray stays at this edge: the core reports through a callback that calls `tune.report` (with the
checkpoint folder when one was written), and resumes from `tune.get_checkpoint()` after a retry,
a `resume` or a PBT exploit. The core works in a scratch folder; Tune persists what is reported.
A trial removes its scratch folder when it ends or is stopped; a sweep killed outright cannot,
so an experiment's scratch folders share one folder per node, which `sweep.fit` removes when
the sweep, or its resume, ends.
Warnings the core logs (a corrupt checkpoint skipped, say) travel with the next report as
`warning`, since worker logs do not reach the sweep's terminal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune

from arbiter.config.schema import Budget
from arbiter.config.trials import trial_config
from arbiter.core.checkpoint import usable_checkpoint
from arbiter.core.loop import train
from arbiter.experiments.lineage import point_key
from arbiter.experiments.location import Location

# A long run is retried without limit: after a failure soon after an earlier start, wait first.
BACKOFF_WINDOW_S = 600.0
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 300.0


def run_trial(
    overrides: dict[str, Any],
    base: dict[str, Any],
    cpus: int,
    scratch: str,
    milestones: Location | None = None,
    attempts: Location | None = None,
    budget: Budget | None = None,
    starts: dict[str, str] | None = None,
) -> None:
    """One trial: `base` (the template's run settings) with `overrides` (Tune's sample), sized
    to the sweep's parameter `budget` when it has one.

    `starts`: an extended experiment's points that its parent ran (`lineage.point_key`), each
    with the parent trial's newest checkpoint, where such a trial begins (its own checkpoints
    come first once it has any).

    `scratch`: the experiment's folder of working folders on each node (`scratch_name`).
    `milestones`: a folder that keeps a copy of each milestone checkpoint (Tune prunes its own
    copies to checkpoint.keep). `attempts`: a file of this run's start times, to back off when
    it keeps failing (a long run is retried without limit).
    """
    if attempts is not None:
        _back_off(attempts)
    config = trial_config(base, overrides, budget)  # InvalidTrial fails the trial with a clear line
    config.logging.enable_tensorboard = False  # Tune's own TensorBoard logger writes the trial's
    torch.set_num_threads(cpus)  # trials share the machine: one thread per reserved CPU
    placement = _placement()

    warnings = _Collected(logging.WARNING)

    def report(metrics: dict[str, Any], saved: Path | None) -> None:
        row = {**metrics, **placement, "wall_time": time.time()}  # wall clock of this report
        if warnings.messages:
            row["warning"] = "; ".join(warnings.messages)
            warnings.messages.clear()
        checkpoint = tune.Checkpoint.from_directory(saved) if saved else None
        tune.report(row, checkpoint=checkpoint)
        if saved and milestones and config.checkpoint.is_milestone(metrics["step"]):
            _keep(saved, milestones / tune.get_context().get_trial_id() / saved.name)

    root = local_scratch(scratch)
    root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{tune.get_context().get_trial_id()}-", dir=root))
    logging.getLogger("arbiter").addHandler(warnings)
    try:
        start = (starts or {}).get(point_key(overrides))
        resume = _resume_point(tune.get_checkpoint(), start, workdir)
        train(config, workdir, reporter=report, resume_from=resume)
    finally:
        logging.getLogger("arbiter").removeHandler(warnings)  # the worker may run another trial
        shutil.rmtree(workdir, ignore_errors=True)


def _placement() -> dict[str, Any]:
    """Where this trial runs, reported with every row."""
    return {
        "gpu_ids": ",".join(str(i) for i in ray.get_gpu_ids()),
        "node": ray.util.get_node_ip_address(),
        "node_id": ray.get_runtime_context().get_node_id(),  # several nodes may share an IP
        "trial_start": time.time(),  # wall clock, to tell which trials ran at the same time
    }


def _resume_point(
    checkpoint: tune.Checkpoint | None, start: str | None, workdir: Path
) -> tuple[Path, dict[str, Any]] | None:
    """What the trial continues from: its own newest checkpoint, else the parent experiment's
    trial of this point (`start`), else nothing (step 0). A corrupt checkpoint falls back to an
    older one (`_restore`); none valid means step 0."""
    if checkpoint is not None:
        return _restore(checkpoint.filesystem, checkpoint.path, workdir)
    if start is not None:
        parent = Location.of(start)
        return _restore(parent.fs, parent.path, workdir)
    return None


def _restore(fs: pafs.FileSystem, path: str, workdir: Path) -> tuple[Path, dict[str, Any]] | None:
    """Checkpoint `path` as `usable_checkpoint` takes it: that one, else the newest older one of
    its trial that loads; in object storage each downloaded into `workdir` when tried."""
    if isinstance(fs, pafs.LocalFileSystem):
        return usable_checkpoint(Path(path))
    trial = posixpath.dirname(path.rstrip("/"))
    siblings = [posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(trial))]

    def fetch(candidate: str) -> Path:
        local = workdir / "restore" / posixpath.basename(candidate)
        local.mkdir(parents=True)  # copy_files makes no folder for a prefix without a marker
        pafs.copy_files(candidate, str(local), source_filesystem=fs)
        return local

    return usable_checkpoint(path, siblings, fetch)


def scratch_name(experiment: Location) -> str:
    """The folder, in each node's temporary directory, of `experiment`'s trial working folders:
    named after the experiment's full path or URI, so that two sweeps never share one."""
    digest = hashlib.sha256(experiment.uri.encode()).hexdigest()[:8]
    return f"arbiter-{experiment.name}-{digest}"


def local_scratch(name: str) -> Path:
    """The folder `name` (`scratch_name`) in this node's temporary directory."""
    return Path(tempfile.gettempdir()) / name


def _keep(checkpoint: Path, destination: Location) -> None:
    """Copy a checkpoint folder to `destination`. A local copy is whole or absent (copied
    aside, then renamed); an object store cannot rename a folder, and a copy cut short there
    is a torn checkpoint, which loading detects and passes over."""
    if destination.exists():
        return  # a retry reached the same milestone again
    if destination.remote:
        pafs.copy_files(str(checkpoint), destination.path, destination_filesystem=destination.fs)
        return
    partial = destination.local.with_name(f".partial-{destination.name}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(checkpoint, partial)
    partial.rename(destination.local)


def _back_off(attempts: Location) -> None:
    """Record this start; if the previous ones came in quick succession (a crash loop: an
    out-of-memory at start, a bad node), wait 5 s, 10 s, 20 s ... up to 5 minutes first."""
    now = time.time()
    starts = json.loads(attempts.read_text()) if attempts.is_file() else []
    recent = [t for t in starts if now - t < BACKOFF_WINDOW_S]
    attempts.write_text(json.dumps([*recent, now]))
    if recent:
        time.sleep(min(BACKOFF_FIRST_S * 2 ** (len(recent) - 1), BACKOFF_MAX_S))


class _Collected(logging.Handler):
    """Keeps the messages of the records it handles."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
