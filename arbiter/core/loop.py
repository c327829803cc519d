"""The training loop every run goes through: `arbiter train` and every Tune trial.

Read `train` as an algorithm box whose phases are functions below it: `_build` (hardware, seeded
model, data, optimizer), `_restore` (a checkpoint, if one is given), then per optimizer step
`_optimizer_step` (micro-batch gradients under autocast, the loss in fp32 or fp64, softmax or
StableMax; unscale, filter with Grokfast or ⊥Grad, clip, step), and whatever the step is `_Due`
to do: `evaluate` every `eval_interval` steps (with the softmax-collapse diagnostics), `_save`
every `checkpoint.interval` steps and at the last, report every `log_interval` steps.
Host-device syncs happen only at log steps. A caller plugs in through `Reporter` (a Tune trial
reports to Tune) and may hand in the data source; the loop never imports Ray.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arbiter.config.estimate import training_flops_per_token
from arbiter.config.schema import Config
from arbiter.core import checkpoint as ckpt
from arbiter.core.data import IGNORE_INDEX, Task, make_task
from arbiter.core.grokfast import Grokfast
from arbiter.core.grokking import GrokClock
from arbiter.core.hardware import peak_flops
from arbiter.core.loss import LOSS_DTYPES, cross_entropy, margins
from arbiter.core.metrics import MetricsLog
from arbiter.core.model import build_model
from arbiter.core.optim import (
    build_optimizer,
    learning_rate,
    orthogonalize_gradients,
    set_learning_rate,
)
from arbiter.core.precision import Precision, describe, resolve_device, resolve_precision
from arbiter.errors import RunFailed, UserError

log = logging.getLogger(__name__)

# metrics, and the checkpoint folder written at this step (None if none)
Reporter = Callable[[dict[str, Any], "Path | None"], None]
# (logits, targets, reduction) -> the configured loss, see `loss_function`
LossFn = Callable[..., torch.Tensor]


class NonFiniteLoss(RunFailed):
    """The loss became NaN or infinite: the run cannot continue."""


@dataclass(frozen=True)
class RunResult:
    step: int
    metrics: dict[str, Any]
    out_dir: Path


def train(
    config: Config,
    out_dir: Path,
    reporter: Reporter | None = None,
    resume_from: Path | tuple[Path, dict[str, Any]] | None = None,
    task: Task | None = None,
) -> RunResult:
    """Train `config` to `training.steps`, writing metrics and checkpoints under `out_dir`.

    `resume_from` is a checkpoint folder to continue from exactly (model, optimizer, scaler,
    data cursor, RNG states and step), or the (folder, state) pair `latest_checkpoint` and
    `usable_checkpoint` return, so that the state is not read and hashed twice. `task` is the
    data source; None builds the config's own (`make_task`). A benchmark passes one that wraps it.
    Kept whole: it is the algorithm box, and each phase it calls is a function below it.
    """
    t = config.training
    run = _build(config, task)
    step, last_eval = _restore(run, resume_from)
    # The whole model, not each block in place: whole-model compilation gave the higher MFU on a
    # deep and narrow model (docs/benchmarks.md), at the price of compiling every block.
    forward = torch.compile(run.model) if t.compile else run.model
    metrics_log = MetricsLog(out_dir, config.logging.enable_tensorboard, step if step else None)
    speed = _Speedometer(config, run.precision)
    window = _Window(run.precision.device)
    tokens_per_step = t.batch_size * t.gradient_accumulation * config.seq_len()
    first_step = step
    metrics: dict[str, Any] = {}
    if step >= t.steps and reporter is not None:
        # Resumed at the end (a trial restarted after its last report, or a PBT copy of a
        # finished trial): report where it stands, or the caller would see no result at all.
        metrics = {"step": step, **last_eval, **run.clock.metrics(), **run.hardware()}
        reporter(metrics, None)
    try:
        while step < t.steps:
            grad_norm = _optimizer_step(run, forward, step, window)
            step += 1
            if step == first_step + 1:  # the kernel is known once a forward ran under autocast
                log.info(
                    "training on %s, attention: %s",
                    describe(run.precision),
                    run.model.attention_kernel,
                )
            speed.tick(tokens_per_step)
            due = _Due.at(step, config, evaluated=bool(last_eval))
            if due.evaluate:
                last_eval = {
                    **evaluate(forward, run.task, run.precision, run.loss_fn),
                    "eval_step": step,
                }
                run.clock.observe(last_eval)
            saved = _save(run, out_dir, step, last_eval) if due.save else None
            if due.log or saved:
                metrics = {
                    "step": step,
                    **window.drain(),
                    **last_eval,
                    **run.clock.metrics(),
                    **_weights_and_gradients(run, grad_norm),
                    **speed.read(),
                    **_data_seen(run.task, step * tokens_per_step),
                    **run.hardware(),
                }
                metrics_log.write(metrics)
                if reporter is not None:
                    reporter(metrics, saved)
    finally:
        metrics_log.close()
    return RunResult(step, metrics, out_dir)


def _data_seen(task: Task, tokens_seen: int) -> dict[str, float]:
    """For a tokens task: tokens seen so far, the epochs they make over the distinct training
    tokens, and that count (repeated data, as in Muennighoff et al. 2023, shows as epochs > 1)."""
    if not task.unique_train_tokens:
        return {}
    unique = task.unique_train_tokens
    return {"tokens_seen": tokens_seen, "epochs": tokens_seen / unique, "unique_tokens": unique}


@dataclass(frozen=True)
class _Run:
    """The parts of one run that the phases share. Its state (`state_dict`, `load`) is what a
    checkpoint holds, so that a resumed run continues exactly."""

    config: Config
    precision: Precision
    model: torch.nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    grokfast: Grokfast | None
    clock: GrokClock
    loss_fn: LossFn

    def hardware(self) -> dict[str, str]:
        """Where and how it trains, in every report."""
        device, precision = str(self.precision.device), self.precision.name
        return {"device": device, "precision": precision, "attention": self.model.attention_kernel}

    def state_dict(self, step: int, last_eval: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": self.task.state_dict(),
            "rng": ckpt.capture_rng(),
            "step": step,
            "last_eval": last_eval,
            "grokking": self.clock.state_dict(),
            "grokfast": self.grokfast.state_dict() if self.grokfast else None,
        }

    def load(self, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Restore every part; returns the step and the last evaluation."""
        self.model.load_state_dict(state["model"])
        _load_optimizer(self.optimizer, state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.task.load_state_dict(state["data"])
        ckpt.restore_rng(state["rng"])
        self.clock.load_state_dict(state["grokking"])
        if self.grokfast is not None and state["grokfast"]:  # None: a PBT exploit turned it on
            self.grokfast.load_state_dict(state["grokfast"])
        return state["step"], state["last_eval"]


def _build(config: Config, task: Task | None) -> _Run:
    """Seed, then build the model, data, optimizer, scaler and filters, in that order (the order
    the seeded RNG is drawn in, which a resumed or repeated run relies on)."""
    t = config.training
    precision = resolve_precision(t.precision, resolve_device(t.device))
    _seed_everything(t.seed)
    model = build_model(config).to(precision.device)
    model.gradient_checkpointing = t.gradient_checkpointing
    task = make_task(config) if task is None else task
    optimizer = build_optimizer(model, t, precision.device)
    scaler = precision.grad_scaler()
    grokfast = None
    if t.grokfast:
        params = list(model.parameters())
        grokfast = Grokfast(params, t.grokfast_alpha, t.grokfast_lamb, scaler.is_enabled())
    return _Run(
        config,
        precision,
        model,
        task,
        optimizer,
        scaler,
        grokfast,
        GrokClock(),
        loss_function(config),
    )


def _restore(
    run: _Run, resume_from: Path | tuple[Path, dict[str, Any]] | None
) -> tuple[int, dict[str, Any]]:
    """The step to start from and the last evaluation: (0, {}) for a new run."""
    if resume_from is None:
        return 0, {}
    if not isinstance(resume_from, tuple):
        resume_from = resume_from, ckpt.load_checkpoint(resume_from)
    _check_same_network(run.model, resume_from)
    step, last_eval = run.load(resume_from[1])
    log.info("resumed from %s at step %d", resume_from[0], step)
    return step, last_eval


def _optimizer_step(run: _Run, forward: Callable, step: int, window: _Window) -> torch.Tensor:
    """One optimizer step: accumulate the micro-batch gradients under autocast, unscale, filter
    (Grokfast, ⊥Grad), clip and step. Returns the gradient norm before clipping (on the device)."""
    t, precision, scaler, optimizer = run.config.training, run.precision, run.scaler, run.optimizer
    set_learning_rate(optimizer, learning_rate(step, t))
    for _ in range(t.gradient_accumulation):
        x, y = (b.to(precision.device, non_blocking=True) for b in run.task.train_batch())
        with precision.autocast():
            logits = forward(x, last_only=run.task.answer_only)
        loss = run.loss_fn(logits, y)  # in the loss dtype, whatever the compute precision
        scaler.scale(loss / t.gradient_accumulation).backward()
        window.add(loss.detach(), step)
    scaler.unscale_(optimizer)
    if run.grokfast is not None:
        run.grokfast.filter()
    if t.orthograd:
        orthogonalize_gradients(run.model.parameters())
    max_norm = t.grad_clip if t.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm)
    scaler.step(optimizer)  # skipped by the scaler when fp16 gradients overflowed
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


