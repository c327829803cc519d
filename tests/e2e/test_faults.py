"""Faults a long sweep must survive, on real Ray and real files: a killed trial worker, a corrupt
checkpoint, a NaN loss, a full disk, a cluster address where nothing listens.

(Interrupting the driver with Ctrl-C or SIGKILL and resuming is in test_sweep.py.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from helpers import run, start, status, sweep_args, tiny_run

from arbiter.core.checkpoint import latest_checkpoint
from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows

pytestmark = pytest.mark.slow

# tiny_run's tables for a sweep of one trial, keeping 5 checkpoints
ONE_TRIAL = {"checkpoint": "keep = 5", "sweep": 'metric = "val/accuracy"'}
# What a trial computes; timings, process ids and Tune's bookkeeping differ between runs.
COMPUTED = (
    "step",
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "weight_norm",
    "grad_norm",
    "lr",
)


def trial_rows(experiment: Path) -> list[dict]:
    """The result rows of the experiment's only trial, oldest first ([] before the first)."""
    found = next(experiment.glob("*/result.json"), None)
    return result_rows(Location.of(found.parent)) if found else []


def wait_for(condition, what: str, driver: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the sweep ended before {what}: {driver.stdout.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def restarts(steps: list[int]) -> list[int]:
    """The first step reported after each restart (where the step count went back)."""
    return [b for a, b in pairwise(steps) if b <= a]


def computed(row: dict) -> dict:
    return {k: row[k] for k in COMPUTED}


def test_a_killed_trial_worker_is_retried_from_its_checkpoint(cluster, tmp_path, write):
    template = write("one.toml", tiny_run(1500, ONE_TRIAL))  # long enough to be cut
    sweep = (
        "sweep",
        "--template",
        template,
        "--gpus",
        2,
        "--address",
        cluster,
        "--storage",
        tmp_path,
    )
    driver = start(*sweep, "--name", "killed")
    experiment = tmp_path / "killed"
    wait_for(lambda: any(r["step"] >= 200 for r in trial_rows(experiment)), "step 200", driver)
    worker = trial_rows(experiment)[-1]["pid"]  # the process the trial runs in
    os.kill(worker, signal.SIGKILL)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output

    straight = run(*sweep, "--name", "straight")
    assert straight.returncode == 0, straight.stdout + straight.stderr
    killed_rows, straight_rows = trial_rows(experiment), trial_rows(tmp_path / "straight")
    # the trial went on in a new worker, from its checkpoint, not from step 0
    retried = [r for r in killed_rows if r["pid"] != worker]
    assert retried and all(r["pid"] == retried[0]["pid"] for r in retried)
    steps = [r["step"] for r in killed_rows]
    assert steps.count(50) == 1 and retried[0]["step"] > 200, steps
    # the retried trial ends exactly where an uninterrupted one does
    assert computed(killed_rows[-1]) == computed(straight_rows[-1])
    assert status("killed", tmp_path)["trials"][0]["status"] == "TERMINATED"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    where, cluster, tmp_path, write, request
):
    storage = request.getfixturevalue("s3").uri() if where == "s3" else str(tmp_path)
    template = write("one.toml", tiny_run(2000, ONE_TRIAL))
    driver = start(*sweep_args(template, gpus=1, address=cluster, storage=storage, name="torn"))
    experiment = Location.of(storage) / "torn"

    def checkpoints() -> list[Location]:
        trial = next((n for n in experiment.children() if n.startswith("run_trial_")), None)
        if trial is None:
            return []
        names = [n for n in (experiment / trial).children() if n.startswith("checkpoint_")]
        return [f for n in names if ((f := experiment / trial / n) / "meta.json").is_file()]

    wait_for(lambda: len(checkpoints()) >= 4, "4 checkpoints", driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output

    # Tune's saved state may name the newest checkpoint or, its snapshot lagging one report
    # behind, the one before: tear both (a full disk or a lost connection during their copy
    # to storage, say)
    *_, intact, torn, newest = checkpoints()
    for folder in (torn, newest):
        state = folder / "state.pt"
        with state.fs.open_input_stream(state.path) as f:
            data = f.read()
        with state.fs.open_output_stream(state.path) as f:
            f.write(data[: len(data) // 2])
    saved_step = json.loads((intact / "meta.json").read_text())["step"]

    resumed = run("resume", "torn", "--storage", storage, "--address", cluster, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # said on the sweep's terminal
    assert f"{torn.name} is corrupt" in resumed.stdout, resumed.stdout
    assert f"falling back to {intact.name}" in resumed.stdout
    steps = [r["step"] for r in result_rows(newest.parent)]
    assert restarts(steps) == [saved_step + 50], steps  # continued from the intact checkpoint
    assert steps[-1] == 2000


def test_a_nan_trial_errors_with_its_reason_and_the_others_finish(cluster, tmp_path, write):
    nan = {
        **ONE_TRIAL,
        "sweep": 'metric = "val/accuracy"\nmax_failures = 0',
        "sweep.space": '"training.learning_rate" = [1e-3, 1e30]\n"training.grad_clip" = [0.0]',
    }
    template = write("nan.toml", tiny_run(200, nan))
    done = run(*sweep_args(template, gpus=2, address=cluster, storage=tmp_path, name="nan"))
    assert done.returncode == 1, done.stdout + done.stderr  # some trials errored
    trials = {t["config"]["training.learning_rate"]: t for t in status("nan", tmp_path)["trials"]}
    assert trials[1e-3]["status"] == "TERMINATED" and trials[1e-3]["last"]["step"] == 200
    assert trials[1e30]["status"] == "ERROR"
    assert "NaN or infinite at step" in trials[1e30]["error"]
    table = run("status", "nan", "--storage", tmp_path).stdout
    assert "failed: " in table and "NaN or infinite at step" in table


def test_an_address_where_no_cluster_listens_fails_within_seconds(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = run(
        "sweep",
        "--template",
        "quickstart.toml",
        "--address",
        f"127.0.0.1:{port}",
        "--storage",
        tmp_path,
        "--name",
        "nowhere",
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "Traceback" not in done.stderr
    assert took < 60, f"took {took:.0f} s"  # a generous bound on 'seconds', not a benchmark
    assert not (tmp_path / "nowhere").exists()


def mounted_tmpfs(mount: Path, options: str):
    """A real small file system (needs root, as in CI); skips where mounting is not allowed."""
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    return mount


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs: a real 'No space left on device' once it fills."""
    yield mounted_tmpfs(tmp_path / "disk", "size=3m")
    subprocess.run(["umount", str(tmp_path / "disk")], check=True)


@pytest.fixture
def read_only(tmp_path):
    yield mounted_tmpfs(tmp_path / "ro", "ro,size=1m")
    subprocess.run(["umount", str(tmp_path / "ro")], check=True)


@pytest.mark.parametrize("command", ["sweep", "train"])
def test_unwritable_storage_is_refused_before_anything_starts(read_only, command, write):
    config = write("run.toml", tiny_run(100, ONE_TRIAL))
    argv = {
        "sweep": [
            "sweep",
            "--template",
            str(config),
            "--gpus",
            "0",
            "--storage",
            str(read_only / "experiments"),
        ],
        "train": ["train", "--config", str(config), "--out", str(read_only / "run")],
    }[command]
    done = run(*argv, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"arbiter: error: {argv[-2]} {argv[-1]}: {read_only} is not writable; choose another folder"
    ]
    assert not any(read_only.iterdir())


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(small_disk, write):
    config = write("run.toml", tiny_run(100_000, {"checkpoint": "keep = 5"}))
    out = small_disk / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "arbiter",
            "train",
            "--config",
            str(config),
            "--out",
            str(out),
            "--set",
            "checkpoint.keep=1000",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # the run started, then failed
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("arbiter: run failed: cannot write")
    assert "No space left on device" in last_line and "Traceback" not in done.stderr
    found = latest_checkpoint(out)  # the checkpoint before the failed one is intact
    assert found is not None and found[1]["step"] >= 50
    assert not list((out / "checkpoints").glob(".tmp-*"))  # no half-written folder left
