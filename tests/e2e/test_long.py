"""`arbiter long`: one run as a Ray Tune trial that survives a killed worker, a killed driver, a
Ctrl-C and a spent time budget, each time continuing from its newest checkpoint; milestones stay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import run, start, status, tiny_run

from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows

# tiny_run's tables: 2 checkpoints kept besides a milestone every 500 steps, and a swept key
# that the long run ignores
LONG = {
    "checkpoint": "keep = 2\nmilestone_interval = 500",
    "sweep": 'metric = "val/accuracy"',
    "sweep.space": '"training.weight_decay" = [0.1, 1.0]',
}


def rows(experiment: Path) -> list[dict]:
    """The result rows of the long run's trial (every attempt's, in order), [] before any."""
    return [
        row
        for path in sorted(experiment.glob("*/result.json"))
        for row in result_rows(Location.of(path.parent))
    ]


def wait_until_step(experiment: Path, step: int, driver: subprocess.Popen) -> list[dict]:
    deadline = time.monotonic() + 240
    while not (seen := rows(experiment)) or seen[-1]["step"] < step:
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, f"step {step} not reached"
        time.sleep(0.2)
    return seen


def long_command(template: Path, cluster: str, storage: Path, *extra) -> list:
    return [
        "long",
        "--template",
        template,
        "--gpus",
        1,
        "--address",
        cluster,
        "--storage",
        storage,
        "--name",
        "run",
        *extra,
    ]


@pytest.mark.slow
def test_a_killed_worker_and_a_killed_driver_only_cost_steps_since_a_checkpoint(
    cluster, tmp_path, write
):
    template = write("long.toml", tiny_run(2000, LONG))
    command = long_command(template, cluster, tmp_path)
    experiment = tmp_path / "run"
    driver = start(*command)
    worker = wait_until_step(experiment, 500, driver)[-1]["pid"]
    os.kill(worker, signal.SIGKILL)  # Tune retries the run in a new worker
    wait_until_step(experiment, 1000, driver)
    driver.kill()  # and then the driver itself dies
    driver.communicate()

    again = run(*command, timeout=600)  # the same command picks the run up
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("continuing run")
    steps = [r["step"] for r in rows(experiment)]
    assert steps[-1] == 2000 and steps.count(50) == 1, steps  # never from step 0
    assert len({r["pid"] for r in rows(experiment)}) >= 3  # three workers ran it
    assert "sweeps training.weight_decay: the long run uses the base settings" in again.stderr
    # milestones survive checkpoint.keep = 2
    kept = sorted(p.name for p in experiment.glob("milestones/*/step_*"))
    assert kept == [f"step_{s:08d}" for s in range(500, 2001, 500)]
    trials = status("run", tmp_path)["trials"]
    assert len(trials) == 1 and trials[0]["status"] == "TERMINATED"
    assert trials[0]["config"] == {}  # one run, no swept values

    finished = run(*command)  # a finished run is not run again
    assert finished.returncode == 0 and rows(experiment)[-1]["step"] == 2000
    assert [r["step"] for r in rows(experiment)] == steps


@pytest.mark.slow
def test_ctrl_c_and_a_spent_time_budget_stop_it_resumably(cluster, tmp_path, write):
    # far more steps than any machine trains within the budgets below
    template = write("long.toml", tiny_run(1_000_000, LONG))
    command = long_command(template, cluster, tmp_path)
    experiment = tmp_path / "run"
    driver = start(*command)
    wait_until_step(experiment, 300, driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert "interrupted; continue with `arbiter long --template long.toml --name run" in output

    reached = []
    for _ in range(2):  # each session: 9 s for the trial to start and train, then a resumable stop
        budget = run(*command, "--hours", 0.0025, timeout=300)
        assert budget.returncode == 75, budget.stdout + budget.stderr
        assert "time budget spent; continue with" in budget.stdout
        reached.append(rows(experiment)[-1]["step"])
    assert 300 < reached[0] < reached[1]  # each session went on from where the last stopped
    steps = [r["step"] for r in rows(experiment)]
    assert steps.count(50) == 1, steps  # never from step 0


def test_a_long_run_refuses_a_name_that_holds_something_else(tmp_path, write):
    template = write("long.toml", tiny_run(100, LONG))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "arbiter.json").write_text(
        json.dumps(
            {
                "template": str(template),
                "sets": [],
                "template_hash": "0",
                "resolved": {},
                "gpus": 0,
                "cpus_per_trial": 1,
            }
        )
    )
    done = run("long", "--template", template, "--storage", tmp_path, "--name", "taken")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"--name taken: {tmp_path / 'taken'} holds a sweep, not a long run; "
            "choose another --name"
        )
    )
