"""Test hosts that share no disk, made from Linux namespaces on this one machine, and a Ray
cluster across them: the harness of the multi-host tests (`from hosts import Network, start_ray`
in a module of tests/e2e: pytest puts the folder of a test module without `__init__.py` on
`sys.path`).

Each host is a network namespace `arbiter-test-<id>-hN`, joined by a veth pair to a bridge in
the root namespace (the bridge holds `10.77.X.1/24`, host N `10.77.X.(10+N)`, default route via
the bridge), plus a private mount, UTS and PID namespace whose PID 1 is a small reaper: its own
tmpfs on /tmp and /dev/shm (and on any extra folder asked for), its own hostname, /etc/hosts and
process table. The last matters to Ray: a driver finds its node's raylet by listing processes,
and one that saw every host's raylets would join the head's and give its peers an address that
is not its own (objects it owns could not be fetched). Everything else (the repository, the
venv, /root with Ray's auth token) is the machine's one disk, as the software installed on every
machine of a real cluster.

A process in the root namespace (an S3 server, say) is reached from every host at
`network.gateway`; the pytest process reaches every host at `host.address`. Commands on a host
get this process's environment (PATH included: name the venv's executables by full path) plus
the `env` given. A Ray driver runs on a host of the cluster, not in the root namespace: Ray
wants a raylet at the driver's own address.

    with Network(3) as net:
        cluster = start_ray(net.hosts)
        net.hosts[0].run([sys.executable, "-c", "..."], env=cluster.env)  # a driver
        net.hosts[2].kill()  # the host is lost: all its processes end at once

Needs root, `ip`, `unshare` and `nsenter`; without them `Network` calls pytest.skip(reason).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import RAY, ROOT

PREFIX = "arbiter-test"
# Serialises the choice of a free 10.77.X.0/24 between test runs that start at the same time.
LOCK = Path(tempfile.gettempdir()) / f"{PREFIX}.lock"
# Messages of a machine (or container) that cannot make namespaces, veths or bridges: a skip,
# not a failure.
UNABLE = re.compile(
    r"Operation not permitted|Permission denied|not supported|Unknown device type|"
    r"No such file or directory.*(netns|/proc)|cannot open /proc",
    re.IGNORECASE,
)

Command = str | Sequence[str | os.PathLike]

# PID 1 of a host's PID namespace: it reaps the processes orphaned there (Ray's workers outlive
# a killed raylet), as init does on a real machine.
REAPER = """\
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
"""


def _argv(cmd: Command) -> list[str]:
    """A command line as argv: a string runs under `sh -c`, so pipes and `&&` work in it."""
    return ["sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]


def _skip(reason: str) -> None:
    """pytest.skip(reason), the reason also printed at once (visible under `-s`)."""
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode:
        message = f"ip {' '.join(args)}: {done.stderr.strip()}"
        if UNABLE.search(done.stderr):
            _skip(f"cannot make test hosts from namespaces here: {message}")
        raise RuntimeError(message)
    return done


def unavailable() -> str | None:
    """Why namespaced test hosts cannot be made here, or None when they can (as far as can be
    told before trying: root, and the tools on PATH)."""
    if os.geteuid() != 0:
        return "namespaced test hosts need root (ip netns, unshare, mount)"
    missing = [tool for tool in ("ip", "unshare", "nsenter", "mount") if not shutil.which(tool)]
    if missing:
        return f"namespaced test hosts need {', '.join(missing)} on PATH"
    return None


def _alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _netns_pids(netns: str) -> list[int]:
    done = _ip("netns", "pids", netns, check=False)
    return [int(p) for p in done.stdout.split()]


def _empty_netns(netns: str, spare: Iterable[int] = ()) -> None:
    """SIGKILLs every process in `netns` except `spare`, until none is left: Ray's raylet may
    fork a worker between the listing and the kill, so one pass is not enough."""
    spare = set(spare)
    deadline = time.monotonic() + 10
    while pids := [p for p in _netns_pids(netns) if p not in spare]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes in {netns} outlive SIGKILL: {pids}")
        time.sleep(0.05)


def reap_stale() -> None:
    """Removes the namespaces, bridges and folders that runs of this harness left behind when
    they died before their teardown: those whose creating process (the pid in the id) is gone.
    A live run's objects are left alone, so concurrent test runs do not disturb each other."""
    stale = re.compile(rf"{PREFIX}-(\d+)-[0-9a-f]+")
    done = _ip("netns", "list", check=False)
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = stale.match(name)
        if match and not _alive(int(match.group(1))):
            _empty_netns(name)
            _ip("netns", "delete", name, check=False)
    done = _ip("-j", "link", "show", "type", "bridge", check=False)
    for link in json.loads(done.stdout or "[]"):
        match = stale.fullmatch(link.get("ifalias", ""))
        if match and not _alive(int(match.group(1))):
            _ip("link", "delete", link["ifname"], check=False)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        match = stale.match(folder.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(eq=False)
class Host:
    """One test host: `name` ("h1"), its network namespace `netns`, its `address` on the
    bridge, the `holder` process (`unshare`) and `init`, the pid of the host's first process
    (its PID 1, a zombie reaper), whose namespaces commands enter."""

    name: str
    netns: str
    address: str
    holder: subprocess.Popen
    init: int = 0
    private: Sequence[str] = ("/tmp", "/dev/shm")
    procs: list[subprocess.Popen] = field(default_factory=list)

    def argv(self, cmd: Command, cwd: str | os.PathLike | None = None) -> list[str]:
        """`cmd` as the argv that runs it on this host (nsenter forks it into the host's PID
        namespace and waits for it: a signal to the Popen reaches nsenter, not `cmd`). The
        working directory is set after entering, since entering a mount namespace resets it.
        By default it is this process's, or / where that lies on a folder private to hosts
        (pytest's tmp_path, say), which the host does not have."""
        where = str(cwd) if cwd is not None else os.getcwd()
        if cwd is None and any(Path(where).is_relative_to(p) for p in self.private):
            where = "/"
        return [
            *("nsenter", f"--target={self.init}", "--mount", "--net", "--uts", "--pid"),
            f"--wd={where}",
            *_argv(cmd),
        ]

    def run(
        self,
        cmd: Command,
        env: dict[str, str] | None = None,
        timeout: float | None = 60,
        *,
        check: bool = False,
        cwd: str | os.PathLike | None = None,
        **kwargs,
    ) -> subprocess.CompletedProcess:
        """subprocess.run of `cmd` on this host, output captured as text; `env` is added to
        this process's environment."""
        return subprocess.run(
            self.argv(cmd, cwd),
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=check,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def start(
        self,
        cmd: Command,
        env: dict[str, str] | None = None,
        log: str | os.PathLike | None = None,
        *,
        cwd: str | os.PathLike | None = None,
        **kwargs,
    ) -> subprocess.Popen:
        """subprocess.Popen of `cmd` on this host in a new session, stdout and stderr into the
        file `log` (a path in the root namespace; None: discarded) unless given in `kwargs`;
        `env` is added to this process's environment."""
        # The child gets its own copy of the log's descriptor: this one closes after Popen.
        with contextlib.ExitStack() as stack:
            output = stack.enter_context(open(log, "ab")) if log else subprocess.DEVNULL
            proc = subprocess.Popen(
                self.argv(cmd, cwd),
                env={**os.environ, **(env or {})},
                stdout=kwargs.pop("stdout", output),
                stderr=kwargs.pop("stderr", output),
                start_new_session=True,
                **kwargs,
            )
        self.procs.append(proc)
        return proc

    def exists(self, path: str | os.PathLike) -> bool:
        """Whether `path` exists as this host sees it."""
        return self.run(["test", "-e", str(path)], timeout=10).returncode == 0

    def read(self, path: str | os.PathLike) -> str:
        """The text of `path` on this host."""
        return self.run(["cat", str(path)], timeout=10, check=True).stdout

    def pids(self) -> list[int]:
        """Every process of this host but the namespace holder and init."""
        return [p for p in _netns_pids(self.netns) if p not in (self.holder.pid, self.init)]

    def kill(self) -> None:
        """SIGKILLs every process of this host at once (all those in its network namespace),
        as a host that loses power. The holder stays, so the host's files remain and later
        commands may run on it again (a host that comes back)."""
        _empty_netns(self.netns, spare=[self.holder.pid, self.init])
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)  # reaped: no zombies, and returncode is set

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.address})"


