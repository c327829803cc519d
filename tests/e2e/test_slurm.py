"""deploy/slurm/arbiter.sbatch on a real Slurm: a job runs a sweep to its end, and a job whose
time limit comes mid-sweep stops it on Slurm's USR1, requeues itself and resumes it.

The Slurm is a single node on this machine, from Debian's slurm-wlm and munge packages: munged,
slurmctld and slurmd run as this test's own processes (root, no systemd, no cgroups), with their
state, spool, key and sockets in a temporary folder and their ports picked free, so that they
touch nothing of the machine's. The job starts the Ray head with srun, as on a real cluster;
there are no worker nodes and no GPUs here (the trials run on CPUs).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT, status, tiny_run

from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows

SBATCH = ROOT / "deploy" / "slurm" / "arbiter.sbatch"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "sinfo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(folder: Path, node: str, socket_path: Path) -> str:
    """A one-node cluster whose plugins need neither cgroups nor systemd, reached on loopback
    (a container's host name may not resolve). cred_expire (how long a requeued job waits
    before it may start again), KillWait and the scheduling interval are short, so that a
    requeue takes seconds instead of minutes."""
    return f"""\
ClusterName=arbitertest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path},cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=5
KillWait=5
MinJobAge=600
ReturnToService=2
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "slurmctld.log"}
SlurmdLogFile={folder / "slurmd.log"}
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Slurm:
    """The running test Slurm: `env` points Slurm's commands at it."""

    env: dict[str, str]

    def command(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)

    def submit(self, tmp_path: Path, template: Path, name: str, *flags: str) -> str:
        """Submits arbiter.sbatch for one CPU node with the sweep's settings in its
        environment (sbatch passes the environment on); returns the job id."""
        env = {
            **self.env,
            "ARBITER_TEMPLATE": str(template),
            "ARBITER_NAME": name,
            "ARBITER_STORAGE": str(tmp_path / "storage"),
            "ARBITER_GPUS": "0",
            # this Python's arbiter and ray, as a site's shared virtual environment would give
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}",
            "ARBITER_RAY_PORT": str(free_port()),
            "ARBITER_RAY_ARGS": "--include-dashboard=false",
        }
        done = subprocess.run(
            [
                *("sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", "--cpus-per-task=2"),
                f"--output={tmp_path / 'job.out'}",
                *flags,
                str(SBATCH),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job`'s fields (JobState, Restarts, ExitCode, ...)."""
        done = self.command("scontrol", "show", "job", "--oneliner", job_id)
        assert done.returncode == 0, done.stderr
        return dict(re.findall(r"(\w+)=(\S*)", done.stdout))

    def wait(self, job_id: str, until, timeout: float) -> dict[str, str]:
        """The job's fields once `until(fields)` holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until(info := self.job(job_id)):
            assert time.monotonic() < deadline, f"job {job_id} still {info.get('JobState')}"
            time.sleep(0.5)
        return info


def start_daemon(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop_daemon(daemon: subprocess.Popen) -> None:
    if daemon.poll() is not None:
        return
    daemon.terminate()
    try:
        daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[Slurm]:
    """A one-node Slurm on this machine for the module's tests; skipped, saying why, where
    Slurm or munge is not installed or cannot start."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        packages = "slurmctld slurmd slurm-client munge"
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install {packages})")
    if os.geteuid() != 0:
        pytest.skip(f"the test Slurm runs its daemons as root; this is uid {os.geteuid()}")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "munge"):
        (folder / sub).mkdir(mode=0o700)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    socket_path = folder / "munge" / "socket"
    node = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, node, socket_path))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = []
    try:
        daemons.append(
            start_daemon(
                [
                    *("munged", "--foreground", "--force", f"--socket={socket_path}"),
                    f"--key-file={key}",
                    f"--pid-file={folder / 'munge' / 'munged.pid'}",
                    f"--log-file={folder / 'munge' / 'munged.log'}",
                    f"--seed-file={folder / 'munge' / 'munged.seed'}",
                ],
                folder / "munged.out",
                env,
            )
        )
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if daemons[0].poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"munged did not start: {(folder / 'munged.out').read_text()[-500:]}")
            time.sleep(0.1)
        daemons.append(start_daemon(["slurmctld", "-D", "-f", str(conf)], folder / "ctld.out", env))
        daemons.append(start_daemon(["slurmd", "-D", "-f", str(conf)], folder / "slurmd.out", env))
        cluster = Slurm(env)
        deadline = time.monotonic() + 60
        while cluster.command("sinfo", "--noheader", "--format=%T").stdout.strip() != "idle":
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                logs = [folder / name for name in ("slurmctld.log", "slurmd.log")]
                tail = " | ".join(p.read_text()[-400:] for p in logs if p.exists())
                pytest.skip(f"the test Slurm did not come up: {tail}")
            time.sleep(0.5)
        yield cluster
        # A job a failed test left behind: slurmd's job processes end it, so slurmd stays up
        # until no job is left.
        cluster.command("scancel", "--user", str(os.getuid()))
        deadline = time.monotonic() + 60
        while (
            cluster.command("squeue", "--noheader").stdout.strip() and time.monotonic() < deadline
        ):
            time.sleep(0.5)
    finally:
        for daemon in reversed(daemons):
            stop_daemon(daemon)


def grid(steps: int, space: str, every: int) -> str:
    """A sweep of tiny runs over `space`, reporting and checkpointing every `every` steps."""
    return tiny_run(
        steps,
        {
            "training": f"eval_interval = {every}",
            "checkpoint": f"interval = {every}",
            "logging": f"log_interval = {every}",
            "sweep": 'metric = "val/accuracy"',
            "sweep.space": space,
        },
    )


def ended(info: dict[str, str]) -> bool:
    return info["JobState"] not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED")


@pytest.mark.slow
def test_a_job_runs_the_sweep_to_its_end(slurm, tmp_path, write):
    template = write("grid.toml", grid(300, '"training.weight_decay" = [0.1, 1.0]', 50))
    job = slurm.submit(tmp_path, template, "whole", "--time=10")
    info = slurm.wait(job, ended, timeout=300)
    log = (tmp_path / "job.out").read_text()
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert "Ray is up: 1 node(s)" in log and "arbiter exited with code 0" in log
    trials = status("whole", tmp_path / "storage")["trials"]
    assert len(trials) == 2 and all(t["status"] == "TERMINATED" for t in trials)
    assert all(result_rows(Location.of(t["path"]))[-1]["step"] == 300 for t in trials)


@pytest.mark.slow
def test_the_time_limit_requeues_the_job_and_the_sweep_resumes(slurm, tmp_path, write):
    # Short and long trials: the short ones finish before the time limit's signal, the long
    # ones (~110 s each on a 2-core machine) are cut off by it, unless it is 3 times as fast.
    space = '"training.weight_decay" = [0.1, 1.0]\n"training.steps" = [2000, 40000]'
    template = write("grid.toml", grid(2000, space, 1000))
    storage = tmp_path / "storage"
    # A 2-minute limit with USR1 30 s before it: Slurm checks every 30 s, so the signal comes
    # 60-90 s into the job, mid-sweep.
    job = slurm.submit(tmp_path, template, "requeued", "--time=2", "--signal=B:USR1@30")

    def requeued(info: dict[str, str]) -> bool:
        assert not ended(info), (tmp_path / "job.out").read_text()
        return info["Restarts"] != "0" and info["JobState"] == "PENDING"

    # Held while requeued (it may start again 10 s after the requeue): the experiment as the
    # stopped run left it, and a longer limit for the run that resumes it, so that it is not
    # cut off a second time.
    slurm.wait(job, requeued, timeout=240)
    assert slurm.command("scontrol", "hold", job).returncode == 0
    before = {t["id"]: t for t in status("requeued", storage)["trials"]}
    rows = {tid: result_rows(Location.of(t["path"])) for tid, t in before.items()}
    finished = {tid for tid, t in before.items() if t["status"] == "TERMINATED"}
    assert len(before) == 4 and 0 < len(finished) < 4, before
    assert slurm.command("scontrol", "update", f"JobId={job}", "TimeLimit=10").returncode == 0
    assert slurm.command("scontrol", "release", job).returncode == 0

    info = slurm.wait(job, ended, timeout=400)
    log = (tmp_path / "job.out").read_text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), log
    assert "USR1: stopping the sweep" in log and f"requeueing job {job}" in log
    after = {t["id"]: t for t in status("requeued", storage)["trials"]}
    assert after.keys() == before.keys()
    assert all(t["status"] == "TERMINATED" for t in after.values())
    for tid, t in after.items():
        steps = [r["step"] for r in result_rows(Location.of(t["path"]))]
        if tid in finished:  # not run again
            assert result_rows(Location.of(t["path"])) == rows[tid], tid
        else:  # continued from its checkpoint, not from step 0
            assert steps[: len(rows[tid])] == [r["step"] for r in rows[tid]], steps
            assert steps.count(1000) == 1 and steps[-1] == 40000, steps
