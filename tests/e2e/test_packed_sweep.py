"""Several trials per GPU on a real Ray cluster with 2 logical GPUs and 8 CPUs: `--gpus 2
--trials-per-gpu 4` runs an 8-trial grid at once, every trial on exactly one GPU id and never
more than 4 on one; `auto` measures the GPUs' memory and says in one line that logical GPUs
have none to measure."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import pytest
from helpers import run, start_ray_head, status, stop_ray_head, sweep_args, tiny_run

pytestmark = pytest.mark.slow

GRID = tiny_run(
    400,
    {
        "sweep": 'metric = "val/accuracy"',
        "sweep.space": '"training.seed" = [0, 1, 2, 3]\n"training.weight_decay" = [0.1, 1.0]',
    },
)


@pytest.fixture(scope="module")
def two_gpus():
    head, address = start_ray_head(num_cpus=8, num_gpus=2)
    yield address
    stop_ray_head(head)


def test_four_trials_per_gpu_run_eight_at_once_each_on_one_gpu(two_gpus, tmp_path, write):
    template = write("grid.toml", GRID)
    args = sweep_args(template, gpus=2, address=two_gpus, storage=tmp_path, name="packed")
    done = run(*args, "--trials-per-gpu", "4", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 trial(s) on 2 GPU(s), 4 trials per GPU (8 at once)" in done.stdout

    trials = status("packed", tmp_path)["trials"]
    assert len(trials) == 8 and all(t["status"] == "TERMINATED" for t in trials)
    gpus = [t["last"]["gpu_ids"] for t in trials]
    assert all(g in {"0", "1"} for g in gpus), gpus  # one GPU id each, never two
    assert Counter(gpus) == {"0": 4, "1": 4}
    spans = [
        (t["last"]["trial_start"], t["last"]["trial_start"] + t["last"]["time_total_s"])
        for t in trials
    ]
    # all eight ran at once: every two trials overlap in time
    assert all(a0 < b1 and b0 < a1 for (a0, a1), (b0, b1) in combinations(spans, 2))
    record = json.loads((tmp_path / "packed" / "arbiter.json").read_text())
    assert record["trials_per_gpu"] == 4  # what `resume` packs with

    shown = run("status", "packed", "--storage", tmp_path)
    header = shown.stdout.splitlines()[1].split()
    assert header[-1] == "gpu" and shown.stdout.count(" 0 ") >= 4


def test_auto_on_logical_gpus_is_one_line_before_the_sweep_starts(two_gpus, tmp_path, write):
    template = write("grid.toml", GRID)
    args = sweep_args(template, gpus=2, address=two_gpus, storage=tmp_path, name="auto")
    done = run(*args, "--trials-per-gpu", "auto")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "not CUDA devices (logical GPUs?)" in done.stderr
    assert not (tmp_path / "auto").exists()
