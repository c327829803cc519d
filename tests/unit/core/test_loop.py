"""The training core end to end on tiny real models: exact resume, grokking, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny

from arbiter.config.schema import Config
from arbiter.core.checkpoint import latest_checkpoint, load_checkpoint
from arbiter.core.data import make_task
from arbiter.core.loop import NonFiniteLoss, evaluate, loss_function, train
from arbiter.core.metrics import read_metrics
from arbiter.core.model import build_model
from arbiter.core.precision import resolve_device, resolve_precision
from arbiter.errors import UserError

# Wall-clock figures differ between any two runs (MFU is tokens/s over the GPU's peak);
# everything else must match exactly.
TIMING = {"tokens_per_s", "mfu", "memory/peak_bytes"}


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    found = latest_checkpoint(out)
    assert found is not None
    return found[1]["model"]


class Crash(Exception):
    pass


def crash_at(step: int):
    """A reporter that kills the run (as a crash would) when it reports `step`."""

    def report(metrics, saved):
        if metrics["step"] == step:
            raise Crash

    return report


def test_resumed_run_matches_an_uninterrupted_one_bit_for_bit(tmp_path):
    config = tiny(dropout=0.0)
    straight = train(config, tmp_path / "straight")
    with pytest.raises(Crash):
        train(config, tmp_path / "cut", reporter=crash_at(30))
    checkpoint, state = latest_checkpoint(tmp_path / "cut")
    assert state["step"] == 20  # steps 21-30 are lost and must be redone identically
    resumed = train(config, tmp_path / "cut", resume_from=checkpoint)

    assert resumed.step == straight.step == 60
    assert without_timing([resumed.metrics]) == without_timing([straight.metrics])
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the resumed log drops the redone rows: it reads as if never interrupted
    rows_straight = without_timing(read_metrics(tmp_path / "straight"))
    assert without_timing(read_metrics(tmp_path / "cut")) == rows_straight
    assert [r["step"] for r in rows_straight] == [10, 20, 30, 40, 50, 60]


# the grokking literature's knobs together: Nanda et al.'s model and full batch, Prieto et al.'s
# StableMax, fp64 and ⊥Grad, an SGD with momentum state
LITERATURE = dict(
    model={"norm": "none", "positions": "learned", "mlp": "relu", "init_scale": 3.0},
    data={"split": "no_mirror"},
    batch_size="full",
    loss="stablemax",
    loss_dtype="fp64",
    orthograd=True,
    optimizer="sgd",
    momentum=0.9,
    learning_rate=0.1,
)


@pytest.mark.parametrize(
    "config",
    [
        tiny(dropout=0.1),
        tiny(grokfast=True, grokfast_alpha=0.9, grokfast_lamb=3.0),
        tiny(**LITERATURE),
        tiny(optimizer="adam", eps=1e-25, weight_decay=0.01),
        tiny(model={"arch": "mlp", "mlp": "gelu", "mlp_bias": True}, loss="stablemax"),
    ],
    ids=["dropout", "grokfast", "literature", "adam", "mlp"],
)
def test_state_outside_the_model_resumes_exactly_too(tmp_path, config):
    """Dropout draws from the global RNG and Grokfast keeps gradient averages: both must come
    back with the checkpoint."""
    straight = train(config, tmp_path / "a")
    with pytest.raises(Crash):
        train(config, tmp_path / "b", reporter=crash_at(50))
    resumed = train(config, tmp_path / "b", resume_from=latest_checkpoint(tmp_path / "b")[0])
    assert without_timing([resumed.metrics]) == without_timing([straight.metrics])
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_grokfast_changes_the_run_and_checkpoints_its_averages(tmp_path):
    plain = train(tiny(), tmp_path / "plain")
    filtered = train(tiny(grokfast=True), tmp_path / "grokfast")
    assert filtered.metrics["train/loss"] != plain.metrics["train/loss"]
    state = latest_checkpoint(tmp_path / "grokfast")[1]
    shapes = [t.shape for t in state["grokfast"]["ema"]]
    assert shapes == [t.shape for t in state["model"].values()]
    assert latest_checkpoint(tmp_path / "plain")[1]["grokfast"] is None


def test_checkpoints_hold_everything_needed(tmp_path):
    train(tiny(), tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000020", "step_00000040", "step_00000060"]
    state = load_checkpoint(tmp_path / "checkpoints" / "step_00000060")
    assert {"model", "optimizer", "scaler", "data", "rng", "step"} <= state.keys()
    meta = json.loads((tmp_path / "checkpoints" / "step_00000060" / "meta.json").read_text())
    assert meta["config"]["training"]["steps"] == 60 and "torch" in meta["versions"]


def test_metrics_rows_carry_the_documented_keys(tmp_path):
    train(tiny(), tmp_path)
    rows = read_metrics(tmp_path)
    expected = {
        "step",
        "train/loss",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "lr",
        "grad_norm",
        "weight_norm",
        "decayed_weight_norm",
        "output_weight_norm",
        "train/zero_loss_fraction",
        "train/max_margin",
        "tokens_per_s",
        "memory/peak_bytes",
        "device",
        "precision",
        "attention",
    }
    assert expected <= rows[-1].keys()
    assert 0 < rows[-1]["output_weight_norm"] < rows[-1]["weight_norm"]
    # where `auto` trains: the CPU in fp32 in CI, a GPU (bf16 on Ampere or newer) elsewhere
    auto = resolve_precision("auto", resolve_device("auto"))
    assert rows[-1]["device"] == str(auto.device) and rows[-1]["precision"] == auto.name
    assert rows[-1]["attention"] == "sdpa"
    assert all(0.0 <= r["val/accuracy"] <= 1.0 for r in rows)


def test_softmax_collapse_is_measured_and_fp64_or_stablemax_avoid_it(tmp_path):
    """Prieto et al. 2025: without weight decay the training logits grow until an fp32 softmax
    rounds confident examples' loss to exactly zero (they give no gradient). The same weights
    scored with an fp64 loss have fewer such examples, with StableMax none."""
    config = tiny(
        model={"norm": "none", "init_scale": 3.0},
        weight_decay=0.0,
        learning_rate=1e-2,
        steps=200,
        eval_interval=100,
        warmup_steps=0,
        grad_clip=0.0,
        batch_size="full",
    )
    fp32 = train(config, tmp_path).metrics
    assert fp32["train/accuracy"] >= 0.99 and fp32["train/max_margin"] > 20
    assert fp32["train/zero_loss_fraction"] > 0.02
    # Scored again on the device and in the precision the run used (bf16 logits on a GPU), so
    # that only the loss differs.
    trained = resolve_precision("auto", resolve_device("auto"))
    model = build_model(config).to(trained.device)
    model.load_state_dict(final_weights(tmp_path))
    task = make_task(config)

    def zero_fraction(**loss) -> float:
        scored = evaluate(model, task, trained, loss_function(tiny(**loss)))
        assert scored["train/max_margin"] == fp32["train/max_margin"]
        return scored["train/zero_loss_fraction"]

    assert zero_fraction() == fp32["train/zero_loss_fraction"]
    assert zero_fraction(loss_dtype="fp64") < fp32["train/zero_loss_fraction"]
    assert zero_fraction(loss="stablemax") == 0


def test_tensorboard_events_are_written(tmp_path):
    config = tiny()
    config.logging.enable_tensorboard = True
    train(config, tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_nan_loss_stops_the_run_naming_the_step(tmp_path):
    config = tiny(learning_rate=1e30, grad_clip=0.0, warmup_steps=0)
    with pytest.raises(NonFiniteLoss, match=r"NaN or infinite at step \d+"):
        train(config, tmp_path)


@pytest.mark.slow
def test_modular_addition_groks(tmp_path):
    """p = 97, half the table, 1 x 64, AdamW lr 1e-3 wd 1, batch 512: train fits, then val.

    A generous budget (4x the ~1,000 steps it takes here) leaves room for seed variation.
    """
    config = Config.model_validate(
        {
            "model": {"dim": 64, "n_layers": 1, "n_heads": 4, "mlp": "gelu", "mlp_dim": 256},
            "data": {"modulus": 97, "train_fraction": 0.5},
            "training": {
                "batch_size": 512,
                "learning_rate": 1e-3,
                "weight_decay": 1.0,
                "betas": [0.9, 0.98],
                "lr_schedule": "constant",
                "steps": 4000,
                "warmup_steps": 10,
                "eval_interval": 50,
                "precision": "fp32",
            },
            "checkpoint": {"enable": False},
            "logging": {"log_interval": 50, "enable_tensorboard": False},
        }
    )

    def stop_once_grokked(metrics, saved):
        if metrics["val/accuracy"] >= 0.99:
            raise Crash  # the rest of the budget would show nothing new

    with pytest.raises(Crash):
        train(config, tmp_path, reporter=stop_once_grokked)
    rows = read_metrics(tmp_path)
    fit = next(r["step"] for r in rows if r["train/accuracy"] >= 0.99)
    grok = rows[-1]["step"]
    assert fit < grok
    # the run reports its grokking measures itself, from the row they are reached on
    assert "steps_to_fit" not in rows[0] and "steps_to_grok" not in rows[-2]
    assert rows[-1]["steps_to_fit"] == fit and rows[-1]["steps_to_grok"] == grok
    assert rows[-1]["grok_delay"] == grok - fit


@pytest.mark.slow
def test_arbiter_train_killed_and_resumed_matches_a_straight_run(tmp_path, write):
    """SIGKILL `arbiter train` after a checkpoint, then `--resume`: same metrics, same weights."""
    config = write(
        "run.toml",
        """
        [model]
        dim = 32
        n_layers = 2
        n_heads = 2
        [data]
        modulus = 23
        [training]
        batch_size = 64
        steps = 1000
        eval_interval = 100
        [checkpoint]
        interval = 100
        keep = 20
        [logging]
        log_interval = 100
        enable_tensorboard = false
    """,
    )
    arbiter = [sys.executable, "-m", "arbiter", "train", "--config", str(config)]
    subprocess.run([*arbiter, "--out", str(tmp_path / "straight")], check=True, capture_output=True)
    cut = tmp_path / "cut"
    process = subprocess.Popen([*arbiter, "--out", str(cut)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cut / "checkpoints" / "step_00000200").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (cut / "checkpoints" / "step_00001000").exists()
    refused = subprocess.run([*arbiter, "--out", str(cut)], capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr  # no silent restart
    subprocess.run([*arbiter, "--out", str(cut), "--resume"], check=True, capture_output=True)
    assert without_timing(read_metrics(cut)) == without_timing(read_metrics(tmp_path / "straight"))
    a, b = final_weights(tmp_path / "straight"), final_weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_report_carries_validation_metrics_even_a_checkpoints_before_any_eval(tmp_path):
    """Tune fails a whole sweep on a result without its metric: a checkpoint that comes before
    the first eval_interval and log_interval must be reported with validation metrics too."""
    settings = tiny().model_dump(mode="json")
    settings["training"]["eval_interval"] = 40
    settings["logging"]["log_interval"] = 30
    settings["checkpoint"]["interval"] = 20  # the first report: step 20, a checkpoint's
    reports = []
    train(Config.model_validate(settings), tmp_path, reporter=lambda m, saved: reports.append(m))
    assert [m["step"] for m in reports] == [20, 30, 40, 60]
    assert all("val/accuracy" in m and "val/loss" in m for m in reports)


def test_a_checkpoint_of_another_network_is_refused_in_one_line(tmp_path):
    train(tiny(model={"arch": "mlp"}, steps=20), tmp_path)
    wider = tiny(model={"arch": "mlp", "dim": 48}, steps=40)
    with pytest.raises(
        UserError,
        match=r"holds another network .*hidden.0.weight: saved \(32, 46\), built \(48, 46\)",
    ):
        train(wider, tmp_path, resume_from=latest_checkpoint(tmp_path)[0])
    with pytest.raises(UserError, match="holds another network"):  # another architecture
        train(tiny(steps=40), tmp_path, resume_from=latest_checkpoint(tmp_path)[0])


def test_resuming_a_finished_run_reports_its_final_state_once(tmp_path):
    """A Tune trial restarted after its last report must still report a result."""
    config = tiny()
    first = train(config, tmp_path)
    calls = []
    again = train(
        config,
        tmp_path,
        reporter=lambda m, saved: calls.append(m),
        resume_from=latest_checkpoint(tmp_path)[0],
    )
    assert again.step == 60 and len(calls) == 1
    assert calls[0]["val/accuracy"] == first.metrics["val/accuracy"]


def test_resume_keeps_the_moments_but_takes_the_new_hyperparameters():
    """A PBT exploit loads a donor's optimizer state under this trial's mutated settings."""
    from arbiter.core.loop import _load_optimizer
    from arbiter.core.model import build_model
    from arbiter.core.optim import build_optimizer

    donor_config, config = tiny(weight_decay=1.0), tiny(weight_decay=0.25)
    model = build_model(donor_config)
    donor = build_optimizer(model, donor_config.training, torch.device("cpu"))
    model(torch.zeros(2, 4, dtype=torch.long)).sum().backward()
    donor.step()
    taker = build_optimizer(model, config.training, torch.device("cpu"))
    _load_optimizer(taker, donor.state_dict())
    assert [g["weight_decay"] for g in taker.param_groups] == [0.25, 0.0]
    taken = [s["exp_avg"] for s in taker.state_dict()["state"].values()]
    given = [s["exp_avg"] for s in donor.state_dict()["state"].values()]
    assert taken and all(torch.equal(a, b) for a, b in zip(taken, given, strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_compiled_model_trains_like_eager_on_cuda(tmp_path, checkpointing):
    """`training.compile`: the run learns what the eager run learns (up to bf16 rounding; on a
    CPU in fp32 the two agree exactly, too slow to compile for CI) and its checkpoints keep the
    eager model's parameter names."""
    eager = train(tiny(gradient_checkpointing=checkpointing), tmp_path / "eager").metrics
    config = tiny(compile=True, gradient_checkpointing=checkpointing)
    compiled = train(config, tmp_path / "compiled").metrics
    for key in ("train/loss", "val/loss", "weight_norm"):
        assert compiled[key] == pytest.approx(eager[key], rel=0.03), key
    names = final_weights(tmp_path / "compiled").keys()
    assert names == final_weights(tmp_path / "eager").keys()
