"""Training memory of a deep-and-narrow model with and without gradient checkpointing, measured
on the CPU, against the estimate `arbiter sweep --dry-run` prints for the same config.

The model is `deep_narrow_template.toml`'s (SwiGLU Theos, vocabulary 8192, AdamW) at a CPU size:
48 layers x 256 wide, 4 heads, batch 4 x 256 tokens, fp32, on a token file of random uint16 ids
written to a temporary folder. `--layers`, `--dim`, `--heads`, `--seq-len`, `--batch-size` and
`--vocab-size` change the shape (several values of `--layers` or `--dim` make a grid).

Method. The CPU allocator keeps no peak counter, so the memory of a training step is measured in
parts that can be counted exactly:

- Activations: the tensors autograd saves for the backward pass. One step runs inside
  `torch.autograd.graph.saved_tensors_hooks` whose pack hook keeps a weak reference to the
  storage of every tensor it is given (and returns the tensor unchanged, so autograd holds what
  it would hold anyway). Storages of the model's parameters and buffers are left out (a linear
  layer saves its weight; that is the parameter, not an activation). `poll` sums the bytes of the
  referenced storages that are still alive, each storage once (views, such as q, k and v cut from
  one qkv output, share one storage). This is what is really kept, not what was once saved: with
  gradient checkpointing (`use_reentrant=False`) the checkpoint's own inner hooks replace ours
  inside each block and drop the block's tensors, so only the block inputs, which the checkpoint
  saves through our hook, stay alive. The polls come at the end of the forward pass (loss
  included), where the saved tensors of a plain step peak, and, with checkpointing, right after
  each block is recomputed in the backward pass (`torch.utils.checkpoint` saves the recomputed
  tensors through its `_recomputation_hook`, which this benchmark wraps to see them), when one
  block's activations are back in memory beside the remaining block inputs. The peak is the
  largest poll. "blocks" is the part saved between the embedding and the final norm, which is
  what `arbiter.config.estimate.activation_bytes` estimates; the rest is the final norm, the output
  head and the loss (the log-softmax of the logits). `activation_bytes` estimates a GPU run, and
  on the CPU each block keeps two tensors more, which CUDA kernels do not keep: each RMSNorm's
  fp32 normalized input (the CPU runs the composite RMSNorm) and a copy of the attention output
  with its heads merged. The table's last line checks that the measurement of the blocks less the
  estimate is exactly these two.
- Parameters, gradients and AdamW state (both moments and the step counts): the bytes of their
  tensors after one optimizer step, before the gradients are dropped.
- Training memory = peak activations + parameters + gradients + AdamW state, the sum that
  `arbiter.config.estimate.training_memory_bytes` estimates (it counts the gradients as alive
  beside all the activations, as they are from the second micro-batch of a gradient-accumulation
  step on). That estimate is for a GPU and adds a 512 MiB floor for the CUDA context and
  workspaces; a CPU has none, so the ratio is taken without it (the table shows the floor
  separately).
- Cross-check: the growth of the process's peak resident set (`resource.getrusage`) from just
  before the model is built to the end of the timed steps. It also holds temporaries, gradients
  in flight, allocator slack and the thread pools, so it should exceed the measured sum somewhat.
  Each configuration runs in a fresh subprocess, so that peaks do not mix.

Seconds per step: the median of `--steps` timed steps (forward, fp32 cross-entropy, backward,
gradient clipping, AdamW step, zero_grad, as in `arbiter.core.loop`) after one warm-up step,
run without the hooks; checkpointing's cost = median(on) / median(off) - 1.

    python benchmarks/memory.py [--layers 48] [--dim 256] [--seq-len 256] [--batch-size 4]
                                [--steps 5] [--threads 2] [--smoke-test] [--no-write]

It prints markdown tables and, unless `--no-write` or `--smoke-test`, appends them to
`docs/benchmarks.md` with the date, the command and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from random_tokens import write_random_tokens
from report import REPORT, Started, publish

from arbiter.config.estimate import RUNTIME_OVERHEAD_BYTES, activation_bytes, training_memory_bytes
from arbiter.config.loading import load_config
from arbiter.config.schema import Config
from arbiter.config.templates import find_template
from arbiter.config.trials import trial_config
from arbiter.core.data import IGNORE_INDEX, Task, make_task
from arbiter.core.model import build_model
from arbiter.core.optim import build_optimizer
from arbiter.core.precision import Precision, resolve_precision

TEMPLATE = "deep_narrow_template"
MIB = 2**20
TOKENS_PER_FILE = 2**20  # random ids in train.bin and in val.bin (2 MiB each)
BLOCKS, OUTSIDE = "blocks", "outside"


@dataclass(frozen=True)
class Shape:
    layers: int
    dim: int
    heads: int
    seq_len: int
    batch_size: int
    vocab_size: int

    def name(self) -> str:
        return (
            f"{self.layers} x {self.dim}, {self.heads} heads, batch {self.batch_size} x "
            f"{self.seq_len}, vocab {self.vocab_size}"
        )


def make_config(shape: Shape, checkpointing: bool, data: Path, precision: str) -> Config:
    """The deep-and-narrow template's run settings at `shape`, on the CPU."""
    template = load_config(find_template(TEMPLATE))
    return trial_config(
        template.run_settings(),
        {
            "model.n_layers": shape.layers,
            "model.dim": shape.dim,
            "model.n_heads": shape.heads,
            "model.vocab_size": shape.vocab_size,
            "model.flash_attention": False,  # CUDA only
            "training.seq_len": shape.seq_len,
            "training.batch_size": shape.batch_size,
            "training.gradient_accumulation": 1,
            "training.gradient_checkpointing": checkpointing,
            "training.precision": precision,
            "training.device": "cpu",
            "data.path": str(data),
        },
    )


