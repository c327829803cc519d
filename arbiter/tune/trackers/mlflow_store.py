"""MLflow: one run per trial, in a store inside the experiment (`EXP/mlflow/mlflow.db`, SQLite:
no server needed, `arbiter ui NAME` shows it) unless MLFLOW_TRACKING_URI names another.

Ray Tune's MLflowLoggerCallback does the logging; this subclass puts the store and its artifacts
in the experiment, logs at the model's step rather than Tune's report count, and keeps one run
per trial across `arbiter resume` (a resumed driver finds a trial's run by its trial id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from arbiter.experiments.location import Location
from arbiter.tune.trackers import MLFLOW_FOLDER, mlflow_store_uri
from arbiter.tune.trackers.rows import tracked

TRIAL_TAG = "arbiter.trial_id"


def mlflow_callback(experiment: Location) -> MLflowLoggerCallback:
    return ArbiterMLflowCallback(
        tracking_uri=mlflow_store_uri(experiment),
        experiment_name=experiment.name,
        tags={"arbiter.experiment": experiment.uri},
        artifacts=None if experiment.remote else experiment.local / MLFLOW_FOLDER / "artifacts",
    )


class ArbiterMLflowCallback(MLflowLoggerCallback):
    def __init__(self, *args: Any, artifacts: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.artifacts = artifacts

    def setup(self, *args: Any, **kwargs: Any) -> None:
        import mlflow

        if self.artifacts is not None:  # a local store: it and its artifacts in the experiment
            self.artifacts.mkdir(parents=True, exist_ok=True)
            client = mlflow.MlflowClient(self.tracking_uri)
            if client.get_experiment_by_name(self.experiment_name) is None:
                client.create_experiment(
                    self.experiment_name, artifact_location=self.artifacts.as_uri()
                )
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs:  # a resumed sweep: the trial's earlier run goes on
            earlier = self._earlier_run(trial.trial_id)
            if earlier is not None:
                self._trial_runs[trial] = earlier
        self.tags = {**self.tags, TRIAL_TAG: trial.trial_id}
        super().log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        super().log_trial_result(iteration, trial, tracked(result))

    def _earlier_run(self, trial_id: str) -> str | None:
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        found = client.get_experiment_by_name(self.experiment_name)
        if found is None:
            return None
        runs = client.search_runs(
            [found.experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}'"
        )
        return runs[0].info.run_id if runs else None
