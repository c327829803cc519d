"""Tokens per second and MFU of the training core on a CUDA GPU, and where a step's time goes.

The cases are the configs Arbiter ships for GPUs, in bf16, at their own batch size, gradient
accumulation and sequence length, on random tokens: the 1024-wide cells of
`deep_narrow_template.toml` (24 and 80 layers, gradient checkpointing on as the template has it,
and off) and the `high_vram` tier (32 x 768). Each runs with PyTorch's SDPA and with flash-attn
(where it is installed; a row says so where it is not), eager and under `torch.compile`.

Method. The figures are the core's own: `arbiter.core.loop.train` runs 2N + 1 steps with
`log_interval = N`, no evaluation after the first log step, no checkpoints and no TensorBoard.
Its metrics row at step 2N carries `tokens_per_s` and `mfu` over steps N+1 .. 2N (the loop reads
its clock after the log step's host sync, so the window holds exactly N steps of GPU work) and
the peak allocated memory. Steps 1 .. N are the warm-up (cuBLAS set-up, the allocator, and the
compilation under `torch.compile`). MFU counts the model's FLOPs (`arbiter.config.estimate`: 6 per
weight per token plus attention), not the recomputation of gradient checkpointing, against the
GPU's dense bf16 peak from `arbiter.core.hardware`. The estimate `--dry-run` prints for the same
config stands beside the measured peak memory.

Two probes of one short eager run of the first case follow the table:
- host syncs: `torch.cuda.set_sync_debug_mode("warn")` makes every synchronizing call warn; the
  steps during which a warning came are listed, to check that only log steps sync;
- a `torch.profiler` table of three steps (the kernels by GPU time) goes to `--profile FILE`.

    python benchmarks/gpu_throughput.py [--steps N] [--cases deep24,deep80,high] [--budget-s S]
                                        [--profile FILE] [--smoke-test] [--no-write]

Without CUDA it says so and measures nothing (`make bench` on a CPU machine); `--smoke-test` runs
a tiny model on the CPU through the same code instead. It prints a markdown table and, unless
`--no-write` or `--smoke-test`, appends it to `docs/benchmarks.md` with the command and machine.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from random_tokens import write_random_tokens
from report import REPORT, Started, publish
from step_hook import StepHook

from arbiter.config.estimate import training_memory_bytes
from arbiter.config.loading import load_config
from arbiter.config.schema import Config
from arbiter.core.data import make_task
from arbiter.core.loop import train
from models import flash_attn_available

ROOT = Path(__file__).resolve().parents[1]
NEVER = 10**9
TOKENS_PER_FILE = 1 << 21  # 2M random ids per file: far more windows than a run draws
GIB = 2**30


@dataclass(frozen=True)
class Case:
    """A shipped config with `--set` overrides."""

    key: str
    name: str
    source: Path
    sets: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """How one case runs: the attention kernel, compilation, gradient checkpointing."""

    kernel: str  # "sdpa" | "flash"
    compile: bool
    checkpointing: bool | None = None  # None: as the config has it

    def sets(self) -> list[str]:
        sets = [
            f"model.flash_attention={str(self.kernel == 'flash').lower()}",
            f"training.compile={str(self.compile).lower()}",
        ]
        if self.checkpointing is not None:
            sets.append(f"training.gradient_checkpointing={str(self.checkpointing).lower()}")
        return sets


DEEP = ROOT / "configs" / "sweep_templates" / "deep_narrow_template.toml"
CASES = (
    Case("deep24", "deep & narrow 24 x 1024", DEEP, ("model.n_layers=24", "model.dim=1024")),
    Case("deep80", "deep & narrow 80 x 1024", DEEP, ("model.n_layers=80", "model.dim=1024")),
    Case("high", "high_vram 32 x 768", ROOT / "configs" / "high_vram.toml", ()),
)
SMOKE_CASES = (
    Case(
        "smoke",
        "smoke: 2 x 64 on the CPU",
        DEEP,
        (
            "model.n_layers=2",
            "model.dim=64",
            "model.n_heads=2",
            "model.vocab_size=512",
            "training.seq_len=64",
            "training.batch_size=2",
            "training.device=cpu",
            "training.precision=fp32",
        ),
    ),
)
# (case, variant) in order of interest: a time budget that runs out drops the last ones.
PLAN = (
    ("deep24", Variant("sdpa", False)),
    ("deep24", Variant("sdpa", True)),
    ("deep24", Variant("sdpa", False, checkpointing=False)),
    ("deep24", Variant("sdpa", True, checkpointing=False)),
    ("deep80", Variant("sdpa", False)),
    ("deep80", Variant("sdpa", True)),
    ("high", Variant("sdpa", False)),
    ("high", Variant("sdpa", True)),
    ("deep80", Variant("sdpa", True, checkpointing=False)),
    ("deep80", Variant("sdpa", False, checkpointing=False)),
    ("deep24", Variant("flash", False)),
    ("deep24", Variant("flash", True, checkpointing=False)),
    ("high", Variant("flash", False)),
    ("smoke", Variant("sdpa", False)),
    ("smoke", Variant("flash", False)),
)


@dataclass
class Row:
    case: Case
    variant: Variant
    result: dict[str, Any] | None = None  # the core's metrics row at step 2N
    seconds: float = 0.0  # the whole run: building, warm-up (compilation) and measured steps
    config: Config | None = None
    note: str = ""


def make_config(case: Case, variant: Variant, data: Path, steps: int) -> Config:
    sets = [
        *variant.sets(),
        f"data.path={data}",
        "training.precision=bf16",
        "checkpoint.enable=false",
        "logging.enable_tensorboard=false",
        f"logging.log_interval={steps}",
        f"training.eval_interval={NEVER}",
        f"training.steps={2 * steps + 1}",
        "training.warmup_steps=0",
        *case.sets,  # last: the smoke case's device and precision win
    ]
    return load_config(case.source, sets)


def measure(row: Row, data: Path, steps: int) -> None:
    """Train the row's config for 2N + 1 steps; keep the metrics row of step 2N."""
    config = make_config(row.case, row.variant, data, steps)
    row.config = config
    if row.variant.kernel == "flash" and not flash_attn_available():
        row.note = "flash-attn not installed"
        return
    reports: dict[int, dict[str, Any]] = {}
    # Each row compiles afresh, for its own shapes; what the rows before it left is freed
    # before the peak-memory counter restarts.
    torch.compiler.reset()
    _free_memory()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="arbiter-gpu-bench-") as out:
        train(config, Path(out), lambda metrics, _: reports.update({metrics["step"]: metrics}))
    row.seconds = time.perf_counter() - start
    row.result = reports[2 * steps]
    if row.result["attention"] != row.variant.kernel:
        row.note = f"ran {row.result['attention']}"
    _free_memory()


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def probe(case: Case, data: Path, profile: Path | None) -> str:
    """Steps that synced with the host, and a profile of three steps (see the module doc)."""
    log_interval = 4
    config = make_config(case, Variant("sdpa", False), data, log_interval)  # 9 steps, logs at 4, 8
    accumulation = config.training.gradient_accumulation
    cuda = torch.cuda.is_available() and config.training.device != "cpu"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = torch.profiler.profile(activities=activities)
    synced: dict[int, int] = {}
    seen = [0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def hook(step: int) -> None:  # runs at the start of step `step + 1` (1-based)
            if step > 0 and len(caught) > seen[0]:
                synced[step] = len(caught) - seen[0]  # during step `step` (1-based)
            if step == 4:  # steps 5-7 (1-based): no log step among them
                profiler.start()
            elif step == 7:
                if cuda:
                    torch.cuda.synchronize()
                profiler.stop()
            seen[0] = len(caught)  # the profiler's own syncs are not the loop's

        task = StepHook(make_task(config), accumulation, hook)
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with tempfile.TemporaryDirectory(prefix="arbiter-gpu-probe-") as out:
                train(config, Path(out), task=task)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    if profile is not None:
        sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort_by, row_limit=25)
        profile.write_text(f"{case.name}, eager SDPA, steps 5-7 (1-based)\n\n{table}\n")
    if not cuda:
        return "Host syncs: not probed (no CUDA)."
    listed = ", ".join(f"step {s}: {n}" for s, n in sorted(synced.items())) or "none"
    return (
        f"Host syncs during steps 1-8 ({case.name}, eager; log steps 4 and 8, the first of "
        f"which also evaluates): {listed}."
    )


