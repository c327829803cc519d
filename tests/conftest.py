"""The fixtures of every test (pytest loads this file by itself): `write` for config files under
tmp_path, `cli` for the command line in-process, `cluster`, a session-wide Ray head with 4
logical GPUs for the tests that run real sweeps, and `s3`, a fresh bucket on a real S3 server
(moto's, on loopback) with the AWS variables set. Plain helpers that test modules import live in
helpers.py."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import S3, start_moto, start_ray_head, stop_ray_head

from arbiter.cli import main


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
def cluster():
    """A Ray head with 4 CPUs and 4 logical GPUs for the session: its address."""
    head, address = start_ray_head(num_cpus=4, num_gpus=4)
    yield address
    stop_ray_head(head)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server on a loopback port for the whole session: its endpoint URL."""
    server, endpoint = start_moto("127.0.0.1", tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A new, empty bucket, with the AWS variables that reach it set for this test (and so for
    the commands it runs in subprocesses)."""
    store = S3.create(s3_server)
    for key, value in store.env.items():
        monkeypatch.setenv(key, value)
    return store
