"""`[logging] trackers`: one run per trial in MLflow, Weights & Biases or Aim, through Ray Tune's
own logger callbacks (`tracker_callbacks`), with the swept values as the run's parameters and
every reported metric, live, on the model's step.

Each tracker is an optional extra. `check_trackers` runs before Ray starts: a tracker named but
not installed, or one that has nowhere to write, is one line and exit 2. The trackers' own
modules import their packages (and Ray's integrations of them) only when a sweep names them.
"""

from __future__ import annotations

import importlib.util
import logging
import netrc
import os
from typing import Any

from arbiter.errors import UserError
from arbiter.experiments.location import Location

# The module each tracker's extra installs.
MODULES = {"mlflow": "mlflow", "wandb": "wandb", "aim": "aim"}
# MLflow's store in a local experiment: a SQLite database, and the artifacts beside it.
MLFLOW_FOLDER = "mlflow"
MLFLOW_DATABASE = "mlflow.db"


def installed(name: str) -> bool:
    """Whether tracker `name`'s package can be imported (a module blocked in sys.modules is not)."""
    try:
        return importlib.util.find_spec(MODULES[name]) is not None
    except ValueError:
        return False


def mlflow_store_uri(experiment: Location) -> str:
    """The tracking URI of `experiment`'s MLflow runs: MLFLOW_TRACKING_URI, else its own store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(experiment.local / MLFLOW_FOLDER / MLFLOW_DATABASE).resolve()}"


def check_trackers(trackers: list[str], experiments: Location) -> None:
    """Every tracker in `trackers` can log for an experiment under `experiments`, or UserError."""
    for name in trackers:
        if not installed(name):
            raise UserError(
                f"logging.trackers: '{name}' is not installed; install it with "
                f"`pip install 'arbiter[{name}]'` (or leave it out of logging.trackers)"
            )
    if "mlflow" in trackers and experiments.remote and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise UserError(
            f"logging.trackers: 'mlflow' keeps its store in the experiment's folder, which "
            f"{experiments.uri} cannot hold (a database file); set MLFLOW_TRACKING_URI to a "
            "tracking server for an experiment in object storage"
        )
    if "wandb" in trackers and not _wandb_can_log():
        raise UserError(
            "logging.trackers: 'wandb' has no API key: set WANDB_API_KEY or run `wandb login`, "
            "or set WANDB_MODE=offline to keep the runs in the experiment's wandb/ folder"
        )


def tracker_callbacks(trackers: list[str], experiment: Location) -> list[Any]:
    """Ray Tune logger callbacks that write `experiment`'s trials to each of `trackers`."""
    callbacks = []
    for name in trackers:
        # Their INFO lines (database migrations, writer threads) are not news of the sweep. After
        # the import: MLflow sets its own logger's level when it is imported.
        importlib.import_module(MODULES[name])
        logging.getLogger(MODULES[name]).setLevel(logging.WARNING)
        if name == "mlflow":
            from arbiter.tune.trackers.mlflow_store import mlflow_callback

            callbacks.append(mlflow_callback(experiment))
        elif name == "wandb":
            from arbiter.tune.trackers.wandb_runs import wandb_callback

            callbacks.append(wandb_callback(experiment))
        else:
            from arbiter.tune.trackers.aim_repo import aim_callback

            callbacks.append(aim_callback(experiment))
    return callbacks


def _wandb_can_log() -> bool:
    """Offline, disabled, or a key W&B will find (its variable or `wandb login`'s netrc entry)."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False
