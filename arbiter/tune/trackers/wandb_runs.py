"""Weights & Biases: one run per trial through Ray Tune's WandbLoggerCallback, in a project
named after the experiment. Online with an API key; with WANDB_MODE=offline the runs are kept in
the experiment's wandb/ folder (a local experiment), for `wandb sync` later. W&B's x axis is
Tune's report count; every row also carries the model's `step`, which W&B can plot against.
"""

from __future__ import annotations

import os

from ray.air.integrations.wandb import WandbLoggerCallback

from arbiter.experiments.location import Location

FOLDER = "wandb"


def wandb_callback(experiment: Location) -> WandbLoggerCallback:
    init: dict[str, str] = {}  # passed on to wandb.init in each trial's logging actor
    if os.environ.get("WANDB_MODE"):
        # the actors run in the cluster's worker processes, which do not have the driver's
        # environment (Ray passes WANDB_API_KEY on, not the mode)
        init["mode"] = os.environ["WANDB_MODE"]
    if not experiment.remote:  # the actors run on the driver's node
        folder = experiment.local / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        init["dir"] = str(folder)
    return WandbLoggerCallback(project=experiment.name, group=experiment.name, **init)
