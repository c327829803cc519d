"""`[logging] trackers` before anything starts: a tracker that is not installed or has nowhere to
write is one line and exit 2, and `arbiter ui` finds an experiment's MLflow store (the runs
themselves: tests/e2e/test_trackers.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import tiny_run

from arbiter.config.schema import Config
from arbiter.errors import UserError
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record
from arbiter.experiments.storage import new_experiment
from arbiter.tune.trackers import check_trackers

# The command line with one package made unimportable, as where its extra is not installed;
# says on stdout whether Ray was imported.
WITHOUT = """
import sys
sys.modules[sys.argv[1]] = None
from arbiter.cli import main
code = main(sys.argv[2:])
print("ray imported" if "ray" in sys.modules else "ray not imported")
sys.exit(code)
"""
TRACKED = {"sweep.space": '"training.seed" = [1, 2]', "logging": 'trackers = ["mlflow", "aim"]'}


def test_a_tracker_that_is_not_installed_is_one_line_before_ray_starts(tmp_path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(tiny_run(50, TRACKED))
    storage = tmp_path / "experiments"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT, "aim", "sweep", "--template", template, "--gpus", "0"]
        + ["--storage", storage, "--name", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("arbiter: error: logging.trackers: 'aim' is not installed")
    assert "pip install 'arbiter[aim]'" in done.stderr
    assert done.stdout.strip() == "ray not imported"
    assert not (storage / "x").exists()


def test_mlflow_needs_a_server_for_an_experiment_in_object_storage(s3, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bucket = Location.of(s3.uri())
    with pytest.raises(UserError, match="set MLFLOW_TRACKING_URI to a tracking server"):
        check_trackers(["mlflow"], bucket)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    check_trackers(["mlflow"], bucket)
    check_trackers(["mlflow"], Location.of("experiments"))  # a local one keeps its own store


def test_wandb_needs_a_key_or_offline_mode(tmp_path, monkeypatch) -> None:
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no `wandb login` netrc entry
    local = Location.of(tmp_path)
    with pytest.raises(UserError, match="'wandb' has no API key.*WANDB_MODE=offline"):
        check_trackers(["wandb"], local)
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_trackers(["wandb"], local)
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k3y\n")
    (tmp_path / ".netrc").chmod(0o600)
    check_trackers(["wandb"], local)  # `wandb login` wrote the key


def experiment(folder, trackers: list[str]) -> None:
    """An experiment as `arbiter sweep` starts it (its record), of a sweep with `trackers`."""
    config = Config.model_validate(
        {"logging": {"trackers": trackers}, "sweep": {"space": {"training.seed": [1]}}}
    )
    record = Record("t.toml", [], "0", config.model_dump(mode="json"), 0, 1)
    folder.parent.mkdir(parents=True, exist_ok=True)
    new_experiment(Location.of(folder.parent), folder.name, record)


def test_ui_prints_the_mlflow_command_of_the_experiments_own_store(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    experiment(tmp_path / "exp" / "seeds", ["mlflow"])
    store = tmp_path / "exp" / "seeds" / "mlflow" / "mlflow.db"
    code, _, err = cli("ui", "seeds", "--storage", tmp_path / "exp", "--print")
    assert code == 2 and f"{tmp_path / 'exp' / 'seeds'}: its MLflow store is not here" in err
    store.parent.mkdir()
    store.write_bytes(b"")
    code, out, err = cli("ui", "seeds", "--storage", tmp_path / "exp", "--print", "--port", "5123")
    assert code == 0, err
    assert out.split()[1:] == [
        *("-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store}"),
        *("--host", "127.0.0.1", "--port", "5123", "--workers", "1"),
    ]


def test_ui_of_a_sweep_without_mlflow_is_one_line(cli, tmp_path) -> None:
    experiment(tmp_path / "exp" / "plain", [])
    code, _, err = cli("ui", "plain", "--storage", tmp_path / "exp")
    assert code == 2
    assert "has no MLflow runs: its sweep did not name 'mlflow' in logging.trackers" in err
    assert err.strip().count("\n") == 0


def test_trackers_are_named_once_each_from_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'mlflow' is named twice"):
        Config.model_validate({"logging": {"trackers": ["mlflow", "mlflow"]}})
    with pytest.raises(ValueError, match="'mlflow', 'wandb' or 'aim'"):
        Config.model_validate({"logging": {"trackers": ["neptune"]}})
    assert json.loads(Config().model_dump_json())["logging"]["trackers"] == []
