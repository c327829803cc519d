"""Shared test helpers: config files, a tiny run's TOML, the command line in-process and in a
subprocess, and a session-wide Ray head with 4 logical GPUs for the tests that run real sweeps."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from arbiter.cli import main

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
    return "".join(f"[{table}]\n" + "".join(f"{line}\n" for line in lines)
                   for table, lines in body.items())  # fmt: skip


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """write("name.toml", text) -> the path of a dedented file under tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """cli("validate", "x.toml") -> (exit code, stdout, stderr), argparse exits included."""

    def _cli(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return _cli


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A Ray head with 4 logical GPUs, ended with its whole process group afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Ray 2.60 clusters use token authentication: the head and every client opt in before
    # importing ray; a fresh machine first gets a token in ~/.ray/auth_token.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    head = subprocess.Popen(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=4", "--num-gpus=4", "--block",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    probe = [RAY, "status", f"--address={address}"]
    while subprocess.run(probe, capture_output=True, env=env).returncode:
        assert head.poll() is None and time.monotonic() < deadline, "ray start failed"
        time.sleep(1)
    yield address
    os.killpg(head.pid, signal.SIGKILL)  # a throwaway cluster: a graceful stop takes 10 s
    head.wait()


def arbiter(*argv) -> list[str]:
    return [sys.executable, "-m", "arbiter", *map(str, argv)]


def run(*argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(arbiter(*argv), capture_output=True, text=True, timeout=timeout)


def start(*argv, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The command line in the background (a sweep's driver), its output merged on `stdout`;
    `env` is added to this process's environment."""
    return subprocess.Popen(arbiter(*argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **(env or {})})  # fmt: skip


def status(name: str, storage: Path) -> dict:
    done = run("status", name, "--storage", storage, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
