"""The Ray Tune Tuner of an experiment: built from a template, or restored, and run.

One trial per GPU (`--gpus N`: each trial reserves one GPU, at most N at once), or per CPU slot
with `--gpus 0`. Everything the user can get wrong is checked before a trial starts.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import Any

from arbiter.config.schema import Config, SweepConfig
from arbiter.experiments.location import Location
from arbiter.tune.packing import gpu_share

log = logging.getLogger(__name__)

# In an experiment folder: copies of milestone checkpoints (Tune prunes its own to
# checkpoint.keep), and a long run's start times (its back-off after repeated failures).
MILESTONES = "milestones"
ATTEMPTS = "attempts.json"
TIME_ATTR = "step"  # schedulers measure progress in optimizer steps, not Tune iterations


@dataclass(frozen=True)
class Placement:
    """Where trials run: how many GPUs (0: CPU trials), how many trials share each GPU, and
    the CPUs each trial reserves."""

    gpus: int
    cpus_per_trial: int
    trials_per_gpu: int = 1

    def resources(self) -> dict[str, float]:
        gpu = gpu_share(self.trials_per_gpu) if self.gpus else 0
        return {"cpu": self.cpus_per_trial, "gpu": gpu}

    @property
    def slots(self) -> int | None:
        """Trials at once: every share of every GPU; None for CPU trials (as many as fit)."""
        return self.gpus * self.trials_per_gpu or None


def build_tuner(
    path: Location,
    config: Config,
    placement: Placement,
    restore: bool = False,
    long: bool = False,
    starts: dict[str, str] | None = None,
) -> Any:
    """The Tuner for a new experiment at `path`, or the restored one.

    `starts`: an extended experiment's points that begin from its parent's checkpoints
    (`run_trial`). `long`: the one trial of `arbiter long`, retried without limit (with a
    back-off) and reporting its progress as steps and an ETA. In object storage, Tune and the
    trials write through a filesystem that retries for minutes (`Location.patient`): a store
    that is away for a while delays them rather than failing them. Kept whole: it reads as one
    Tune declaration.
    """
    from ray import tune

    from arbiter.tune.notify import Notifier, notify_urls
    from arbiter.tune.progress import LongProgress, SweepProgress
    from arbiter.tune.search_space import to_param_space
    from arbiter.tune.trackers import tracker_callbacks
    from arbiter.tune.trainable import run_trial, scratch_name

    sweep = config.sweep
    assert sweep is not None
    stored = path.patient()
    # Local storage is given to Tune as a plain path, so that it writes there directly.
    filesystem = stored.fs if stored.remote else None
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=config.run_settings(),
            cpus=placement.cpus_per_trial,
            scratch=scratch_name(path),
            milestones=stored / MILESTONES if config.checkpoint.milestone_interval else None,
            attempts=stored / ATTEMPTS if long else None,
            budget=sweep.budget,
            starts=starts,
        ),
        placement.resources(),
    )
    if restore:  # the rest of the Tuner (progress callback included) comes from its saved state
        return tune.Tuner.restore(
            stored.path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=filesystem,
        )
    progress = (
        LongProgress(sweep.metric, sweep.mode, config.training.steps)
        if long
        else SweepProgress(sweep.metric, sweep.mode)
    )
    notifier = Notifier(path.name, notify_urls(config.notify), config.notify.on)
    return tune.Tuner(
        trainable,
        param_space=to_param_space(sweep.axes(), sweep.strategy),
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode=sweep.mode,
            num_samples=sweep.num_samples,
            search_alg=search_alg(sweep),
            scheduler=_scheduler(sweep, config, notifier),
            max_concurrent_trials=placement.slots,
            # A new trial reuses a finished trial's worker (same resources): no process start,
            # no imports. Safe here: every trial seeds its RNGs and builds its run afresh.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=path.name,
            storage_path=stored.parent.path,
            storage_filesystem=filesystem,
            stop=_stopper(sweep),
            # -1: without limit (Tune's convention)
            failure_config=tune.FailureConfig(max_failures=-1 if long else sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=_checkpoints_kept(config)),
            verbose=0,
            callbacks=[progress, notifier, *tracker_callbacks(config.logging.trackers, path)],
        ),
    )


def fit(tuner: Any, path: Location) -> None:
    """Run the experiment at `path` to its end (or its interruption), then remove its trials'
    scratch folders on this node, those a killed sweep left included."""
    from arbiter.tune.trainable import local_scratch, scratch_name

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
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=sweep.seed)


def _scheduler(sweep: SweepConfig, config: Config, notifier: Any = None) -> Any:
    """Tune's scheduler for `sweep`; the grokking scheduler tells `notifier` of a stalled trial."""
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
        from arbiter.config.space import Grid
        from arbiter.tune.search_space import to_param_space

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
        from arbiter.tune.grokking_scheduler import GrokkingScheduler

        return GrokkingScheduler(
            sweep.grokking,
            time_attr=TIME_ATTR,
            on_grokked=notifier.grokked if notifier else None,
            on_stalled=notifier.stalled if notifier else None,
        )
    return None  # fifo: Tune's default


def _stopper(sweep: SweepConfig) -> Any:
    if sweep.stop is None:
        return None
    from arbiter.tune.stopper import HeldTarget

    rule = sweep.stop
    return HeldTarget(rule.metric or sweep.metric, rule.threshold, rule.patience, sweep.mode)