@dataclass(frozen=True)
class _Due:
    """What a finished step is due to do besides training."""

    evaluate: bool
    save: bool
    log: bool

    @classmethod
    def at(cls, step: int, config: Config, evaluated: bool) -> _Due:
        """`evaluated`: whether the run has evaluated at all (a resumed run may have)."""
        last = step == config.training.steps
        log_step = step % config.logging.log_interval == 0 or last
        c = config.checkpoint
        save = c.enable and (step % c.interval == 0 or last)
        # Every report carries validation metrics (Tune ranks by them, and fails a sweep on a
        # result without its metric), so the first report, a log's or a checkpoint's, evaluates
        # even when it comes before the first eval_interval.
        periodic = step % config.training.eval_interval == 0 or last
        return cls(periodic or ((log_step or save) and not evaluated), save, log_step)


def _save(run: _Run, out_dir: Path, step: int, last_eval: dict[str, Any]) -> Path:
    """Write this step's checkpoint (rotating old ones); returns its folder."""
    c = run.config.checkpoint
    state = run.state_dict(step, last_eval)
    dumped = run.config.model_dump(mode="json")
    return ckpt.save_checkpoint(out_dir, step, state, dumped, c.keep, c.milestone_interval)


def _weights_and_gradients(run: _Run, grad_norm: torch.Tensor) -> dict[str, float]:
    """The optimizer's state in a report: learning rate and norms (each a host sync)."""
    return {
        "lr": run.optimizer.param_groups[0]["lr"],
        "grad_norm": grad_norm.item(),
        "weight_norm": _norm(run.model.parameters()),
        # what weight decay shrinks (param_groups puts it first), see the grokking scheduler
        "decayed_weight_norm": _norm(run.optimizer.param_groups[0]["params"]),
        # the output layer's norm: its growth is the slingshot signal
        "output_weight_norm": _norm([run.model.lm_head.weight]),
    }


