"""Experiment trackers end to end: one sweep of 6 trials with `logging.trackers = ["mlflow",
"wandb", "aim"]` (W&B offline) on the shared Ray cluster gives one run per trial in each,
read back with each tracker's own client; `arbiter ui` serves the MLflow store, and headless
Chromium (the system's, driven by Playwright) shows its runs, parameters and accuracy chart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, arbiter, free_port, run, start, sweep_args, tiny_run

pytestmark = pytest.mark.slow

SEEDS_BY_DECAY = {
    "sweep": 'metric = "val/accuracy"',
    "sweep.space": '"training.seed" = [1, 2, 3]\n"training.weight_decay" = [0.1, 1.0]',
    "logging": 'trackers = ["mlflow", "wandb", "aim"]',
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The browser test's screenshot is kept here (CI keeps the folder as an artifact).
ARTIFACTS = Path(os.environ.get("ARBITER_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def tracked(cluster, tmp_path_factory) -> Path:
    """The finished sweep's experiment folder."""
    storage = tmp_path_factory.mktemp("tracked")
    template = storage / "seeds.toml"
    template.write_text(tiny_run(100, SEEDS_BY_DECAY))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        args = sweep_args(template, gpus=4, address=cluster, storage=storage, name="seeds")
        done = run(*args, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return storage / "seeds"


def trial_ids(experiment: Path) -> set[str]:
    rows = json.loads(run("status", experiment, "--json").stdout)["trials"]
    return {t["id"] for t in rows}


def test_mlflow_has_one_run_per_trial_with_its_values_and_metrics(tracked) -> None:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tracked / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("seeds")
    assert experiment.artifact_location == (tracked / "mlflow" / "artifacts").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["arbiter.trial_id"] for r in runs} == trial_ids(tracked)
    assert {
        (r.data.params["training.seed"], r.data.params["training.weight_decay"]) for r in runs
    } == {(s, wd) for s in "123" for wd in ("0.1", "1.0")}
    for r in runs:
        assert r.info.status == "FINISHED"
        history = client.get_metric_history(r.info.run_id, "val/accuracy")
        assert {m.step for m in history} == {50, 100}  # at the model's steps, as evaluated
        assert all(0 <= m.value <= 1 for m in history)
        assert "train/loss" in r.data.metrics
        assert not any(k.startswith("config/") or k == "pid" for k in r.data.metrics)


def test_wandb_offline_and_aim_keep_one_run_per_trial_in_the_experiment(tracked) -> None:
    offline = sorted((tracked / "wandb" / "wandb").glob("offline-run-*"))
    assert {folder.name.rsplit("-", 1)[-1] for folder in offline} == trial_ids(tracked)
    listed = subprocess.run(
        [Path(sys.executable).parent / "aim", "runs", "--repo", tracked / "aim", "ls"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "Total 6 runs." in listed.stdout


def test_no_tracker_chatter_reaches_the_terminal(cluster, tmp_path) -> None:
    """A sweep's terminal shows the sweep: not MLflow's database migrations or Aim's threads."""
    template = tmp_path / "one.toml"
    one = {**SEEDS_BY_DECAY, "sweep.space": '"training.seed" = [1]'}
    template.write_text(tiny_run(50, one))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        done = run(*sweep_args(template, gpus=1, address=cluster, storage=tmp_path, name="one"))
    assert done.returncode == 0, done.stderr[-3000:]
    for chatter in ("Creating initial MLflow database tables", "RunStatusReporter"):
        assert chatter not in done.stdout + done.stderr


def mlflow_runs(experiment: Path) -> dict[str, Any]:
    """trial id -> its MLflow run, read with MLflow's own client from the experiment's store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{experiment / 'mlflow' / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment.name)
    runs = client.search_runs([found.experiment_id]) if found else []
    return {r.data.tags["arbiter.trial_id"]: r for r in runs}


def test_a_resumed_sweep_goes_on_in_each_trials_mlflow_run(cluster, tmp_path) -> None:
    steps = 3000
    template = tmp_path / "two.toml"
    tables = {
        "sweep": 'metric = "val/accuracy"',
        "sweep.space": '"training.seed" = [1, 2]',
        "logging": 'trackers = ["mlflow"]',
        "checkpoint": "interval = 500",
    }
    template.write_text(tiny_run(steps, tables))
    driver = start(
        *sweep_args(template, gpus=1, address=cluster, storage=tmp_path, name="cut"),
        env={"TUNE_GLOBAL_CHECKPOINT_S": "1"},  # Tune's state follows the trials closely
    )
    experiment = tmp_path / "cut"
    deadline = time.monotonic() + 300
    while not any(
        500 <= json.loads(meta.read_text())["step"] < steps
        for meta in experiment.glob("*/checkpoint_*/meta.json")
    ):
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    before = {trial: run.info.run_id for trial, run in mlflow_runs(experiment).items()}
    assert before  # the trial under way has its run

    resumed = run("resume", "cut", "--storage", tmp_path, "--address", cluster, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = mlflow_runs(experiment)
    assert set(after) == trial_ids(experiment)  # one run per trial, none begun twice
    assert all(after[trial].info.run_id == run_id for trial, run_id in before.items())
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{experiment / 'mlflow' / 'mlflow.db'}")
    for r in after.values():
        assert r.info.status == "FINISHED"
        history = client.get_metric_history(r.info.run_id, "val/accuracy")
        assert max(m.step for m in history) == steps


def wait_for_http(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_the_mlflow_ui_in_chromium_shows_every_trial_its_values_and_accuracy(tracked) -> None:
    if CHROMIUM is None:
        pytest.skip("no Chromium here: apt-get install chromium (CI installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    port = free_port()
    server = subprocess.Popen(
        [*arbiter("ui", tracked, "--port", str(port))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base, server)
        found = f"{base}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=seeds"
        with urllib.request.urlopen(found) as answer:
            experiment = json.load(answer)["experiment"]["experiment_id"]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/#/experiments/{experiment}/runs")
            for trial in trial_ids(tracked):  # one row per trial, named after it
                page.get_by_text(f"run_trial_{trial}", exact=True).wait_for(timeout=60_000)
            page.get_by_text(f"run_trial_{min(trial_ids(tracked))}", exact=True).click()
            page.get_by_text("training.weight_decay", exact=True).wait_for(timeout=60_000)
            page.get_by_text("Model metrics", exact=True).click()
            page.get_by_placeholder("Search metric charts").fill("val/accuracy")
            page.get_by_text("(val/accuracy)").first.wait_for(timeout=60_000)  # the legend
            page.get_by_text("Step", exact=True).first.wait_for(timeout=60_000)  # drawn: its axis
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "mlflow_ui_val_accuracy.png"
            page.screenshot(path=shot)
            browser.close()
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
