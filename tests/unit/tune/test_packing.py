"""Several trials per GPU: the share each reserves admits exactly K per GPU in Ray's fixed point,
`auto` divides free memory by the largest trial, the dry run shows the packing, and a record
written before packing existed resumes with one trial per GPU."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_run

from arbiter.errors import UserError
from arbiter.experiments.record import Record
from arbiter.tune.packing import (
    AUTO_CAP,
    RAY_UNITS,
    Packing,
    auto_packing,
    check_request,
    gpu_share,
    placement_words,
)
from arbiter.tune.tuner import Placement

GIB = 2**30


@pytest.mark.parametrize("k", range(1, 65))
def test_a_share_of_one_over_k_admits_exactly_k_trials_on_one_gpu(k):
    units = round(gpu_share(k) * RAY_UNITS)  # as Ray stores it
    assert units / RAY_UNITS == gpu_share(k)  # already whole units: Ray rounds nothing
    assert k * units <= RAY_UNITS < (k + 1) * units


def test_rounding_one_seventh_to_the_nearest_unit_would_admit_only_six():
    nearest = round(RAY_UNITS / 7)  # 1429
    assert 7 * nearest > RAY_UNITS and 6 * nearest <= RAY_UNITS
    assert round(gpu_share(7) * RAY_UNITS) == 1428


def test_auto_fits_the_largest_trial_into_the_free_memory_with_a_margin():
    packing = auto_packing(10 * GIB, 80 * GIB)
    assert packing.trials_per_gpu == 7  # 72 GiB of 80 usable
    assert (
        packing.reason
        == "packing 7 trials per GPU: largest trial needs ~10.00 GiB of 80.00 GiB free"
    )


def test_auto_is_capped_and_a_trial_too_big_alone_is_one_line():
    assert auto_packing(10 * 2**20, 80 * GIB).trials_per_gpu == AUTO_CAP
    with pytest.raises(UserError, match="more than .* of the smallest GPU's 8.00 GiB free"):
        auto_packing(8 * GIB, 8 * GIB)


def test_placement_reserves_the_share_and_runs_every_share_at_once():
    packed = Placement(gpus=2, cpus_per_trial=1, trials_per_gpu=4)
    assert packed.resources() == {"cpu": 1, "gpu": 0.25} and packed.slots == 8
    assert Placement(gpus=0, cpus_per_trial=2, trials_per_gpu=4).resources()["gpu"] == 0
    assert Placement(gpus=0, cpus_per_trial=2).slots is None
    assert placement_words(2, Packing(4)) == "2 GPU(s), 4 trials per GPU (8 at once)"
    assert placement_words(2, Packing(1)) == "2 GPU(s), one per trial"


def test_a_record_without_trials_per_gpu_resumes_one_trial_per_gpu():
    old = '{"template": "t.toml", "sets": [], "template_hash": "0", "resolved": {}, "gpus": 2, '
    record = Record(**json.loads(old + '"cpus_per_trial": 1}'))
    assert record.trials_per_gpu == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_packing_without_any_gpu_here_is_refused_before_ray_starts():
    with pytest.raises(UserError, match="--trials-per-gpu 2: .* this machine has no GPU"):
        check_request(2, None, None)
    check_request(1, None, None)  # the default asks for nothing
    check_request(4, None, "10.0.0.1:6379")  # a cluster's GPUs are counted once joined


def test_the_dry_run_shows_the_packing(cli, write):
    space = {"sweep.space": '"training.seed" = [0, 1, 2, 3]'}
    template = write("t.toml", tiny_run(100, space))
    code, out, err = cli(
        "sweep", "--template", template, "--gpus", "2", "--trials-per-gpu", "4", "--dry-run"
    )
    assert code == 0, err
    text = " ".join(out.split())
    assert "8 at a time, 4 per GPU" in text
    assert "Packing 4 per GPU: needs 4 x ~0.50 GiB (the largest trial) per GPU." in text
    code, out, _ = cli("sweep", "--template", template, "--trials-per-gpu", "auto", "--dry-run")
    assert code == 0 and "auto" in out