# --- in the worker subprocess: one configuration -------------------------------------------


class SavedTensors:
    """Weak references to the storages of the tensors autograd saves; `poll` sums the live ones."""

    def __init__(self, model: torch.nn.Module) -> None:
        owned = [*model.parameters(), *model.buffers()]
        self.excluded = {t.untyped_storage().data_ptr() for t in owned}
        self.refs: list[tuple[weakref.ref, str]] = []
        self.region = OUTSIDE
        self.polls: list[dict[str, int]] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.track(tensor)
        return tensor  # autograd keeps exactly what it would keep without the hook

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.excluded:
            self.refs.append((weakref.ref(storage), self.region))

    def poll(self) -> None:
        """Note the bytes of the live saved storages, each once, by region."""
        live: dict[int, tuple[int, str]] = {}
        kept = []
        for ref, region in self.refs:
            storage = ref()
            if storage is None:
                continue  # freed: the backward pass is done with it
            kept.append((ref, region))
            live.setdefault(storage.data_ptr(), (storage.nbytes(), region))  # first save wins
        self.refs = kept
        totals = {BLOCKS: 0, OUTSIDE: 0}
        for nbytes, region in live.values():
            totals[region] += nbytes
        self.polls.append(totals)


@contextlib.contextmanager
def tracking_recomputation(saved: SavedTensors) -> Iterator[bool]:
    """Also track the tensors that gradient checkpointing recomputes in the backward pass, and
    poll once each block is recomputed. Yields False where torch has no `_recomputation_hook`."""
    original = getattr(torch_checkpoint, "_recomputation_hook", None)
    if original is None:
        yield False
        return

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            inner = self.pack_hook

            def pack_hook(x: torch.Tensor) -> Any:
                saved.track(x)
                return inner(x)

            self.pack_hook = pack_hook

        def __exit__(self, *exc: Any) -> Any:
            result = super().__exit__(*exc)
            saved.poll()  # the block's activations are all back, none used yet
            return result

    torch_checkpoint._recomputation_hook = Recording
    try:
        yield True
    finally:
        torch_checkpoint._recomputation_hook = original


