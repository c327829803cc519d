"""`arbiter ui NAME`: the MLflow UI of an experiment's runs (`logging.trackers = ["mlflow"]`),
served on 127.0.0.1 from the experiment's own store, or from MLFLOW_TRACKING_URI's server."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from arbiter.commands.exit_codes import ExitCode
from arbiter.errors import UserError
from arbiter.experiments.record import read_record
from arbiter.experiments.storage import find_experiment
from arbiter.tune.trackers import MLFLOW_DATABASE, MLFLOW_FOLDER, installed, mlflow_store_uri


def ui(experiment: str, storage: str | None, port: int = 5000, print_only: bool = False) -> int:
    path = find_experiment(experiment, storage)
    if "mlflow" not in read_record(path).config.logging.trackers:
        raise UserError(
            f"{path}: has no MLflow runs: its sweep did not name 'mlflow' in logging.trackers "
            "(--set 'logging.trackers=[\"mlflow\"]' on the next sweep)"
        )
    if os.environ.get("MLFLOW_TRACKING_URI"):  # the runs are on a server with its own UI
        print(f"{path.name}'s runs are in MLflow at {os.environ['MLFLOW_TRACKING_URI']}")
        return ExitCode.DONE
    if path.remote or not (path.local / MLFLOW_FOLDER / MLFLOW_DATABASE).is_file():
        raise UserError(
            f"{path}: its MLflow store is not here (a local experiment keeps it in "
            f"{MLFLOW_FOLDER}/{MLFLOW_DATABASE}; one in object storage logs to "
            "MLFLOW_TRACKING_URI's server)"
        )
    command = [
        *(sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", mlflow_store_uri(path)),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    if print_only or not installed("mlflow"):
        if not print_only:
            print("mlflow is not installed here (pip install 'arbiter[mlflow]'); its command:")
        print(shlex.join(command))
        return ExitCode.DONE
    print(f"MLflow UI of {path.name}: http://127.0.0.1:{port}  (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.run(command).returncode
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
