"""Safe defaults: the dashboard stays on loopback, and `resume` restores only what Arbiter wrote
for the template as it was (Tune's saved state is pickled: restoring it runs code)."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest
from helpers import arbiter, run, sweep_args, tiny_run

pytestmark = pytest.mark.slow


def short(steps: int) -> str:
    """A sweep of two tiny runs (seeds 0 and 1)."""
    tables = {"sweep": 'metric = "val/accuracy"', "sweep.space": '"training.seed" = [0, 1]'}
    return tiny_run(steps, tables)


def outward_address() -> str:
    """This machine's address on its network (not loopback): where others would reach it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the interface
        return s.getsockname()[0]


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_the_dashboard_listens_on_loopback_only(tmp_path, write):
    outside = outward_address()
    assert not outside.startswith("127."), "this check needs a non-loopback interface"
    template = write("t.toml", short(3000))
    sweep = subprocess.Popen(
        arbiter(
            "sweep", "--template", template, "--gpus", 0, "--storage", tmp_path, "--name", "dash"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 120
        for line in sweep.stderr:  # "Ray dashboard: http://127.0.0.1:PORT (token: ...)"
            if found := re.search(r"Ray dashboard: http://([\d.]+):(\d+)", line):
                host, port = found.group(1), int(found.group(2))
                break
            assert time.monotonic() < deadline
        assert port is not None and host == "127.0.0.1"
        while not answers("127.0.0.1", port):
            assert sweep.poll() is None and time.monotonic() < deadline, "no dashboard"
            time.sleep(0.5)
        assert not answers(outside, port)  # not reachable from the network
    finally:
        sweep.kill()
        sweep.wait()


def test_resume_refuses_a_changed_template_and_touches_nothing(cluster, tmp_path, write):
    template = write("t.toml", short(100))
    done = run(*sweep_args(template, gpus=2, address=cluster, storage=tmp_path, name="fixed"))
    assert done.returncode == 0, done.stdout + done.stderr
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "fixed").rglob("*")}
    template.write_text(template.read_text().replace("[0, 1]", "[0, 1, 2]"))
    resumed = run("resume", "fixed", "--storage", tmp_path, "--address", cluster)
    assert resumed.returncode == 2
    assert resumed.stderr.strip().splitlines() == [
        f"arbiter: error: {template}: changed since the sweep started; Ray Tune cannot resume "
        "a changed search space: restore the template or start a new sweep"
    ]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "fixed").rglob("*")} == before


def test_resume_refuses_a_folder_arbiter_did_not_write(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "tuner.pkl").write_bytes(b"not ours")  # a Tune folder from elsewhere, say
    done = run("resume", str(foreign), "--storage", tmp_path)
    assert done.returncode == 2
    assert "no Arbiter experiment here" in done.stderr and "Traceback" not in done.stderr