def forward_loss(model: torch.nn.Module, task: Task, precision: Precision) -> torch.Tensor:
    x, y = task.train_batch()
    with precision.autocast():
        logits = model(x)
    # fp32 cross-entropy, as arbiter.core.loop computes it
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


def finish_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> None:
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
    optimizer.step()


def storage_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of the distinct storages of `tensors`."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measured_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task, config: Config
) -> dict[str, Any]:
    """One training step with the saved tensors tracked; the parts of its memory."""
    precision = resolve_precision(config.training.precision, torch.device("cpu"))
    saved = SavedTensors(model)

    def enter(region: str) -> Any:
        def hook(_module: torch.nn.Module, _args: Any) -> None:
            saved.region = region

        return hook

    # Between the embedding (its dropout runs first) and the final norm: the blocks.
    handles = [
        model.drop.register_forward_pre_hook(enter(BLOCKS)),
        model.norm.register_forward_pre_hook(enter(OUTSIDE)),
    ]
    try:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
            loss = forward_loss(model, task, precision)
        saved.poll()  # the end of the forward pass
        saved.region = BLOCKS  # only blocks are recomputed
        with tracking_recomputation(saved) as recompute_tracked:
            loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    finish_step(model, optimizer, config.training.grad_clip)
    params = list(model.parameters())
    states = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    result = {
        "activations": max(p[BLOCKS] + p[OUTSIDE] for p in saved.polls),
        "blocks": max(p[BLOCKS] for p in saved.polls),
        "polls": len(saved.polls),
        "recompute_tracked": recompute_tracked,
        "params": storage_bytes(params),
        "grads": storage_bytes([p.grad for p in params if p.grad is not None]),
        "optimizer": storage_bytes(states),
        "n_params": sum(p.numel() for p in params),
    }
    optimizer.zero_grad(set_to_none=True)
    return result


def resident_bytes() -> int:
    """The process's resident set now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_resident_bytes()


def peak_resident_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration, in its own process: timed steps and peak RSS, then the measured step."""
    torch.set_num_threads(spec["threads"])
    config = Config.model_validate(spec["config"])
    t = config.training
    precision = resolve_precision(t.precision, torch.device("cpu"))
    task = make_task(config)
    # A step of a one-layer copy first: the library code, thread pools and kernels that any
    # step loads are then resident before the baseline, and only the model's memory is measured.
    warm = trial_config(config.model_dump(mode="json"), {"model.n_layers": 1})
    warm_model = build_model(warm)
    warm_model.gradient_checkpointing = t.gradient_checkpointing
    forward_loss(warm_model, task, precision).backward()
    finish_step(warm_model, build_optimizer(warm_model, t, precision.device), t.grad_clip)
    del warm_model
    gc.collect()
    rss_before = resident_bytes()
    torch.manual_seed(t.seed)
    model = build_model(config)
    model.gradient_checkpointing = t.gradient_checkpointing
    model.train()
    optimizer = build_optimizer(model, t, precision.device)
    times = []
    for _ in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        loss = forward_loss(model, task, precision)
        loss.backward()
        finish_step(model, optimizer, t.grad_clip)
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    del loss
    rss_growth = peak_resident_bytes() - rss_before
    gc.collect()
    measured = measured_step(model, optimizer, task, config)
    return {**measured, "times": times[spec["warmup"] :], "rss_growth": rss_growth}


# --- in the parent process -----------------------------------------------------------------


