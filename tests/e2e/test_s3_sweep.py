"""A sweep whose experiment lives in a real S3 server (moto's): trials' results and checkpoints
reach the bucket, nothing lands in a local results folder, `status --json` and `report` read it
from the bucket, and `sweep --resume-if-exists` resumes it instead of refusing the name."""

from __future__ import annotations

import json

import pytest
from helpers import run, sweep_args, tiny_run

pytestmark = pytest.mark.slow

SPACE = {
    "sweep": 'metric = "val/accuracy"\nmode = "max"',
    "sweep.space": '"training.learning_rate" = [1e-3, 3e-3]',
}


def test_a_sweep_in_s3_is_read_back_and_resumed_if_it_exists(
    cluster, write, s3, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    template = write("t.toml", tiny_run(100, SPACE))
    args = sweep_args(template, gpus=0, address=cluster, storage=s3.uri(), name="exp")
    done = run(*args, "--resume-if-exists")
    assert done.returncode == 0, done.stderr[-3000:]
    keys = s3.keys("experiments/exp/")
    assert "experiments/exp/arbiter.json" in keys and "experiments/exp/tuner.pkl" in keys
    for trial in {k.split("/")[2] for k in keys if k.split("/")[2].startswith("run_trial_")}:
        assert f"experiments/exp/{trial}/result.json" in keys
        assert any(k.startswith(f"experiments/exp/{trial}/checkpoint_") for k in keys), trial
    assert not any(k.endswith("lease.json") for k in keys), "the lease is released at the end"

    shown = run("status", "exp", "--storage", s3.uri(), "--json")
    assert shown.returncode == 0, shown.stderr
    trials = json.loads(shown.stdout)["trials"]
    assert [t["status"] for t in trials] == ["TERMINATED"] * 2
    assert all(t["path"].startswith(f"s3://{s3.bucket}/experiments/exp/") for t in trials)
    assert all(t["last"]["step"] == 100 for t in trials)

    report = run("report", "exp", "--storage", s3.uri())
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "exp-report" / "summary.md").is_file()

    again = run(*args, "--resume-if-exists")  # a requeued job: resumes, trains nothing again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming exp" in again.stdout
    assert (
        json.loads(run("status", "exp", "--storage", s3.uri(), "--json").stdout)["trials"] == trials
    )

    other = write("other.toml", tiny_run(200, SPACE))
    refused = run(
        *sweep_args(other, gpus=0, address=cluster, storage=s3.uri(), name="exp"),
        "--resume-if-exists",
    )
    assert refused.returncode == 2 and "holds another experiment" in refused.stderr
