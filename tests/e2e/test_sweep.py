"""Sweeps end to end on real Ray: a `ray start` cluster with 4 logical GPUs, and embedded Ray.

On a machine without GPUs, `--num-gpus 4` declares four logical GPUs: each trial that reserves
one gets its own id (torch still sees no CUDA and trains on the CPU). The sweeps run the real
command line in subprocesses, as a user would.
"""

from __future__ import annotations

import json
import signal
import time
from itertools import combinations
from pathlib import Path

import pytest
import torch
from helpers import run, start, status, sweep_args, tiny_run

from arbiter.config.loading import load_config
from arbiter.config.trials import plan_trials
from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows
from arbiter.tune.trainable import local_scratch, scratch_name

pytestmark = pytest.mark.slow

# tiny_run's tables for a grid of 8 trials: 4 seeds x 2 weight decays
GRID_8 = {
    "sweep": 'metric = "val/accuracy"',
    "sweep.space": '"training.seed" = [0, 1, 2, 3]\n"training.weight_decay" = [0.1, 1.0]',
}


def saved_step(meta: Path) -> int:
    """The step of a checkpoint's meta.json; -1 while Tune is still copying it into place."""
    try:
        return json.loads(meta.read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def trial_dirs(experiment: Path) -> dict[str, Path]:
    """trial id -> trial folder, read from each folder's own files (of trials that reported)."""
    return {
        rows[0]["trial_id"]: d
        for d in experiment.iterdir()
        if d.is_dir() and (rows := result_rows(Location.of(d)))
    }


def test_eight_trials_on_four_gpus(cluster, tmp_path, write):
    template = write("grid.toml", tiny_run(200, GRID_8))
    done = run(*sweep_args(template, gpus=4, address=cluster, storage=tmp_path, name="grid"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = status("grid", tmp_path)
    trials = report["trials"]
    assert len(trials) == 8 and {t["status"] for t in trials} == {"TERMINATED"}
    assert {
        (t["config"]["training.seed"], t["config"]["training.weight_decay"]) for t in trials
    } == {(s, wd) for s in range(4) for wd in (0.1, 1.0)}
    for t in trials:
        assert t["last"]["gpu_ids"] in {"0", "1", "2", "3"}  # exactly one GPU each
    # trials that ran at the same time held different GPUs, and never more than four at once
    spans = {}
    for t in trials:
        start = t["last"]["trial_start"]
        spans[t["id"]] = (start, start + t["last"]["time_total_s"], t["last"]["gpu_ids"])
    for (a0, a1, ga), (b0, b1, gb) in combinations(spans.values(), 2):
        if a0 < b1 and b0 < a1:
            assert ga != gb
    for start, _, _ in spans.values():
        assert sum(s <= start < e for s, e, _ in spans.values()) <= 4
    # status agrees with Tune's own files in each trial folder
    folders = trial_dirs(tmp_path / "grid")
    for t in trials:
        rows = result_rows(Location.of(folders[t["id"]]))
        assert t["last"]["step"] == rows[-1]["step"] == 200
        params = json.loads((folders[t["id"]] / "params.json").read_text())
        assert params == t["config"]
    assert list((tmp_path / "grid").rglob("events.out.tfevents.*"))  # TensorBoard per trial
    record = json.loads((tmp_path / "grid" / "arbiter.json").read_text())
    assert record["template_hash"] and record["resolved"]["sweep"]["space"]


def test_an_equal_budget_sweep_sizes_each_trial_in_its_worker(cluster, tmp_path, write):
    """Tune's workers get the template's run settings and a point, not the planned trials: each
    sizes its model to the budget itself, to the width the dry run plans."""
    budget = {
        "sweep": 'metric = "val/accuracy"\nbudget = { params = 5e4, head_size = 8 }',
        "sweep.space": '"model.n_layers" = [1, 3]',
    }
    template = write("budget.toml", tiny_run(50, budget))
    planned = {
        t.config.model.n_layers: t.config.model
        for t in plan_trials(load_config(template, []), str(template))
    }
    assert {n: (m.dim, m.n_heads) for n, m in planned.items()} == {1: (56, 7), 3: (32, 4)}
    done = run(*sweep_args(template, gpus=2, address=cluster, storage=tmp_path, name="budget"))
    assert done.returncode == 0, done.stdout + done.stderr
    saved = sorted((tmp_path / "budget").glob("*/checkpoint_*/"))
    assert len(saved) == 2
    for checkpoint in saved:
        model = json.loads((checkpoint / "meta.json").read_text())["config"]["model"]
        expected = planned[model["n_layers"]]
        assert (model["dim"], model["n_heads"]) == (expected.dim, expected.n_heads)
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        assert state["model"]["tok_emb.weight"].shape[1] == expected.dim


def test_existing_name_is_refused_and_untouched(cluster, tmp_path, write):
    template = write("grid.toml", tiny_run(100, GRID_8))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    done = run(
        "sweep",
        "--template",
        template,
        "--address",
        cluster,
        "--storage",
        tmp_path,
        "--name",
        "taken",
    )
    assert done.returncode == 2 and "already exists" in done.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_more_gpus_than_the_cluster_has(cluster, tmp_path, write):
    template = write("grid.toml", tiny_run(100, GRID_8))
    done = run(*sweep_args(template, gpus=5, address=cluster, storage=tmp_path, name="big"))
    assert done.returncode == 2 and "has 4 GPU(s)" in done.stderr
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_sweep_resumes_without_losing_work(cluster, tmp_path, write, sig):
    steps = 1000
    template = write("long.toml", tiny_run(steps, GRID_8))
    # Tune saves its experiment state every 10 s or more; every second here, so that the state
    # catches up with the finished trials soon before the driver is stopped
    driver = start(
        *sweep_args(template, gpus=2, address=cluster, storage=tmp_path, name="cut"),
        env={"TUNE_GLOBAL_CHECKPOINT_S": "1"},
    )
    experiment = tmp_path / "cut"
    deadline = time.monotonic() + 240
    while True:  # until two trials finished and two more are past a checkpoint
        steps_saved = [saved_step(m) for m in experiment.glob("*/checkpoint_*/meta.json")]
        if steps_saved.count(steps) >= 2 and sum(0 < s < steps for s in steps_saved) >= 2:
            break
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # trials with a checkpoint now: Tune's saved state knows of one by the time the driver is
    # stopped; a trial started later may be begun again from step 0
    checkpointed = {
        tid for tid, d in trial_dirs(experiment).items() if any(d.glob("checkpoint_*/meta.json"))
    }
    time.sleep(3)  # let Tune's saved state (synced every second) catch up
    driver.send_signal(sig)
    output, _ = driver.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert driver.returncode == 130 and "arbiter resume cut" in output, output
    scratch = local_scratch(scratch_name(Location.of(experiment)))
    if sig == signal.SIGKILL:  # the killed trials had no chance to remove their scratch folders
        assert any(scratch.iterdir())
    before = {tid: result_rows(Location.of(d)) for tid, d in trial_dirs(experiment).items()}
    finished_before = {tid for tid, rows in before.items() if rows[-1]["step"] == steps}
    assert finished_before

    storage = tmp_path
    if sig == signal.SIGINT:  # moved to another disk, say, before it is resumed
        storage = tmp_path / "moved"
        storage.mkdir()
        experiment.rename(storage / "cut")
        # Tune would create the trials not yet begun at the old place: refused, with a way out
        refused = run("resume", "cut", "--storage", storage, "--address", cluster)
        assert refused.returncode == 2 and "was started at" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        experiment.symlink_to(storage / "cut")
    resumed = run("resume", "cut", "--storage", storage, "--address", cluster, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = status("cut", storage)["trials"]
    assert len(trials) == 8 and all(t["status"] == "TERMINATED" for t in trials)
    assert not scratch.exists()  # the resumed sweep removed what the killed one left
    # the trials' folders as Tune recorded them: a trial that the killed driver had started
    # but not yet saved in its state is begun again in a new folder (the old one is left over)
    assert all(Path(t["path"]).resolve().parent == (storage / "cut").resolve() for t in trials)
    after = {t["id"]: result_rows(Location.of(t["path"])) for t in trials}
    for tid, rows in after.items():
        assert rows[-1]["step"] == steps
        logged = [r["step"] for r in rows]
        if tid in checkpointed:  # resumed from a checkpoint, never from scratch
            assert logged.count(logged[0]) == 1, f"{tid} restarted from step 0: {logged}"
    if sig == signal.SIGINT:  # finished trials are not run again after a clean interrupt
        for tid in finished_before:
            # A trial whose last report came just before the Ctrl-C may not be marked finished
            # in Tune's state: it restarts at its final checkpoint and re-reports that state
            # once, training no step again.
            assert after[tid][: len(before[tid])] == before[tid]
            assert all(r["step"] == steps for r in after[tid][len(before[tid]) :]), tid
            assert len(after[tid]) <= len(before[tid]) + 1, tid


def test_asha_stops_weak_trials_early(cluster, tmp_path, write):
    space = '"training.seed" = [0, 1, 2, 3]\n"training.learning_rate" = [1e-5, 3e-3]'
    template = write("asha.toml", tiny_run(400, GRID_8 | {"sweep.space": space}))
    done = run(
        *sweep_args(template, gpus=4, address=cluster, storage=tmp_path, name="asha"),
        "--set",
        "sweep.scheduler=asha",
        "--set",
        "sweep.asha.grace_period=50",
        "--set",
        "sweep.asha.reduction_factor=2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last_steps = [t["last"]["step"] for t in status("asha", tmp_path)["trials"]]
    assert min(last_steps) < 400 and max(last_steps) == 400


def test_pbt_exploits_and_continues_the_step_count(cluster, tmp_path, write):
    pbt = {
        "sweep": 'scheduler = "pbt"\nnum_samples = 4\nstrategy = "random"',
        "sweep.pbt": "perturbation_interval = 100\nquantile_fraction = 0.5",
        "sweep.space": '"training.learning_rate" = [1e-5, 1e-4, 1e-3, 3e-3]',
    }
    template = write("pbt.toml", tiny_run(300, pbt))
    done = run(*sweep_args(template, gpus=4, address=cluster, storage=tmp_path, name="pbt"))
    assert done.returncode == 0, done.stdout + done.stderr
    experiment = tmp_path / "pbt"
    exploits = (experiment / "pbt_global.txt").read_text().splitlines()
    assert exploits, "PBT never exploited"
    for rows in map(result_rows, trial_dirs(experiment).values()):
        steps = [r["step"] for r in rows]
        assert steps[-1] == 300
        # an exploited trial goes on from the step of the checkpoint it took, never from 0
        # (Tune may carry on an exploiting trial in a new folder: its rows start there)
        assert 50 not in steps[1:], steps


def test_quickstart_from_the_readme(tmp_path):
    """`make demo`'s sweep: the packaged quickstart on an embedded local Ray, CPU trials."""
    done = run(
        "sweep",
        "--template",
        "quickstart.toml",
        "--gpus",
        0,
        "--storage",
        tmp_path,
        "--name",
        "demo",
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "best" in done.stdout
    trials = status("demo", tmp_path)["trials"]
    assert len(trials) == 4 and all(t["status"] == "TERMINATED" for t in trials)
    assert all(t["last"]["gpu_ids"] == "" for t in trials)  # `--gpus 0`: CPU trials, no GPU
    grokked = [t for t in trials if t["last"]["val/accuracy"] >= 0.99]
    assert grokked and all(t["last"]["step"] < 3000 for t in grokked)  # the stop rule ended them
    for t in grokked:  # the grokking measures travel with the trial's results
        assert t["last"]["steps_to_fit"] <= t["last"]["steps_to_grok"] <= t["last"]["step"]
    # what the README says the demo shows: 30% of the table with weight decay 1 groks (generalises
    # 1,000+ steps after it fits), with weight decay 0.1 it does not within the budget
    point = {
        (t["config"]["data.train_fraction"], t["config"]["training.weight_decay"]): t["last"]
        for t in trials
    }
    assert point[0.3, 1.0]["steps_to_grok"] - point[0.3, 1.0]["steps_to_fit"] >= 1000
    assert point[0.3, 0.1]["val/accuracy"] < 0.5
    table = run("status", "demo", "--storage", tmp_path)
    assert "grok at" in table.stdout and str(grokked[0]["last"]["steps_to_grok"]) in table.stdout
