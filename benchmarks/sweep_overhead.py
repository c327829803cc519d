"""Sweep overhead: an 8-trial sweep's makespan through `arbiter sweep` against raw Ray Tune.

Both drivers are separate processes that join the same `ray start` cluster (CPU trials, one
CPU each) and run the same trainable (`arbiter.tune.trainable.run_trial`) on the same grid, so the
difference is what Arbiter adds around Tune: template loading and validation of every trial,
the experiment record, the progress callback, status at the end. The raw driver is this file
run with `--raw`: a minimal Tuner, as a user of plain Ray Tune would write it.

The ideal makespan is the sum of the trials' own times (`time_total_s` of their last result)
divided by the concurrency. Prints a markdown table and appends it to docs/benchmarks.md.

    python benchmarks/sweep_overhead.py [--steps 1250] [--concurrency 2] [--smoke-test]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interrupts import run_through_interrupts
from report import Started, publish

TEMPLATE = """
[model]
dim = 64
n_layers = 1
n_heads = 4
mlp = "gelu"
mlp_dim = 256
[training]
batch_size = 512
steps = {steps}
warmup_steps = 10
eval_interval = 250
precision = "fp32"
[checkpoint]
interval = 1000
[logging]
log_interval = 250
enable_tensorboard = false
[sweep]
[sweep.space]
"training.seed" = [0, 1, 2, 3]
"training.weight_decay" = [0.1, 1.0]
"""


def raw_tune(template: Path, address: str, storage: Path, concurrency: int) -> None:
    """The baseline driver: plain Ray Tune around the same trainable and grid."""
    import ray
    from ray import tune

    from arbiter.config.loading import load_config
    from arbiter.experiments.location import Location
    from arbiter.tune.search_space import to_param_space
    from arbiter.tune.trainable import local_scratch, run_trial, scratch_name

    config = load_config(template)
    scratch = scratch_name(Location.of(storage / "raw"))
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=config.run_settings(), cpus=1, scratch=scratch),
        {"cpu": 1},
    )
    tune.Tuner(
        trainable,
        param_space=to_param_space(config.sweep.axes(), "grid"),
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name="raw", storage_path=str(storage), verbose=0),
    ).fit()
    shutil.rmtree(local_scratch(scratch), ignore_errors=True)


def makespan(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    code = run_through_interrupts(command, env=env, stdout=subprocess.DEVNULL)
    if code:
        raise SystemExit(f"`{' '.join(command[1:])}` failed (exit code {code})")
    return time.perf_counter() - start


def ideal(experiment: Path, concurrency: int) -> float:
    """Sum of the trials' own run times over the concurrency: no scheduling overhead at all."""
    total = 0.0
    for result in experiment.glob("*/result.json"):
        last = json.loads(result.read_text().splitlines()[-1])
        total += last["time_total_s"]
    return total / concurrency


def start_cluster(cpus: int, env: dict[str, str], gpus: int = 0) -> tuple[subprocess.Popen, str]:
    """A `ray start --head` with `cpus` CPUs and `gpus` GPUs on a free loopback port, once it
    answers: the process and its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, capture_output=True)
    head = subprocess.Popen(
        [
            *(ray, "start", "--head", f"--port={port}", "--block", f"--num-cpus={cpus}"),
            *(f"--num-gpus={gpus}", "--include-dashboard=false", "--disable-usage-stats"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    while subprocess.run(
        [ray, "status", f"--address={address}"], env=env, capture_output=True
    ).returncode:
        if head.poll() is not None:
            raise SystemExit("ray start failed")
        time.sleep(1)
    return head, address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 1250 steps: ~30 s per trial when two share a 2-core machine
    parser.add_argument("--steps", type=int, default=1250, help="steps per trial")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--smoke-test", action="store_true", help="tiny trials; write nothing")
    parser.add_argument(
        "--raw", nargs=3, metavar=("TEMPLATE", "ADDRESS", "STORAGE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.raw:
        raw_tune(Path(args.raw[0]), args.raw[1], Path(args.raw[2]), args.concurrency)
        return
    steps = 50 if args.smoke_test else args.steps
    started = Started()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    head, address = start_cluster(args.concurrency, env)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            template = work / "grid.toml"
            template.write_text(TEMPLATE.format(steps=steps))
            arbiter_s = makespan(
                [
                    sys.executable,
                    "-m",
                    "arbiter",
                    "sweep",
                    "--template",
                    str(template),
                    "--gpus",
                    "0",
                    "--address",
                    address,
                    "--storage",
                    str(work),
                    "--name",
                    "arbiter",
                ],
                env,
            )
            raw_s = makespan(
                [
                    sys.executable,
                    __file__,
                    "--concurrency",
                    str(args.concurrency),
                    "--raw",
                    str(template),
                    address,
                    str(work),
                ],
                env,
            )
            rows = [
                ("arbiter sweep", arbiter_s, ideal(work / "arbiter", args.concurrency)),
                ("raw Ray Tune", raw_s, ideal(work / "raw", args.concurrency)),
            ]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait()
    table = [
        "| driver | makespan (s) | ideal (s) | over ideal | vs raw Tune |",
        "|---|---|---|---|---|",
    ]
    for name, span, best in rows:
        table.append(
            f"| {name} | {span:.1f} | {best:.1f} | {span / best - 1:+.1%} | "
            f"{span / raw_s - 1:+.1%} |"
        )
    publish(
        started,
        "sweep overhead, arbiter sweep vs raw Ray Tune",
        f"8 trials (1 x 64 modular model, {steps} steps each), CPU trials on a `ray start` "
        f"cluster with {args.concurrency} CPUs that both drivers join; ideal = sum of the "
        f"trials' own times / {args.concurrency}.\n\n" + "\n".join(table),
        write=not args.smoke_test,
    )


if __name__ == "__main__":
    main()
