"""Connecting to Ray: an embedded local Ray for this sweep, or an existing cluster joined at an
address (reachability checked within seconds, token authentication opted into when a token is
at hand), and the warning for storage that is local to one machine of a multi-machine cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from arbiter.errors import UserError
from arbiter.experiments.location import Location

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


def connect(address: str | None, gpus: int | None, dashboard_host: str) -> int:
    """Start an embedded local Ray (address None) or join a cluster; return the GPUs to use.

    Call it before anything imports `ray` (`tune.state` and `tune.trainable` do when loaded):
    joining a cluster with token authentication must be chosen before the import.
    """
    if address is None:
        from arbiter.core.hardware import visible_gpus

        present = len(visible_gpus())
        if gpus is not None and gpus > present:
            raise UserError(
                f"--gpus {gpus}: this machine has {present} GPU(s); ask for at most {present}, "
                "or join a cluster with --address"
            )
        # "local": a new Ray for this sweep, never a `ray start` cluster found on the machine
        _init(address="local", include_dashboard=True, dashboard_host=dashboard_host)
        return present if gpus is None else gpus
    _check_reachable(address)
    _use_token_if_available()
    ray = _init(address=address)
    cluster = int(ray.cluster_resources().get("GPU", 0))
    if gpus is not None and gpus > cluster:
        ray.shutdown()
        raise UserError(f"--gpus {gpus}: the cluster at {address} has {cluster} GPU(s)")
    return cluster if gpus is None else gpus


def warn_if_storage_is_local(storage: Location) -> None:
    """Warn when the joined cluster spans several machines and the storage is a local folder
    (see `storage_warning`); object storage is reached from every machine alike."""
    import ray

    if storage.remote:
        return
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    warning = storage_warning(storage, ray.util.get_node_ip_address(), hosts)
    if warning:
        log.warning("%s", warning)


def storage_warning(storage: Location, here: str, hosts: set[str]) -> str | None:
    """Ray does not copy trial files to the head node: on a cluster spanning several machines,
    a local `--storage` must be a shared file system mounted at the same path on every one of
    them (or object storage instead)."""
    machines = hosts | {here}
    if len(machines) == 1:
        return None
    return (
        f"the cluster spans {len(machines)} machines: --storage {storage} must be the same "
        "shared folder on each (NFS), or object storage (s3://BUCKET/PREFIX); a folder local to "
        "one machine loses the checkpoints and results of trials that run elsewhere"
    )


def _check_reachable(address: str) -> None:
    """A HOST:PORT where nothing answers is an error within seconds: `ray.init` would retry
    for a minute or more. (`auto` and `ray://` addresses are left to Ray.)"""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address:
        return
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head` or check the address"
        ) from None


def _use_token_if_available() -> None:
    """Ray 2.60 clusters use token authentication, and a client must opt in before it imports
    ray (later, `ray.init` hangs and fails). A client in token mode also joins a cluster
    without authentication, so opting in whenever a token is at hand is safe."""
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or token_file.is_file()
    if "RAY_AUTH_MODE" not in os.environ and has_token and "ray" not in sys.modules:
        os.environ["RAY_AUTH_MODE"] = "token"


def _init(**kwargs: Any) -> Any:
    import ray

    try:
        info = ray.init(
            logging_level=logging.WARNING,
            log_to_driver=False,  # trial logs stay in the dashboard and the session folder
            **kwargs,
        )
    except ConnectionError as exc:
        raise UserError(f"--address {kwargs['address']}: cannot connect to Ray: {exc}") from None
    except Exception as exc:
        if type(exc).__name__ != "AuthenticationError":
            raise
        raise UserError(
            f"--address {kwargs['address']}: the cluster refused this client's token; put the "
            "cluster's token (`ray get-auth-token` on its head) in ~/.ray/auth_token and set "
            "RAY_AUTH_MODE=token"
        ) from None
    url = getattr(info, "dashboard_url", None)
    if url:
        log.info("Ray dashboard: http://%s (token: `ray get-auth-token`)", url)
        host = kwargs.get("dashboard_host", "127.0.0.1")
        if host not in ("127.0.0.1", "localhost"):
            log.warning("the dashboard listens on %s: whoever reaches it sees the cluster", host)
    return ray
