"""Several trials per GPU: trials per hour of one sweep at `--trials-per-gpu` K = 1, 2, 4, 8, 16
on one GPU, with the GPU's utilisation and memory while it runs.

Each K runs the same 16-trial sweep (the quickstart's 1 x 64 model on a + b mod 97, `--steps`
steps, 16 seeds) through `arbiter sweep --gpus 1 --trials-per-gpu K` on one `ray start` cluster
with that GPU and 16 CPUs, so K trials share the GPU at a time; trials per hour is 16 over the
sweep's makespan. GPU utilisation (mean) and memory (peak) are sampled from `nvidia-smi` every
second. `--mps` repeats every K with CUDA MPS running (the processes then share the GPU's
compute instead of taking turns), where `nvidia-cuda-mps-control` exists. `--set K=V` changes
the model for every sweep (grokking_regime.toml's network: `--set model.preset=power`, and the
keys this template sets itself, which win over a preset's: `--set model.dim=128 --set
model.n_layers=2 --set model.mlp=relu --set model.mlp_dim=512`).

Without a GPU it runs the smoke version on a logical GPU (`ray start --num-gpus 1`, the trials
train on the CPU): that checks the packing runs, not its speed; the table says the figure needs
a GPU.
Prints a markdown table and appends it to docs/benchmarks.md (on a GPU only).

    python benchmarks/packing.py [--steps 2000] [--k 1 2 4 8 16] [--mps] [--set K=V ...]
    python benchmarks/packing.py --smoke-test   # K = 1, 4: 8 trials of 30 steps; writes nothing
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from report import Started, publish
from sweep_overhead import makespan, start_cluster

TRIALS = 16
SMOKE_TRIALS = 8  # enough for two rounds at the smoke test's largest K (4)
# The quickstart's model and training, without its stop rule (every trial runs every step).
TEMPLATE = """
[model]
dim = 64
n_layers = 1
n_heads = 4
mlp = "gelu"
mlp_dim = 256
[training]
batch_size = 512
weight_decay = 1.0
steps = {steps}
warmup_steps = 10
eval_interval = 100
[data]
modulus = 97
train_fraction = 0.3
[checkpoint]
interval = {steps}
[logging]
log_interval = 100
enable_tensorboard = false
[sweep]
[sweep.space]
"training.seed" = {seeds}
"""


class GpuSampler:
    """`nvidia-smi` every second in a thread: mean utilisation (%) and peak memory (MiB)."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.memory: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = "--query-gpu=utilization.gpu,memory.used"
        while not self._stop.wait(1.0):
            done = subprocess.run(
                ["nvidia-smi", query, "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 and done.stdout.strip():
                util, memory = (float(x) for x in done.stdout.split(","))
                self.util.append(util)
                self.memory.append(memory)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> tuple[str, str]:
        if not self.util:
            return "-", "-"
        return f"{sum(self.util) / len(self.util):.0f}%", f"{max(self.memory):,.0f}"


def mps(start: bool, env: dict[str, str]) -> bool:
    """Start (or stop) the CUDA MPS control daemon; False where there is none."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return False
    if start:
        return subprocess.run([control, "-d"], env=env).returncode == 0
    subprocess.run([control], input="quit\n", text=True, env=env)
    return True


def measure(
    ks: list[int],
    trials: int,
    template: Path,
    sets: list[str],
    work: Path,
    env: dict[str, str],
    label: str,
):
    """One cluster of `trials` CPUs, one sweep of `trials` trials per K: rows (mode, K,
    makespan, trials/hour, util, memory)."""
    gpus = 1
    head, address = start_cluster(trials, env, gpus)
    rows = []
    try:
        for k in ks:
            with GpuSampler() as sampler:
                span = makespan(
                    [
                        *(sys.executable, "-m", "arbiter", "sweep", "--template", str(template)),
                        *("--gpus", "1", "--trials-per-gpu", str(k), "--address", address),
                        *("--storage", str(work), "--name", f"{label}-k{k}"),
                        *(a for kv in sets for a in ("--set", kv)),
                    ],
                    env,
                )
            util, memory = sampler.summary()
            rows.append((label, k, span, trials / span * 3600, util, memory))
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per trial")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--set", action="append", default=[], metavar="K=V", help="model change")
    parser.add_argument("--mps", action="store_true", help="also with CUDA MPS")
    parser.add_argument("--smoke-test", action="store_true", help="K = 1, 4; 8 x 30 steps")
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    smoke = args.smoke_test or not on_gpu  # without a GPU the speed means nothing: the smoke run
    steps = 30 if smoke else args.steps
    ks = [1, 4] if smoke else args.k
    trials = SMOKE_TRIALS if smoke else TRIALS
    started = Started()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = work / "packing.toml"
        seeds = list(range(trials))
        template.write_text(TEMPLATE.format(steps=steps, seeds=seeds))
        rows = measure(ks, trials, template, args.set, work, env, "plain")
        if args.mps and on_gpu and mps(True, env):
            try:
                rows += measure(ks, trials, template, args.set, work, env, "MPS")
            finally:
                mps(False, env)
    base_rate = {label: rate for label, k, _, rate, *_ in rows if k == ks[0]}
    table = [
        f"| mode | trials per GPU | makespan (s) | trials/hour | vs K = {ks[0]} | GPU util "
        "(mean) | GPU memory (peak MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, k, span, rate, util, memory in rows:
        table.append(
            f"| {label} | {k} | {span:.1f} | {rate:,.0f} | {rate / base_rate[label]:.2f}x | "
            f"{util} | {memory} |"
        )
    device = torch.cuda.get_device_name(0) if on_gpu else "a logical GPU (trials on the CPU)"
    note = "" if on_gpu else " The speed-up needs a real GPU: here every trial trains on the CPU."
    publish(
        started,
        "packing, trials per hour at K trials per GPU",
        f"{trials} trials of the quickstart's model{''.join(' ' + s for s in args.set)}, "
        f"{steps} steps each, on one GPU ({device}) "
        f"of a `ray start` cluster with {trials} CPUs.{note} Goal on an H100: K = 8 at least "
        f"8x the trials/hour of K = 1 for quickstart-sized models.\n\n" + "\n".join(table),
        write=on_gpu and not args.smoke_test,
    )


if __name__ == "__main__":
    main()
