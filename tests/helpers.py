"""Plain helpers the test modules import (`from helpers import ...`): the repository root, a tiny
run's TOML and `Config`, hand-made report trials, markdown table rows, the command line in a
subprocess, a bucket on the test S3 server (`S3`), and the check that a model's initial weights
are drawn as a reference network's (`assert_drawn_alike`). No fixtures here: those live in
conftest.py, which pytest loads by itself.

`pythonpath = ["tests"]` in pyproject.toml puts this folder on `sys.path`, so every test module
imports this one the same way from any subfolder of tests/."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from arbiter.config.schema import Config
from arbiter.experiments.trials import TrialStatus
from arbiter.report.data import TrialReport, trial_report

# The repository root, for tests that read its files (docker/, docs/, pyproject.toml) or run its
# scripts (benchmarks/).
ROOT = Path(__file__).resolve().parents[1]

RAY = str(Path(sys.executable).parent / "ray")

# A run that trains in seconds on a CPU: the 1-layer, 32-wide, 2-head model on a + b mod 23.
TINY_RUN = """\
[model]
dim = 32
n_layers = 1
n_heads = 2
[data]
modulus = 23
[training]
batch_size = 64
steps = {steps}
warmup_steps = 5
eval_interval = 50
[checkpoint]
interval = 50
[logging]
log_interval = 50
"""


def tiny_run(steps: int, tables: dict[str, str] | None = None) -> str:
    """TINY_RUN's TOML text for `steps` steps, with `tables` ("sweep.space" -> its lines) added:
    each table's lines go at its end (a new table where TINY_RUN has none), and a key given
    there replaces TINY_RUN's line for it, e.g. tiny_run(100, {"checkpoint": "interval = 250"})."""
    body: dict[str, list[str]] = {}
    for line in TINY_RUN.format(steps=steps).splitlines():
        if line.startswith("["):
            body[table := line.strip("[]")] = []
        else:
            body[table].append(line)
    for table, text in (tables or {}).items():
        extra = [line.strip() for line in text.strip().splitlines()]
        given = {line.split("=")[0].strip() for line in extra}
        kept = [line for line in body.get(table, []) if line.split("=")[0].strip() not in given]
        body[table] = kept + extra
    return "".join(
        f"[{table}]\n" + "".join(f"{line}\n" for line in lines) for table, lines in body.items()
    )


def tiny(dropout: float = 0.0, model=None, data=None, **training) -> Config:
    """The in-process `Config` of a 2-layer, 32-wide model on a + b mod 23 (60 steps on half the
    pairs); `model` and `data` update those tables, the keywords the `training` table."""
    return Config.model_validate(
        {
            "model": {"dim": 32, "n_layers": 2, "n_heads": 2, "dropout": dropout, **(model or {})},
            "data": {"modulus": 23, "train_fraction": 0.5, **(data or {})},
            "training": {
                "batch_size": 64,
                "steps": 60,
                "warmup_steps": 5,
                "eval_interval": 10,
                **training,
            },
            "checkpoint": {"interval": 20, "keep": 5},
            "logging": {"log_interval": 10, "enable_tensorboard": False},
        }
    )


def trial(tid: str, config: dict, rows: list[dict], status: str = "TERMINATED") -> TrialReport:
    """A report's trial `tid` with these swept `config` values and hand-made result `rows`."""
    values = [r["val/accuracy"] for r in rows]
    best = max(values) if values else None
    return trial_report(TrialStatus(tid, status, "", config, {}, best, None), rows)


def table_rows(output: str) -> list[list[str]]:
    """The cells of every body row of the markdown tables in `output` (headers left out)."""
    lines = [line.strip() for line in output.splitlines()]
    # a separator row: only pipes, dashes, colons and spaces (`|---|`, `| :--- | ---: |`)
    separator = [line.startswith("|") and "-" in line and not line.strip("|-: ") for line in lines]
    rows = []
    for line, is_separator, is_header in zip(
        lines, separator, [*separator[1:], False], strict=True
    ):
        if line.startswith("|") and not is_separator and not is_header:
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def arbiter(*argv) -> list[str]:
    return [sys.executable, "-m", "arbiter", *map(str, argv)]