def run_worker(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    spec = {
        "config": config.model_dump(mode="json"),
        "threads": args.threads,
        "warmup": 1,
        "steps": args.steps,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    shape: Shape
    checkpointing: bool
    config: Config
    result: dict[str, Any]

    @property
    def states(self) -> int:
        r = self.result
        return r["params"] + r["grads"] + r["optimizer"]

    @property
    def total(self) -> int:
        return self.result["activations"] + self.states

    @property
    def step(self) -> float:
        return statistics.median(self.result["times"])


def mib(n_bytes: float) -> str:
    return f"{n_bytes / MIB:,.1f}"


def format_tables(rows: Sequence[Row]) -> tuple[str, str]:
    memory = [
        "| model | gradient checkpointing | saved activations, peak (MiB) | of which blocks "
        "(MiB) | `activation_bytes` estimate (MiB) | estimate / blocks | params + grads + "
        "AdamW (MiB) | training memory (MiB) | `training_memory_bytes` estimate (MiB) "
        "| estimate / measured |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    speed = [
        "| model | gradient checkpointing | s/step (median) | range | step-time cost "
        "| peak RSS growth (MiB) | RSS growth / training memory |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    plain_steps = {row.shape: row.step for row in rows if not row.checkpointing}
    for row in rows:
        r = row.result
        model = "" if row.checkpointing else row.shape.name()
        on = "on" if row.checkpointing else "off"
        act_estimate = activation_bytes(row.config)
        train_estimate = training_memory_bytes(row.config) - RUNTIME_OVERHEAD_BYTES
        memory.append(
            f"| {model} | {on} | {mib(r['activations'])} | {mib(r['blocks'])} "
            f"| {mib(act_estimate)} | {act_estimate / r['blocks']:.2f} | {mib(row.states)} "
            f"| {mib(row.total)} | {mib(train_estimate)} + {mib(RUNTIME_OVERHEAD_BYTES)} "
            f"| {train_estimate / row.total:.2f} |"
        )
        plain = plain_steps.get(row.shape)
        cost = f"{row.step / plain - 1:+.1%}" if row.checkpointing and plain else ""
        speed.append(
            f"| {model} | {on} | {row.step:.3f} | {min(r['times']):.3f} – {max(r['times']):.3f} "
            f"| {cost} | {mib(r['rss_growth'])} | {r['rss_growth'] / row.total:.2f} |"
        )
    return "\n".join(memory), "\n".join(speed)


def cpu_only_bytes(config: Config) -> int:
    """Activations the blocks keep on the CPU that `activation_bytes`, a GPU estimate, leaves out
    (see its docstring): each RMSNorm's fp32 normalized input and the attention output with its
    heads merged, per token and block; in the backward pass of checkpointing, one block's."""
    m, t = config.model, config.training
    act = 4 if t.precision == "fp32" else 2
    per_block = t.batch_size * config.seq_len() * (2 * 4 * m.dim + act * m.dim)
    return per_block * (1 if t.gradient_checkpointing else m.n_layers)


def goals(rows: Sequence[Row]) -> list[str]:
    """The two goals, met or not, with the figures."""
    lines = []
    by_shape: dict[Shape, dict[bool, Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, {})[row.checkpointing] = row
    for shape, pair in by_shape.items():
        if len(pair) == 2:
            off, on = pair[False].result, pair[True].result
            fall = 1 - on["activations"] / off["activations"]
            met = "met" if fall > 0.5 else "NOT met"
            lines.append(
                f"- Goal: activation memory falls by more than half with gradient checkpointing. "
                f"{shape.name()}: saved activations {mib(off['activations'])} -> "
                f"{mib(on['activations'])} MiB (-{fall:.0%}), blocks {mib(off['blocks'])} -> "
                f"{mib(on['blocks'])} MiB: {met}."
            )
    ratios = []
    for row in rows:
        ratios.append(activation_bytes(row.config) / row.result["blocks"])
        ratios.append((training_memory_bytes(row.config) - RUNTIME_OVERHEAD_BYTES) / row.total)
    worst = max(abs(r - 1) for r in ratios)
    met = "met" if worst <= 0.2 else "NOT met"
    lines.append(
        "- Goal: the `--dry-run` estimate within 20% of the measurement. Estimate / measured "
        f"ranges over {min(ratios):.2f} – {max(ratios):.2f} (activations of the blocks and "
        f"training memory, every row): {met}."
    )
    gaps = [
        row.result["blocks"] - activation_bytes(row.config) - cpu_only_bytes(row.config)
        for row in rows
    ]
    lines.append(
        "- The blocks' measurement less the estimate is what only the CPU keeps (each RMSNorm's "
        "fp32 normalized input and the attention output with merged heads: "
        f"{mib(cpu_only_bytes(rows[0].config))} MiB in the first row), to within "
        f"{max(abs(gap) for gap in gaps):,} bytes in every row."
    )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[48], help="depths (48)")
    parser.add_argument("--dim", type=int, nargs="+", default=[256], help="widths (256)")
    parser.add_argument("--heads", type=int, help="attention heads (default: dim / 64)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (256)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step (4)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="vocabulary (8192)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="fp32 (default) or bf16"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per config (5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--no-write", action="store_true", help=f"do not append to {REPORT.name}")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="a tiny model, two steps, nothing written: checks that it runs",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "threads", "seq_len", "batch_size", "vocab_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.vocab_size > 2**16:
        parser.error("--vocab-size: token files are uint16, so at most 65536")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.smoke_test:
        args.layers, args.dim, args.heads = [4], [64], 2
        args.seq_len, args.batch_size, args.vocab_size, args.steps = 32, 2, 512, 2
    shapes = [
        Shape(
            layers,
            dim,
            args.heads or max(dim // 64, 1),
            args.seq_len,
            args.batch_size,
            args.vocab_size,
        )
        for layers in args.layers
        for dim in args.dim
    ]
    started = Started()
    rows = []
    with tempfile.TemporaryDirectory(prefix="arbiter-bench-") as tmp:
        data = Path(tmp)
        write_random_tokens(data, args.vocab_size, TOKENS_PER_FILE)
        for shape in shapes:
            for checkpointing in (False, True):
                config = make_config(shape, checkpointing, data, args.precision)
                rows.append(Row(shape, checkpointing, config, run_worker(config, args)))
                print(
                    f"{shape.name()}, checkpointing {'on' if checkpointing else 'off'}: done",
                    file=sys.stderr,
                    flush=True,
                )
    memory, speed = format_tables(rows)
    untracked = [row for row in rows if row.checkpointing and not row.result["recompute_tracked"]]
    notes = (
        "Saved activations: the storages autograd holds for the backward pass (weak references "
        "taken by a saved-tensors pack hook, parameters and buffers left out, each storage "
        "counted once), at their peak over the end of the forward pass and, with checkpointing, "
        "the moment after each block is recomputed in the backward pass. Blocks: the part "
        "saved between the embedding and the final norm, which `activation_bytes` estimates; "
        "the rest is the final norm, the head and the fp32 log-softmax of the loss. Params + "
        "grads + AdamW: their tensors after one step. Training memory = peak saved activations "
        "+ params + grads + AdamW, what `training_memory_bytes` estimates; its estimate is "
        f"shown as the figure compared + the {mib(RUNTIME_OVERHEAD_BYTES)} MiB floor it adds "
        "for a CUDA context, which a CPU run does not have. Peak RSS growth: ru_maxrss at the "
        "end of the timed steps minus the resident set before the model was built, each "
        "configuration in a fresh process (it also holds temporaries, gradients in flight and "
        f"allocator slack). s/step: median of {args.steps} steps after one warm-up, "
        f"{args.precision} on the CPU with {args.threads} torch threads; step-time cost = "
        "median(on) / median(off) - 1."
    )
    if untracked:
        notes += (
            " This torch has no torch.utils.checkpoint._recomputation_hook: the checkpointed "
            "rows miss the recomputed block's activations."
        )
    text = f"{memory}\n\n{speed}\n\n" + "\n".join(goals(rows)) + f"\n\n{notes}"
    title = (
        "memory with and without gradient checkpointing, measured against the --dry-run estimate"
    )
    publish(started, title, text, write=not (args.no_write or args.smoke_test))
    return 0


if __name__ == "__main__":
    sys.exit(main())