def format_table(rows: Sequence[Row], steps: int) -> str:
    lines = [
        "| model | attention | compile | grad. checkpointing | tokens/s | MFU | peak memory "
        "| --dry-run estimate | run time | note |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        v, r = row.variant, row.result
        ckpt = "as config" if v.checkpointing is None else ("on" if v.checkpointing else "off")
        if row.config is not None and v.checkpointing is None:
            ckpt = "on" if row.config.training.gradient_checkpointing else "off"
        cells = ["", "", "", "", ""]
        if r is not None:
            peak = r["memory/peak_bytes"] / GIB
            estimate = training_memory_bytes(row.config) / GIB
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
            cells = [
                f"{r['tokens_per_s']:,.0f}",
                mfu,
                f"{peak:.1f} GiB",
                f"{estimate:.1f} GiB",
                f"{row.seconds:.0f} s",
            ]
        lines.append(
            f"| {row.case.name} | {v.kernel} | {'yes' if v.compile else 'no'} | {ckpt} | "
            + " | ".join(cells)
            + f" | {row.note} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="N: measured steps (default 20)")
    parser.add_argument(
        "--cases",
        default="deep24,high,deep80",
        help="comma-separated, in order: deep24, high, deep80 (default all three)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no further row after this many seconds (rows left out are listed)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="write the profile table here")
    parser.add_argument("--no-write", action="store_true", help=f"do not append to {REPORT.name}")
    parser.add_argument(
        "--smoke-test", action="store_true", help="a tiny model on the CPU; nothing written"
    )
    args = parser.parse_args(argv)
    known = {case.key: case for case in CASES}
    unknown = [key for key in args.cases.split(",") if key not in known]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; allowed: {', '.join(known)}")
    args.case_list = [known[key] for key in args.cases.split(",")]
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = args.case_list
    if args.smoke_test:
        cases, args.steps = SMOKE_CASES, 2
    elif not torch.cuda.is_available():
        print("no CUDA device here: the GPU throughput benchmark measures nothing (skipped)")
        return 0
    started = Started(uses_gpu=not args.smoke_test)
    begin = time.perf_counter()
    keys = [case.key for case in cases]
    rows = [Row(cases[keys.index(key)], v) for key, v in PLAN if key in keys]
    with tempfile.TemporaryDirectory(prefix="arbiter-gpu-tokens-") as folder:
        data = Path(folder)
        vocab_size = max(
            make_config(c, Variant("sdpa", False), data, 1).vocab_size() for c in cases
        )
        write_random_tokens(data, vocab_size, TOKENS_PER_FILE)
        notes = probe(cases[0], data, args.profile)
        print(notes, file=sys.stderr, flush=True)
        for row in rows:
            if args.budget_s is not None and time.perf_counter() - begin > args.budget_s:
                row.note = f"not run: past the {args.budget_s:.0f} s budget"
                continue
            try:
                measure(row, data, args.steps)
            except Exception as error:  # a failed row is a result too; the others still run
                row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
                _free_memory()
            print(format_table([row], args.steps).splitlines()[-1], file=sys.stderr, flush=True)
    rows.sort(key=lambda row: keys.index(row.case.key))  # stable: grouped by case, in plan order
    table = format_table(rows, args.steps)
    notes = (
        f"Each row trains {2 * args.steps + 1} steps and reports steps {args.steps + 1}-"
        f"{2 * args.steps} (the core's own tokens_per_s, mfu and peak memory at the log step "
        f"that ends them); {rows[0].config.training.precision} autocast, fp32 master weights, "
        "AdamW (fused on CUDA), random tokens. MFU "
        "counts model FLOPs only (no recomputation). Run time: the whole run of the row, "
        "building the model and compiling included (compile: torch.compile of the whole model). "
        + notes
    )
    publish(
        started,
        "GPU throughput and MFU of the training core",
        f"{table}\n\n{notes}",
        write=not (args.no_write or args.smoke_test),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
