"""Sweeps on Ray Tune: connect to Ray, build the Tuner from a template, run or restore it.

One trial per GPU (`--gpus N`: each trial reserves one GPU, at most N at once), or per CPU slot
with `--gpus 0`. Everything the user can get wrong is checked before a trial starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbiter.config import Config, SweepConfig
from arbiter.errors import UserError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# In an experiment folder: copies of milestone checkpoints (Tune prunes its own to
# checkpoint.keep), and a long run's start times (its back-off after repeated failures).
MILESTONES = "milestones"
ATTEMPTS = "attempts.json"
TIME_ATTR = "step"  # schedulers measure progress in optimizer steps, not Tune iterations
# Tune's newer console output prints its own banner and tables even at verbose=0; the legacy
# engine is silent at 0, leaving the terminal to SweepProgress.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Tune warns when checkpoints come faster than its state snapshots; frequent checkpoints of
# small models are a choice here, and the warning would flood the sweep's terminal.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@dataclass(frozen=True)
class Placement:
    """Where trials run: how many GPUs (0: CPU trials) and CPUs each trial reserves."""

    gpus: int
    cpus_per_trial: int

    def resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": 1 if self.gpus else 0}


def connect(address: str | None, gpus: int | None, dashboard_host: str) -> int:
    """Start an embedded local Ray (address None) or join a cluster; return the GPUs to use."""
    if address is None:
        from arbiter.core.hardware import visible_gpus

        present = len(visible_gpus())
        if gpus is not None and gpus > present:
            raise UserError(
                f"--gpus {gpus}: this machine has {present} GPU(s); ask for at most {present}, "
                "or join a cluster with --address"
            )
        # "local": a new Ray for this sweep, never a `ray start` cluster found on the machine
        _init(address="local", include_dashboard=True, dashboard_host=dashboard_host)
        return present if gpus is None else gpus
    _check_reachable(address)
    _use_token_if_available()
    ray = _init(address=address)
    cluster = int(ray.cluster_resources().get("GPU", 0))
    if gpus is not None and gpus > cluster:
        ray.shutdown()
        raise UserError(f"--gpus {gpus}: the cluster at {address} has {cluster} GPU(s)")
    return cluster if gpus is None else gpus


def warn_if_storage_is_local(storage: Path) -> None:
    """Warn when the joined cluster spans several machines (see `storage_warning`)."""
    import ray

    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    warning = storage_warning(storage, ray.util.get_node_ip_address(), hosts)
    if warning:
        log.warning("%s", warning)


def storage_warning(storage: Path, here: str, hosts: set[str]) -> str | None:
    """Ray does not copy trial files to the head node: on a cluster spanning several machines,
    `--storage` must be a shared file system mounted at the same path on every one of them."""
    machines = hosts | {here}
    if len(machines) == 1:
        return None
    return (
        f"the cluster spans {len(machines)} machines: --storage {storage} must be the same "
        "shared folder on each (NFS, a mounted bucket); a folder local to one machine loses the "
        "checkpoints and results of trials that run elsewhere"
    )


def _check_reachable(address: str) -> None:
    """A HOST:PORT where nothing answers is an error within seconds: `ray.init` would retry
    for a minute or more. (`auto` and `ray://` addresses are left to Ray.)"""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address:
        return
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head` or check the address"
        ) from None


def _use_token_if_available() -> None:
    """Ray 2.60 clusters use token authentication, and a client must opt in before it imports
    ray (later, `ray.init` hangs and fails). A client in token mode also joins a cluster
    without authentication, so opting in whenever a token is at hand is safe."""
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or token_file.is_file()
    if "RAY_AUTH_MODE" not in os.environ and has_token and "ray" not in sys.modules:
        os.environ["RAY_AUTH_MODE"] = "token"


def _init(**kwargs: Any) -> Any:
    import ray

    try:
        info = ray.init(
            logging_level=logging.WARNING,
            log_to_driver=False,  # trial logs stay in the dashboard and the session folder
            **kwargs,
        )
    except ConnectionError as exc:
        raise UserError(f"--address {kwargs['address']}: cannot connect to Ray: {exc}") from None
    except Exception as exc:
        if type(exc).__name__ != "AuthenticationError":
            raise
        raise UserError(
            f"--address {kwargs['address']}: the cluster refused this client's token; put the "
            "cluster's token (`ray get-auth-token` on its head) in ~/.ray/auth_token and set "
            "RAY_AUTH_MODE=token"
        ) from None
    url = getattr(info, "dashboard_url", None)
    if url:
        log.info("Ray dashboard: http://%s (token: `ray get-auth-token`)", url)
        host = kwargs.get("dashboard_host", "127.0.0.1")
        if host not in ("127.0.0.1", "localhost"):
            log.warning("the dashboard listens on %s: whoever reaches it sees the cluster", host)
    return ray


def build_tuner(
    path: Path, config: Config, placement: Placement, restore: bool = False, long: bool = False
) -> Any:
    """The Tuner for a new experiment at `path`, or the restored one.

    `long`: the one trial of `arbiter long`, retried without limit (with a back-off) and
    reporting its progress as steps and an ETA.
    """
    from ray import tune

    from arbiter.space import to_param_space
    from arbiter.sweep_progress import LongProgress, SweepProgress
    from arbiter.trainable import run_trial, scratch_name

    sweep = config.sweep
    assert sweep is not None
    milestones = path / MILESTONES if config.checkpoint.milestone_interval else None
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=config.run_settings(),
            cpus=placement.cpus_per_trial,
            scratch=scratch_name(path),
            milestones=str(milestones) if milestones else None,
            attempts=str(path / ATTEMPTS) if long else None,
        ),
        placement.resources(),
    )
    progress = (
        LongProgress(sweep.metric, sweep.mode, config.training.steps)
        if long
        else SweepProgress(sweep.metric, sweep.mode)
    )
    if restore:
        return tune.Tuner.restore(
            str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    return tune.Tuner(
        trainable,
        param_space=to_param_space(sweep.axes(), sweep.strategy),
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode=sweep.mode,
            num_samples=sweep.num_samples,
            search_alg=search_alg(sweep),
            scheduler=_scheduler(sweep, config),
            max_concurrent_trials=placement.gpus or None,
            # A new trial reuses a finished trial's worker (same resources): no process start,
            # no imports. Safe here: every trial seeds its RNGs and builds its run afresh.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=path.name,
            storage_path=str(path.parent),
            stop=_stopper(sweep),
            # -1: without limit (Tune's convention)
            failure_config=tune.FailureConfig(max_failures=-1 if long else sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=_checkpoints_kept(config)),
            verbose=0,
            callbacks=[progress],
        ),
    )


def fit(tuner: Any, path: Path) -> None:
    """Run the experiment at `path` to its end (or its interruption), then remove its trials'
    scratch folders on this node, those a killed sweep left included."""
    from arbiter.trainable import local_scratch, scratch_name

    try:
        tuner.fit()
    finally:
        shutil.rmtree(local_scratch(scratch_name(path)), ignore_errors=True)


def _checkpoints_kept(config: Config) -> int | None:
    """checkpoint.keep, except under PBT: an exploit restores a donor's checkpoint after the
    donor has gone on training, and a pruned donor checkpoint fails the exploiting trial."""
    assert config.sweep is not None
    return None if config.sweep.scheduler == "pbt" else config.checkpoint.keep


def search_alg(sweep: SweepConfig) -> Any:
    if sweep.strategy != "optuna":
        return None
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise UserError("sweep.strategy: 'optuna' needs `pip install 'arbiter[optuna]'`") from None
    return OptunaSearch(seed=sweep.seed)


def _scheduler(sweep: SweepConfig, config: Config) -> Any:
    from ray.tune import schedulers

    if sweep.scheduler == "asha":
        return schedulers.ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=config.training.steps,
            grace_period=sweep.asha.grace_period,
            reduction_factor=sweep.asha.reduction_factor,
        )
    if sweep.scheduler == "median":
        return schedulers.MedianStoppingRule(
            time_attr=TIME_ATTR,
            grace_period=sweep.median.grace_period,
            min_samples_required=sweep.median.min_samples_required,
        )
    if sweep.scheduler == "pbt":
        from arbiter.space import Grid, to_param_space

        axes = sweep.axes()
        mutations = to_param_space(axes, "random")
        for key, axis in axes.items():
            if isinstance(axis, Grid):
                mutations[key] = list(axis.values)  # PBT perturbs lists by moving to a neighbour
        return schedulers.PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=sweep.pbt.perturbation_interval,
            hyperparam_mutations=mutations,
            quantile_fraction=sweep.pbt.quantile_fraction,
            resample_probability=sweep.pbt.resample_probability,
        )
    if sweep.scheduler == "grokking":
        from arbiter.grokking_scheduler import GrokkingScheduler

        return GrokkingScheduler(sweep.grokking, time_attr=TIME_ATTR)
    return None  # fifo: Tune's default


def _stopper(sweep: SweepConfig) -> Any:
    if sweep.stop is None:
        return None
    from arbiter.stopper import HeldTarget

    rule = sweep.stop
    return HeldTarget(rule.metric or sweep.metric, rule.threshold, rule.patience, sweep.mode)
