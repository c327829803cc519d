"""Shared test helpers: config files, the command line in-process and in a subprocess, and a
session-wide Ray head with 4 logical GPUs for the tests that run real sweeps."""

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
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def arbiter(*argv) -> list[str]:
    return [sys.executable, "-m", "arbiter", *map(str, argv)]


def run(*argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(arbiter(*argv), capture_output=True, text=True, timeout=timeout)


def status(name: str, storage: Path) -> dict:
    done = run("status", name, "--storage", storage, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