def run(*argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(arbiter(*argv), capture_output=True, text=True, timeout=timeout)


def sweep_args(template: object, *, gpus: int, address: str, storage: object, name: str) -> list:
    """`arbiter sweep`'s arguments for a test sweep of `template` on the Ray cluster `address`;
    more flags may follow them."""
    return [
        *("sweep", "--template", template, "--gpus", gpus, "--address", address),
        *("--storage", storage, "--name", name),
    ]


def start(*argv, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The command line in the background (a sweep's driver), its output merged on `stdout`;
    `env` is added to this process's environment."""
    return subprocess.Popen(
        arbiter(*argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def status(name: str, storage: Path) -> dict:
    done = run("status", name, "--storage", storage, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now at `address`."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    """Wait until `process` accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server on {host}:{port} exited"
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on {host}:{port}"
        time.sleep(0.2)


def start_ray_head(num_cpus: int, num_gpus: int) -> tuple[subprocess.Popen, str]:
    """A `ray start --head` on a free loopback port with logical CPUs and GPUs, once it answers:
    the process (stop it with `stop_ray_head`) and its address."""
    port = free_port()
    # Ray 2.60 clusters use token authentication: the head and every client opt in before
    # importing ray; a fresh machine first gets a token in ~/.ray/auth_token.
    # The S3 tests' credentials (moto takes any), as every node of a real cluster has its own.
    env = {**os.environ, **S3.CREDENTIALS, "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    head = subprocess.Popen(
        [
            *(RAY, "start", "--head", f"--port={port}", "--block"),
            *(f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"),
            *("--include-dashboard=false", "--disable-usage-stats"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    probe = [RAY, "status", f"--address={address}"]
    while subprocess.run(probe, capture_output=True, env=env).returncode:
        if head.poll() is not None or time.monotonic() > deadline:
            stop_ray_head(head)
            raise RuntimeError("ray start --head failed")
        time.sleep(1)
    return head, address


def stop_ray_head(head: subprocess.Popen) -> None:
    """SIGKILL the head's whole process group: a throwaway cluster (a graceful stop: 10 s)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait()


def start_moto(
    address: str, log: Path, port: int | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """moto's S3 server listening on `address` (on `port`, or a free one), its output into
    `log`, `env` added to its environment: the process and its endpoint URL, once it accepts
    connections. moto keeps its buckets in memory: a restart starts empty."""
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = port or free_port(address)
    with log.open("a") as out:
        server = subprocess.Popen(
            [moto, "-H", address, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_for_port(address, port, server, timeout=30)
    except BaseException:
        server.kill()
        raise
    return server, f"http://{address}:{port}"


@dataclass(frozen=True)
class S3:
    """A bucket on a test S3 server and the environment that reaches it."""

    # What every test process and Ray node presents; moto accepts any keys.
    CREDENTIALS: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "arbiter-test",
        "AWS_SECRET_ACCESS_KEY": "arbiter-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    endpoint: str
    bucket: str

    @classmethod
    def create(cls, endpoint: str) -> S3:
        store = cls(endpoint, f"arbiter-{uuid.uuid4().hex[:12]}")
        store.client().create_bucket(Bucket=store.bucket)
        return store

    @property
    def env(self) -> dict[str, str]:
        return {**self.CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def uri(self, prefix: str = "experiments") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _boto_credentials() -> dict[str, str]:
    c = S3.CREDENTIALS
    return {
        "aws_access_key_id": c["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": c["AWS_SECRET_ACCESS_KEY"],
        "region_name": c["AWS_DEFAULT_REGION"],
    }


def assert_drawn_alike(ours: dict, theirs: dict) -> None:
    """Each tensor of `ours` (a state dict) is drawn from the same distribution as `theirs`
    under its name: spread and bound within sampling noise, constants (zero biases, unit norm
    gains) equal."""
    import torch

    for name, weight in theirs.items():
        mine, reference = ours[name], weight.detach()
        assert mine.shape == reference.shape, name
        if reference.std() == 0:
            assert torch.equal(mine, reference), name
            continue
        # a sample's std varies by ~0.45/sqrt(n) of itself for a uniform distribution, less
        # for a normal one
        noise = 4 * 0.45 / reference.numel() ** 0.5
        assert mine.std() == pytest.approx(float(reference.std()), rel=noise + 0.01), name
        assert mine.abs().max() == pytest.approx(float(reference.abs().max()), rel=0.15), name