def loss_function(config: Config) -> LossFn:
    """`training.loss` in `training.loss_dtype`: logits are up-cast first, so 16-bit logits
    never round a confident softmax to exactly zero loss (fp64 postpones that further)."""
    t = config.training
    return functools.partial(cross_entropy, kind=t.loss, dtype=LOSS_DTYPES[t.loss_dtype])


@torch.no_grad()
def evaluate(
    forward: Callable, task: Task, precision: Precision, loss_fn: LossFn = cross_entropy
) -> dict[str, float]:
    """Loss and accuracy over each evaluation split, as `split/loss` and `split/accuracy`.

    On the training split also the numerics diagnostics of softmax collapse (Prieto et al.
    2025): `train/zero_loss_fraction`, the fraction of examples whose loss is exactly 0 (they
    no longer give a gradient), and `train/max_margin`, the largest correct-minus-best-other
    logit margin.
    """
    was_training = forward.training
    forward.eval()
    results = {}
    for split, batches in task.eval_splits().items():
        # Sums stay on the device, masked rather than selected, so that evaluating syncs with
        # the host once per split, not once per batch.
        loss_sum = torch.zeros((), device=precision.device)
        correct, zero, count = (
            torch.zeros((), dtype=torch.long, device=precision.device) for _ in range(3)
        )
        margin = torch.full((), -torch.inf, device=precision.device)
        for x, y in batches:
            x, y = x.to(precision.device), y.to(precision.device)
            with precision.autocast():
                logits = forward(x, last_only=task.answer_only)
            scored = y.flatten() != IGNORE_INDEX
            losses = loss_fn(logits, y, reduction="none")  # 0 where not scored
            loss_sum += losses.sum()
            if split == "train":  # the diagnostics are about the training examples only
                zero += ((losses == 0) & scored).sum()
                margin = torch.maximum(margin, margins(logits, y).max())
            correct += ((logits.argmax(-1).flatten() == y.flatten()) & scored).sum()
            count += scored.sum()
        n = count.item()
        results[f"{split}/loss"] = loss_sum.item() / n
        results[f"{split}/accuracy"] = correct.item() / n
        if split == "train":
            results["train/zero_loss_fraction"] = zero.item() / n
            results["train/max_margin"] = margin.item()
    forward.train(was_training)
    return results