class Network:
    """`n` hosts on one bridge (a context manager; close() also runs after a failed start).

    `private` lists folders, besides /tmp and /dev/shm, that get a fresh tmpfs on every host
    (e.g. a would-be local results folder); one that does not exist is made, empty, on the
    machine's disk for the run and removed afterwards (under /tmp: on each host's tmpfs)."""

    def __init__(self, n: int, private: Iterable[str | os.PathLike] = ()) -> None:
        if reason := unavailable():
            _skip(reason)
        self.id = f"{os.getpid()}-{random.getrandbits(16):04x}"
        self.hosts: list[Host] = []
        self.private = ["/tmp", "/dev/shm", *(str(Path(p).resolve()) for p in private)]
        self.bridge = f"arb{self.id.split('-')[1]}"  # interface names: 15 characters at most
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{self.id}-"))
        self.made: list[Path] = []
        self.gateway = ""
        try:
            reap_stale()
            self._build(n)
        except BaseException:
            self.close()
            raise

    def _build(self, n: int) -> None:
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = self._free_subnet()
            self.gateway = f"{subnet}.1"
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "alias", f"{PREFIX}-{self.id}")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        names = [f"h{i}" for i in range(1, n + 1)]
        hosts_file = self.folder / "hosts"
        hosts_file.write_text(
            "127.0.0.1 localhost\n"
            + "".join(f"{subnet}.{10 + i} {name}\n" for i, name in enumerate(names, 1))
            + f"{self.gateway} gateway\n"
        )
        for folder in map(Path, self.private[2:]):
            # A folder under /tmp or /dev/shm is made inside each host (on its own tmpfs); any
            # other is made here, on the shared disk, so that no host's mkdir leaks into it.
            shared = not any(folder.is_relative_to(p) for p in self.private[:2])
            if shared and not folder.exists():
                missing = [folder, *(p for p in folder.parents if not p.exists())]
                folder.mkdir(parents=True)
                self.made.extend(reversed(missing))
        self.kept = self._keep_software()
        for i, name in enumerate(names, 1):
            self._host(name, f"{subnet}.{10 + i}", hosts_file)

    def _keep_software(self) -> list[tuple[Path, Path]]:
        """(folder, stash) for the repository, the venv and the Python installation where one
        lies under a private folder (a checkout in /tmp, say): each host binds it to `stash`,
        an empty folder on the shared disk, before its tmpfs hides it, and back after, so that
        hosts run the same software as on a real cluster."""
        needed = sorted({ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
        hidden = [p for p in needed if any(p.is_relative_to(q) for q in self.private)]
        outermost = [p for p in hidden if not any(p != q and p.is_relative_to(q) for q in hidden)]
        if not outermost:
            return []
        stash = Path(f"/var/tmp/{PREFIX}-{self.id}-keep")
        stash.mkdir()
        self.made.append(stash)
        kept = []
        for i, folder in enumerate(outermost):
            (stash / str(i)).mkdir()
            self.made.append(stash / str(i))
            kept.append((folder, stash / str(i)))
        return kept

    def _free_subnet(self) -> str:
        """A 10.77.X prefix that no interface of the root namespace uses yet."""
        used = _ip("-o", "-4", "addr", "show").stdout
        free = [x for x in range(0, 255) if f" 10.77.{x}." not in used]
        if not free:
            raise RuntimeError("no free 10.77.X.0/24 left: leftover test bridges?")
        return f"10.77.{random.choice(free)}"

    def _host(self, name: str, address: str, hosts_file: Path) -> None:
        netns = f"{PREFIX}-{self.id}-{name}"
        veth = f"{self.bridge}{name}"
        _ip("netns", "add", netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "route", "add", "default", "via", self.gateway)
        # The bind mounts of /etc/hosts and of the software to keep come first: their sources
        # may lie under the root namespace's /tmp, which the tmpfs hides.
        kept = [(shlex.quote(str(f)), shlex.quote(str(s))) for f, s in self.kept]
        mounts = " && ".join(
            [
                f"mount --bind {shlex.quote(str(hosts_file))} /etc/hosts",
                *(f"mount --bind {folder} {stash}" for folder, stash in kept),
                *(
                    f"mkdir -p {q} && mount -t tmpfs -o mode=1777 tmpfs {q}"
                    for q in map(shlex.quote, self.private)
                ),
                *(f"mkdir -p {folder} && mount --bind {stash} {folder}" for folder, stash in kept),
            ]
        )
        reaper = shlex.join([sys.executable, "-c", REAPER])
        script = f"{mounts} && hostname {name} && echo ready && exec {reaper}"
        holder = subprocess.Popen(
            [
                *("ip", "netns", "exec", netns),
                *("unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc"),
                *("--propagation", "private"),
                *("sh", "-c", script),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        host = Host(name, netns, address, holder, self.private)
        self.hosts.append(host)  # torn down by close() even if it never gets ready
        ready, _, _ = select.select([holder.stdout], [], [], 15)
        if not ready or holder.stdout.readline().strip() != "ready":
            holder.kill()
            error = holder.stderr.read().strip() if ready else "no answer in 15 s"
            message = f"{name}'s mount namespace: {error}"
            if UNABLE.search(error):
                _skip(f"cannot make test hosts from namespaces here: {message}")
            raise RuntimeError(message)
        # unshare's one child: the script, now the reaper
        host.init = int(Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text())

    def close(self) -> None:
        """Ends every process of every host, then removes the namespaces, veths (they go with
        their namespace), the bridge and the run's folders. Safe to call twice; a process
        that outlives SIGKILL (stuck in the kernel) is reported after the rest is removed."""
        errors = []
        for host in self.hosts:
            try:
                _empty_netns(host.netns)
            except RuntimeError as error:
                errors.append(error)
            for proc in [*host.procs, host.holder]:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            for pipe in (host.holder.stdout, host.holder.stderr):
                if pipe:
                    pipe.close()
        done = _ip("netns", "list", check=False)
        for line in done.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"{PREFIX}-{self.id}-"):
                with contextlib.suppress(RuntimeError):  # reported above
                    _empty_netns(name)  # also a host whose holder never got ready
                _ip("netns", "delete", name, check=False)
        _ip("link", "delete", self.bridge, check=False)
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self.made = []
        shutil.rmtree(self.folder, ignore_errors=True)
        self.hosts = []
        if errors:
            raise RuntimeError(f"test hosts not fully torn down: {errors}")

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class RayCluster:
    """A Ray cluster across hosts: `address` ("HEAD:PORT") for `--address`, `env` for every
    Ray process and driver (token authentication on), the `ray start --block` processes."""

    head: Host
    address: str
    env: dict[str, str]
    nodes: dict[Host, subprocess.Popen]

    def node_table(self) -> list[dict]:
        """Every node the head's GCS knows: {"node_id", "address", "alive"}. Asked from the
        root namespace, without a driver (`ray.init` on a host costs seconds)."""
        done = subprocess.run(
            [sys.executable, "-c", _NODE_TABLE, self.address],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **self.env},
        )
        if done.returncode:
            raise RuntimeError(f"cannot read the node table: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout)

    def alive(self) -> set[str]:
        """The addresses of the nodes that the GCS holds alive."""
        return {n["address"] for n in self.node_table() if n["alive"]}

    def wait_for(self, alive: set[str], timeout: float = 90) -> None:
        """Waits until the alive nodes are exactly those at the addresses `alive`."""
        deadline = time.monotonic() + timeout
        while (now := self._alive_or_none()) != alive:
            for host, node in self.nodes.items():
                if host.address in alive and node.poll() is not None:
                    raise RuntimeError(f"ray start on {host} ended ({node.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"alive nodes {now}, waited for {alive}")
            time.sleep(0.5)

    def _alive_or_none(self) -> set[str] | None:
        try:
            return self.alive()
        except RuntimeError:  # the GCS is not up yet
            return None

    def stop(self) -> None:
        """SIGKILLs every Ray process on the cluster's hosts (a throwaway cluster: a graceful
        stop costs seconds per node)."""
        for host in self.nodes:
            host.kill()


# Lists the nodes from the GCS directly; `ray status` would print them without their addresses.
_NODE_TABLE = """\
import json, sys
from ray._raylet import GcsClient
from ray.core.generated.gcs_pb2 import GcsNodeInfo
nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)
print(json.dumps([
    {"node_id": id.hex(), "address": n.node_manager_address,
     "alive": n.state == GcsNodeInfo.GcsNodeState.ALIVE}
    for id, n in nodes.items()
]))
"""


def ray_env() -> dict[str, str]:
    """The environment of every Ray process and driver on the hosts: token authentication on,
    as the conftest cluster (the token file lies in /root, on the disk all hosts share)."""
    env = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [RAY, "get-auth-token", "--generate"],
        capture_output=True,
        check=True,
        env={**os.environ, **env},
    )
    return env


def _listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((address, port)) == 0


def start_ray(
    hosts: Sequence[Host],
    *,
    port: int = 6379,
    num_cpus: int = 1,
    num_gpus: int = 0,
    object_store_mb: int = 100,
    env: dict[str, str] | None = None,
    logs: str | os.PathLike | None = None,
    timeout: float = 120,
) -> RayCluster:
    """A Ray head on hosts[0] and a worker node on each other host, started with `--block`
    (their output into `logs`/<host>.log when given), once all of them are alive. Every host
    has its own network, so `port` is the same on all of them; `env` goes to every node."""
    env = {**ray_env(), **(env or {})}
    head = hosts[0]
    address = f"{head.address}:{port}"
    common = [
        *(RAY, "start", "--block", "--disable-usage-stats"),
        *(f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"),
        f"--object-store-memory={object_store_mb * 1024 * 1024}",
    ]

    def log(host: Host) -> Path | None:
        return Path(logs) / f"{host.name}.log" if logs is not None else None

    cluster = RayCluster(head, address, env, {})
    try:
        cluster.nodes[head] = head.start(
            [
                *common,
                "--head",
                f"--port={port}",
                f"--node-ip-address={head.address}",
                "--include-dashboard=false",
            ],
            env=env,
            log=log(head),
        )
        deadline = time.monotonic() + timeout
        while not _listening(head.address, port):  # the GCS is up: nodes may join
            if cluster.nodes[head].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head on {head} did not start")
            time.sleep(0.2)
        for host in hosts[1:]:
            cluster.nodes[host] = host.start(
                [*common, f"--address={address}", f"--node-ip-address={host.address}"],
                env=env,
                log=log(host),
            )
        cluster.wait_for({h.address for h in hosts}, max(deadline - time.monotonic(), 1))
    except BaseException:
        cluster.stop()
        raise
    return cluster
