"""`arbiter extend` end to end on the shared Ray cluster: a finished 400-step sweep of 6 trials
continued to 800 steps as a new experiment (each trial from its parent's checkpoint), and
extended by new seeds (only those start from step 0); the parent's files are never touched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import run, status, sweep_args, tiny_run

from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows

pytestmark = pytest.mark.slow

SEEDS = '"training.seed" = [1, 2, 3]\n"training.weight_decay" = [0.1, 1.0]'


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` and the hash of its bytes."""
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def steps_by_point(experiment: Path) -> dict[tuple, tuple[int, int]]:
    """(seed, weight decay) -> the first and the last step its trial reported."""
    found = {}
    for trial in status(experiment.name, experiment.parent)["trials"]:
        rows = result_rows(Location.of(trial["path"]))
        point = (trial["config"]["training.seed"], trial["config"]["training.weight_decay"])
        found[point] = (rows[0]["step"], rows[-1]["step"])
    return found


@pytest.fixture(scope="module")
def parent(cluster, tmp_path_factory) -> Path:
    """A finished sweep of 6 trials, 400 steps each, checkpointed every 100."""
    storage = tmp_path_factory.mktemp("extend")
    template = storage / "seeds.toml"
    tables = {"sweep": 'metric = "val/accuracy"', "sweep.space": SEEDS}
    template.write_text(tiny_run(400, {**tables, "checkpoint": "interval = 100"}))
    done = run(*sweep_args(template, gpus=4, address=cluster, storage=storage, name="par"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return storage / "par"


def test_more_steps_continue_every_trial_from_its_checkpoint(cluster, parent) -> None:
    before = fingerprint(parent)
    args = ["--storage", parent.parent, "--address", cluster, "--gpus", "4"]
    done = run("extend", "par", "--name", "par2", "--set", "training.steps=800", *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "6 of 6 trial(s) continue from its checkpoints, with training.steps=800" in done.stdout
    child = parent.parent / "par2"
    steps = steps_by_point(child)
    assert len(steps) == 6
    assert all(first > 400 and last == 800 for first, last in steps.values()), steps
    assert fingerprint(parent) == before  # the parent is only read
    record = json.loads((child / "arbiter.json").read_text())
    assert record["parent"] == {"experiment": str(parent), "changed": {"training.steps": 800}}
    shown = run("status", "par2", "--storage", parent.parent)
    assert f"extends {parent} with training.steps=800" in shown.stdout


def test_a_larger_space_starts_only_the_new_points(cluster, parent) -> None:
    space = '{"training.seed" = [1, 2, 3, 4], "training.weight_decay" = [0.1, 1.0]}'
    args = ["--storage", parent.parent, "--address", cluster, "--gpus", "4"]
    sets = ["--set", f"sweep.space={space}", "--set", "training.steps=600"]
    done = run("extend", "par", "--name", "more", *sets, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "6 of 8 trial(s) continue" in done.stdout
    steps = steps_by_point(parent.parent / "more")
    assert len(steps) == 8
    for (seed, _), (first, last) in steps.items():
        assert last == 600
        if seed == 4:  # new: from step 0, its first report at the first log interval
            assert first == 50
        else:  # the parent's point goes on after its step 400
            assert first > 400