def _check_same_network(model: torch.nn.Module, checkpoint: tuple[Path, dict[str, Any]]) -> None:
    """Refuse, in one line, a checkpoint of another network than the config builds (saved under
    other model settings, or by an Arbiter whose network of that name had another shape)."""
    built = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    saved = {name: tuple(t.shape) for name, t in checkpoint[1]["model"].items()}
    if saved == built:
        return
    differs = sorted(built.keys() ^ saved.keys()) or [n for n in built if built[n] != saved[n]]
    name = differs[0]
    raise UserError(
        f"{checkpoint[0]}: holds another network than the config builds ({name}: saved "
        f"{saved.get(name, 'none')}, built {built.get(name, 'none')}); resume it with the "
        "settings and Arbiter version it was saved with, or start a new run"
    )


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore the moments and step counts, but keep this run's hyperparameters: a PBT exploit
    loads another trial's checkpoint under a mutated config (the lr is set every step anyway)."""
    configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, configured, strict=True):
        group.update(settings)


def _norm(params: Iterable[torch.Tensor]) -> float:
    """The L2 norm of all `params` together (0 for none)."""
    tensors = [p.detach() for p in params]
    if not tensors:
        return 0.0
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))).item()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Window:
    """Training loss since the last log step, summed on the device (read only at log steps).

    Also remembers the first step whose loss was not finite, without a host sync per step.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def _reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.count = 0

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.loss_sum += loss
        self.count += 1
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, step + 1, self.first_bad)

    def drain(self) -> dict[str, float]:
        first_bad = int(self.first_bad)
        if first_bad >= 0:
            raise NonFiniteLoss(f"the training loss became NaN or infinite at step {first_bad}")
        mean = (self.loss_sum / self.count).item()
        self._reset()
        return {"train/loss": mean}


class _Speedometer:
    """Tokens per second (and MFU on GPUs with a known peak) since the last reading."""

    def __init__(self, config: Config, precision: Precision) -> None:
        self.flops_per_token = training_flops_per_token(config)
        self.peak = None
        if precision.device.type == "cuda":
            self.peak = peak_flops(torch.cuda.get_device_name(precision.device))
        self.device = precision.device
        self.tokens = 0
        self.start = time.perf_counter()

    def tick(self, tokens: int) -> None:
        self.tokens += tokens

    def read(self) -> dict[str, float]:
        now = time.perf_counter()
        per_s = self.tokens / max(now - self.start, 1e-9)
        self.tokens, self.start = 0, now
        out = {"tokens_per_s": per_s, "memory/peak_bytes": self._peak_memory()}
        if self.peak:
            out["mfu"] = per_s * self.flops_per_token / self.peak
        return out

    def _peak_memory(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
