"""A sweep on a two-node Ray cluster: trials spread over both nodes, and losing a node mid-sweep
loses no trial.

Both nodes run on this machine (two `ray start` processes, 2 logical GPUs each) and share its
file system, as the nodes of a real cluster share a network file system for `--storage`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from itertools import combinations
from pathlib import Path

import pytest
from helpers import RAY, run, start, status, sweep_args, tiny_run

from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows
from arbiter.tune.cluster import storage_warning


def grid(steps: int, seeds: list[int]) -> str:
    """A sweep of tiny runs over `seeds` x 2 weight decays."""
    space = f'"training.seed" = {seeds}\n"training.weight_decay" = [0.1, 1.0]'
    return tiny_run(steps, {"sweep": 'metric = "val/accuracy"', "sweep.space": space})


def start_node(*flags: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # as the conftest cluster: token auth on
    return subprocess.Popen(
        [RAY, "start", "--block", "--num-cpus=2", "--num-gpus=2", "--disable-usage-stats", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive_nodes(address: str) -> int:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    done = subprocess.run(
        [RAY, "status", f"--address={address}"], capture_output=True, text=True, env=env
    )
    if done.returncode or "Active:" not in done.stdout:  # not up, or no report yet
        return 0
    active = done.stdout.split("Active:")[1].split("Pending:")[0]
    return active.count("node_")


def stop(node: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(node.pid, sig)
        node.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_nodes():
    """(address, the second node's process): a head and one worker node, 2 GPUs each. Shared by
    the module's tests (starting it takes ~25 s); the test that kills the second node is last."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    subprocess.run(
        [RAY, "get-auth-token", "--generate"],
        capture_output=True,
        check=True,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    head = start_node("--head", f"--port={port}", "--include-dashboard=false")
    nodes = [head]
    try:
        deadline = time.monotonic() + 120
        while not listening(port):  # the head's GCS is up: a node may join (asking `ray status`
            # instead, a second's Python start-up each time, cost ~10 s here)
            assert head.poll() is None and time.monotonic() < deadline, "the head did not start"
            time.sleep(0.2)
        nodes.append(start_node(f"--address={address}"))
        while alive_nodes(address) < 2:
            assert nodes[1].poll() is None and time.monotonic() < deadline, "no second node"
            time.sleep(1)
        yield address, nodes[1]
    finally:
        for node in reversed(nodes):
            stop(node, signal.SIGKILL)  # a throwaway cluster: a graceful stop took 20 s


@pytest.mark.slow
def test_eight_trials_run_on_both_nodes_at_once(two_nodes, tmp_path, write):
    address, _ = two_nodes
    # 600 steps: a trial outlasts the worker node's first start of a Python worker (seconds on a
    # busy machine), so the head alone cannot finish the sweep before the worker's slots are used
    template = write("grid.toml", grid(600, [0, 1, 2, 3]))
    done = run(*sweep_args(template, gpus=4, address=address, storage=tmp_path, name="spread"))
    assert done.returncode == 0, done.stdout + done.stderr
    trials = status("spread", tmp_path)["trials"]
    assert len(trials) == 8 and all(t["status"] == "TERMINATED" for t in trials)
    # every trial's results landed in the one storage folder
    assert all(Path(t["path"]).parent == tmp_path / "spread" for t in trials)
    assert all(result_rows(Location.of(t["path"]))[-1]["step"] == 600 for t in trials)
    spans = [
        (
            t["last"]["trial_start"],
            t["last"]["trial_start"] + t["last"]["time_total_s"],
            t["last"]["node_id"],
        )
        for t in trials
    ]
    errors = [e.read_text()[-300:] for e in (tmp_path / "spread").glob("*/error.txt")]
    assert len({node for *_, node in spans}) == 2, (sorted(spans), errors)
    assert any(
        a0 < b1 and b0 < a1 and na != nb for (a0, a1, na), (b0, b1, nb) in combinations(spans, 2)
    )
    # both nodes are on this machine: nothing to warn about the storage
    assert "shared folder" not in done.stderr


@pytest.mark.slow
def test_losing_a_node_mid_sweep_retries_its_trials_on_the_other(two_nodes, tmp_path, write):
    address, second = two_nodes
    template = write("grid.toml", grid(1000, [0, 1]))
    driver = start(*sweep_args(template, gpus=4, address=address, storage=tmp_path, name="lost"))
    experiment = tmp_path / "lost"
    deadline = time.monotonic() + 240

    def progress() -> dict[str, list[dict]]:
        return {d.name: result_rows(Location.of(d)) for d in experiment.glob("run_trial_*")}

    while True:  # until all four run, two of them on each node, past a checkpoint
        seen = progress()
        nodes = {r[-1]["node_id"] for r in seen.values() if r and r[-1]["step"] >= 200}
        if len(seen) == 4 and len(nodes) == 2:
            break
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, f"trials did not spread: {seen.keys()}"
        time.sleep(0.5)
    stop(second, signal.SIGKILL)  # the whole node: its raylet and its trial workers
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output

    trials = status("lost", tmp_path)["trials"]
    assert len(trials) == 4 and all(t["status"] == "TERMINATED" for t in trials)
    for t in trials:
        steps = [r["step"] for r in result_rows(Location.of(t["path"]))]
        assert steps[-1] == 1000
        assert steps.count(50) == 1, f"{t['id']} started again from step 0: {steps}"
    survivors = {t["last"]["node_id"] for t in trials}
    assert len(survivors) == 1, "every trial ended on the node that was left"


def test_a_local_storage_folder_on_a_multi_machine_cluster_is_warned_about():
    assert storage_warning(Location.of("/data"), "10.0.0.1", {"10.0.0.1"}) is None
    warning = storage_warning(Location.of("/data"), "10.0.0.1", {"10.0.0.1", "10.0.0.2"})
    assert warning is not None
    assert "2 machines" in warning and "--storage /data" in warning and "shared" in warning
