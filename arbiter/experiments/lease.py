"""One driver per experiment: a lease in the experiment's folder or bucket prefix.

Every command that drives an experiment (`sweep`, `resume`, `long`) holds its lease while it
runs: `lease.json` names the holder (user, host, pid, since when) and a heartbeat the holder
rewrites every few seconds. A second driver is refused in one line while the lease is live. A
lease whose holder is gone never blocks: on the same host a holder whose process has exited is
gone at once; elsewhere a heartbeat older than `STALE_S` says the holder is gone (a killed
driver, a lost host), which assumes the hosts' clocks agree to within seconds (NTP).

Object stores offer no atomic create, so taking a lease is write, wait, read back: of two
drivers starting together, the one whose write landed last keeps it and the other is refused.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from arbiter.errors import UserError
from arbiter.experiments.location import Location, reaching

log = logging.getLogger(__name__)

LEASE = "lease.json"
HEARTBEAT_S = 5.0
STALE_S = 30.0  # six missed heartbeats
SETTLE_S = 1.0  # long enough for a rival's write, started at the same moment, to land


@dataclass(frozen=True)
class Holder:
    """Who drives the experiment; `token` tells two drivers apart (a pid may repeat)."""

    user: str
    host: str
    pid: int
    since: float
    heartbeat: float
    token: str

    def live(self, now: float) -> bool:
        """Whether this holder may still be driving: its process runs (on this host), and its
        heartbeat is recent."""
        if self.host == socket.gethostname() and not _running(self.pid):
            return False
        return now - self.heartbeat < STALE_S

    def describe(self, name: str) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return (
            f"{name} is being driven by pid {self.pid} on {self.host} since {since} "
            f"(user {self.user}); stop it first or wait"
        )


class Lease:
    """Hold the experiment's lease for a `with` block (taken on entry, released on exit)."""

    def __init__(self, experiment: Location) -> None:
        self.experiment = experiment
        self.file = experiment / LEASE
        now = time.time()
        self.holder = Holder(
            getpass.getuser(), socket.gethostname(), os.getpid(), now, now, uuid.uuid4().hex
        )
        self._stop = threading.Event()
        self._beating = threading.Thread(target=self._beat, daemon=True, name="arbiter-lease")

    def __enter__(self) -> Lease:
        with reaching(self.experiment):
            self._take()
        self._beating.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beating.join()
        try:
            found = read_holder(self.file)
            if found is not None and found.token == self.holder.token:
                self.file.delete()
        except OSError as error:  # the store is away: the heartbeat will go stale instead
            log.warning("could not release the lease %s: %s", self.file, error)

    def _take(self) -> None:
        found = read_holder(self.file)
        if found is not None and found.live(time.time()):
            raise UserError(found.describe(self.experiment.name))
        self._write()
        time.sleep(SETTLE_S)
        found = read_holder(self.file)
        if found is not None and found.token != self.holder.token:
            raise UserError(found.describe(self.experiment.name))

    def _write(self) -> None:
        self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
        self.file.write_text(json.dumps(asdict(self.holder), indent=2))

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError as error:  # retried at the next beat; stale only if it lasts
                log.debug("lease heartbeat failed: %s", error)


def read_holder(file: Location) -> Holder | None:
    """The lease's holder; None when there is no lease (or an unreadable one, taken over)."""
    try:
        return Holder(**json.loads(file.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
