"""The multi-host harness (hosts.py) itself: its hosts share no disk but reach each other and
the root namespace, a Ray cluster forms across three of them with one node per host, and a
killed host's node is marked dead while the others live on.

Later tests build on these facts (a sweep whose storage is an S3 server in the root namespace);
here they are checked on their own, so that a broken harness fails here and not as a puzzling
sweep failure."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid

import pytest
from hosts import Network, start_ray

# A TCP connect to host:port, run on a host; exits 0 when it connects.
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"

# A driver on the head host: one task pinned to each alive node writes a file under its /tmp
# and answers where it ran.
MARK = """\
import json, socket, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], logging_level="ERROR")

@ray.remote(num_cpus=1)
def mark(path):
    with open(path, "w") as f:
        f.write(socket.gethostname())
    return {"hostname": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(), "path": path}

refs = [
    mark.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
    .remote(f"/tmp/arbiter-mark-{n['NodeID'][:12]}")
    for n in ray.nodes() if n["Alive"]
]
print(json.dumps(ray.get(refs, timeout=120)))
"""


def serve(address: str) -> tuple[socket.socket, int]:
    """A listening TCP socket on `address` in this (the root) namespace, accepting in the
    background, and its port."""
    server = socket.socket()
    server.bind((address, 0))
    server.listen()

    def accept() -> None:
        while True:
            try:
                server.accept()[0].close()
            except OSError:  # closed by the test
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def test_hosts_have_their_own_disk_and_reach_each_other_and_the_root_namespace():
    results = f"/var/tmp/arbiter-test-{os.getpid()}-results"  # outside /tmp: a private mount
    with Network(3, private=[results]) as net:
        h1, h2, h3 = net.hosts
        name = f"only-on-h1-{uuid.uuid4().hex}"
        for folder in ("/tmp", "/dev/shm", results):
            h1.run(["sh", "-c", f'echo h1 > "{folder}/{name}"'], check=True)
            assert h1.exists(f"{folder}/{name}")
            assert not h2.exists(f"{folder}/{name}") and not h3.exists(f"{folder}/{name}")
            assert not os.path.exists(f"{folder}/{name}"), "visible in the root namespace"
        # the machine's one disk stays shared: the repository and the venv are on every host
        assert all(h.exists(sys.executable) for h in net.hosts)

        assert len({h.address for h in net.hosts}) == 3
        assert [h.run(["hostname"]).stdout.strip() for h in net.hosts] == ["h1", "h2", "h3"]
        for host in net.hosts:
            ip = host.run(["ip", "-4", "-o", "addr", "show", "eth0"], check=True).stdout
            assert f" {host.address}/24 " in ip

        # every host reaches a server in the root namespace at the bridge's address...
        server, port = serve(net.gateway)
        with server:
            for host in net.hosts:
                done = host.run([sys.executable, "-c", CONNECT, net.gateway, port])
                assert done.returncode == 0, f"{host} -> {net.gateway}: {done.stderr}"
        # ...and a server on another host, by address or by name
        listener = h2.start([sys.executable, "-m", "http.server", "-b", h2.address, "8000"])
        deadline = time.monotonic() + 10
        while h1.run([sys.executable, "-c", CONNECT, "h2", "8000"]).returncode:
            assert listener.poll() is None and time.monotonic() < deadline, "no server on h2"
            time.sleep(0.1)
        assert h3.run([sys.executable, "-c", CONNECT, h2.address, "8000"]).returncode == 0
        with socket.create_connection((h2.address, 8000), 5):  # the root namespace reaches it
            pass
        # h1's own loopback is its own: h2's server is not on it
        assert h1.run([sys.executable, "-c", CONNECT, "127.0.0.1", "8000"]).returncode

        h2.kill()
        assert listener.returncode is not None and h2.pids() == []
        assert h2.run(["true"]).returncode == 0, "a killed host runs commands again"
    assert not os.path.exists(results), "the private folder made for the run is left behind"
    assert net.hosts == [], "close() forgets its hosts"


@pytest.fixture(scope="module")
def ray_hosts(tmp_path_factory):
    """(network, cluster): a Ray head on h1 and a worker node on h2 and h3, one CPU each,
    shared by the module's Ray tests (the one that kills h3 runs last). Dead nodes are noticed
    within seconds: health checks every second, three misses."""
    logs = tmp_path_factory.mktemp("ray-logs")
    fast = {
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    with Network(3) as net:
        started = time.monotonic()
        cluster = start_ray(net.hosts, num_cpus=1, env=fast, logs=logs)
        print(f"\n3-host Ray cluster up in {time.monotonic() - started:.1f} s")
        yield net, cluster


@pytest.mark.slow
def test_a_ray_cluster_forms_across_hosts_and_a_task_writes_only_on_its_own_host(ray_hosts):
    net, cluster = ray_hosts
    nodes = cluster.node_table()
    assert len(nodes) == 3 and all(n["alive"] for n in nodes)
    assert {n["address"] for n in nodes} == {h.address for h in net.hosts}

    head = net.hosts[0]
    done = head.run([sys.executable, "-c", MARK, cluster.address], env=cluster.env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    by_address = {h.address: h for h in net.hosts}
    assert sorted(m["ip"] for m in marks) == sorted(by_address)
    for mark in marks:
        own = by_address[mark["ip"]]
        assert mark["hostname"] == own.name
        assert own.read(mark["path"]) == own.name
        others = [h for h in net.hosts if h is not own]
        assert not any(h.exists(mark["path"]) for h in others), f"{mark['path']} is shared"
        assert not os.path.exists(mark["path"])


@pytest.mark.slow
def test_a_killed_host_is_marked_dead_and_the_others_stay_alive(ray_hosts):
    net, cluster = ray_hosts
    h1, h2, h3 = net.hosts
    started = time.monotonic()
    h3.kill()
    assert h3.pids() == []
    cluster.wait_for({h1.address, h2.address}, timeout=60)
    print(f"\nh3's node marked dead {time.monotonic() - started:.1f} s after the kill")
    nodes = {n["address"]: n["alive"] for n in cluster.node_table()}
    assert nodes == {h1.address: True, h2.address: True, h3.address: False}
    # the survivors still run tasks
    done = h1.run([sys.executable, "-c", MARK, cluster.address], env=cluster.env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(m["ip"] for m in marks) == sorted([h1.address, h2.address])
