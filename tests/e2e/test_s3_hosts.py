"""An experiment in S3 driven across hosts that share no disk (network namespaces, hosts.py),
through the faults of a real cluster, in one sweep of three trials:

1. the trials spread over three hosts; their results and checkpoints reach only the bucket;
2. a worker host is lost: its trial goes on on another host from its checkpoint in the bucket;
3. the S3 server is out of every host's reach for a minute (packets dropped): trials and Tune
   wait and retry, no trial fails and the driver lives on;
4. the driver's host is lost: its lease keeps a second driver out until the heartbeat is stale,
   then `arbiter resume` on another host finishes every trial from its checkpoints.

The S3 server (moto) runs in the root namespace, reached by the hosts at the bridge's address.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from helpers import S3, arbiter, start_moto, sweep_args, tiny_run
from hosts import Network, start_ray

from arbiter.experiments.lease import LEASE, STALE_S
from arbiter.experiments.location import Location
from arbiter.experiments.trials import result_rows

pytestmark = pytest.mark.slow

STEPS = 3000
CHECKPOINT = 200
TEMPLATE = tiny_run(
    STEPS,
    {
        "sweep": 'metric = "val/accuracy"\nmode = "max"',
        "sweep.space": '"training.seed" = [0, 1, 2]',
        "training": "eval_interval = 100",
        "checkpoint": f"interval = {CHECKPOINT}",
        "logging": "log_interval = 100",
    },
)
# Ray notices a lost host within seconds: health checks every second, three misses.
FAST = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
OUTAGE_S = 60
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"


def trials(experiment: Location) -> dict[str, list[dict]]:
    """Each trial's result rows as the bucket holds them."""
    return {
        name: result_rows(experiment / name)
        for name in experiment.children()
        if name.startswith("run_trial_")
    }


def wait_until(what: str, check, driver, log: Path, timeout: float = 240):
    """check()'s first truthy value, polled every second while the driver runs."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert driver.poll() is None, f"the driver ended: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(1)
    return value


def test_an_s3_sweep_across_hosts_outlives_a_lost_worker_an_outage_and_a_lost_driver(
    tmp_path, monkeypatch
):
    # the template and the drivers' working folder lie on the disk all hosts share (/tmp is
    # each host's own)
    shared = Path(f"/var/tmp/arbiter-test-{os.getpid()}-s3-hosts")
    shared.mkdir()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, shared, True)
        net = stack.enter_context(Network(3))
        h1, h2, h3 = net.hosts
        server, endpoint = start_moto(net.gateway, tmp_path / "moto.log")
        stack.callback(server.kill)
        store = S3.create(endpoint)
        for key, value in store.env.items():
            monkeypatch.setenv(key, value)
        cluster = start_ray(net.hosts, num_cpus=1, env={**FAST, **store.env}, logs=tmp_path)
        env = {**cluster.env, **store.env}
        template = shared / "t.toml"
        template.write_text(TEMPLATE)
        experiment = Location.of(f"{store.uri()}/exp")
        storage = store.uri()
        sweep = sweep_args(template, gpus=0, address=cluster.address, storage=storage, name="exp")
        log = tmp_path / "driver.log"
        driver = h2.start(arbiter(*sweep), env=env, log=log, cwd=shared)

        # 1. one trial per host, each past a checkpoint in the bucket
        def spread() -> dict[str, str] | None:
            seen = trials(experiment)
            hosts = {name: rows[-1]["hostname"] for name, rows in seen.items() if rows}
            done = all(rows and rows[-1]["step"] >= CHECKPOINT for rows in seen.values())
            return hosts if len(seen) == 3 and done and len(set(hosts.values())) == 3 else None

        host_of = wait_until("a trial on each host past a checkpoint", spread, driver, log)
        assert set(host_of.values()) == {"h1", "h2", "h3"}
        lost_worker = next(name for name, host in host_of.items() if host == "h3")

        # 2. a worker host is lost, and 3. at once the S3 server is out of reach for a minute
        h3.kill()
        worker_lost = time.time()
        for host in (h1, h2):
            host.run(["ip", "route", "add", "blackhole", f"{net.gateway}/32"], check=True)
        port = endpoint.rsplit(":", 1)[1]
        assert h1.run([sys.executable, "-c", CONNECT, net.gateway, port]).returncode, "reached"
        time.sleep(OUTAGE_S)
        for host in (h1, h2):
            host.run(["ip", "route", "del", "blackhole", f"{net.gateway}/32"], check=True)
        back = time.time()
        assert driver.poll() is None, f"the outage ended the driver: {log.read_text()[-3000:]}"

        def checkpointed_since_outage() -> bool:
            running = [rows for name, rows in trials(experiment).items() if name != lost_worker]
            return all(
                any(r["timestamp"] > back and r["step"] % CHECKPOINT == 0 for r in rows)
                for rows in running
            )

        wait_until("a checkpoint after the outage", checkpointed_since_outage, driver, log)

        # 4. the driver's host is lost; a second driver is refused while the lease is live...
        h2.kill()
        driver_lost = time.time()
        resume = arbiter(*("resume", "exp", "--storage", store.uri(), "--address", cluster.address))
        refused = h1.run(resume, env=env, cwd=shared, timeout=120)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "exp is being driven by pid" in refused.stderr and " on h2 " in refused.stderr
        # ...and let in once its heartbeat is older than STALE_S
        heartbeat = json.loads((experiment / LEASE).read_text())["heartbeat"]
        time.sleep(max(heartbeat + STALE_S + 1 - time.time(), 0))
        resumed = h1.run(resume, env=env, cwd=shared, timeout=600)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]

        final = trials(experiment)
        assert len(final) == 3
        for name, rows in final.items():
            steps = [r["step"] for r in rows]
            assert steps[-1] == STEPS, (name, steps)
            # the history is whole, and every restart went on from a checkpoint, not from 0
            assert steps[0] == 100 and steps.count(100) == 1, (name, steps)
            restarts = [b for a, b in itertools.pairwise(steps) if b <= a]
            assert all(b > CHECKPOINT for b in restarts), (name, steps)
        # the outage failed no trial: h1's trial ran in one process until the driver was lost
        on_h1 = next(name for name, host in host_of.items() if host == "h1")
        assert len({r["pid"] for r in final[on_h1] if r["timestamp"] < driver_lost}) == 1
        # the lost worker's trial went on elsewhere, and ended on a host alive at that time: h1,
        # or h2 when it finished there before the driver's host was lost
        after = [r for r in final[lost_worker] if r["timestamp"] > worker_lost]
        assert after and {r["hostname"] for r in after} <= {"h1", "h2"}, after
        last = final[lost_worker][-1]
        assert last["hostname"] == "h1" or last["timestamp"] < driver_lost, last
        shown = h1.run(
            arbiter("status", "exp", "--storage", store.uri(), "--json"), env=env, cwd=shared
        )
        assert [t["status"] for t in json.loads(shown.stdout)["trials"]] == ["TERMINATED"] * 3
        # nothing of the experiment was written to the drivers' working folder
        assert sorted(p.name for p in shared.iterdir()) == ["t.toml"]
        assert not any(k.endswith(LEASE) for k in store.keys("experiments/exp/"))
