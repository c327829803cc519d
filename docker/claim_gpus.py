#!/usr/bin/env python3
"""claim-gpus COMMAND...: give this worker container GPUs no other worker of the host uses, then
run COMMAND --num-gpus=N with CUDA_VISIBLE_DEVICES set to them (the process replaces this one).

Docker gives every replica of a scaled service the same devices (`count: 1` is GPU 0 in each), so
the worker service reserves all of its host's GPUs and each replica claims
ARBITER_GPUS_PER_WORKER of them here (a number, or `all`; 0: a CPU-only worker). A GPU is claimed
by an exclusive lock on its file in ARBITER_GPU_CLAIMS, a folder that every worker container of
the host mounts; the lock stays with the process through exec and the kernel drops it when the
process ends, so a restarted or stopped worker frees its GPUs. Too few free GPUs: exit 1 with a
line saying so. The GPUs are counted with `nvidia-smi`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

DEFAULT_CLAIMS = "/var/lib/arbiter/gpu-claims"


def host_gpus() -> list[str]:
    """The indices of the GPUs this container sees, in nvidia-smi's (PCI bus) order."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(
            f"claim-gpus: cannot list GPUs with nvidia-smi ({exc}); is the container started "
            "with GPUs (NVIDIA Container Toolkit)? Set ARBITER_GPUS_PER_WORKER=0 for a CPU worker"
        ) from None
    return [line.strip() for line in out.splitlines() if line.strip()]


def wanted(value: str, present: int) -> int:
    if value == "all":
        return present
    if not value.isdigit():
        raise SystemExit(f"claim-gpus: ARBITER_GPUS_PER_WORKER={value!r}: give a number or 'all'")
    return int(value)


def claim(gpus: list[str], count: int, folder: str) -> list[str]:
    """Lock `count` free GPUs of `gpus`; the locks' descriptors stay open and inheritable."""
    os.makedirs(folder, exist_ok=True)
    claimed: list[str] = []
    for gpu in gpus:
        if len(claimed) == count:
            break
        fd = os.open(os.path.join(folder, f"gpu-{gpu}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)  # held by COMMAND after exec
        claimed.append(gpu)
    if len(claimed) < count:
        raise SystemExit(
            f"claim-gpus: this worker wants {count} GPU(s) but only {len(claimed)} of the host's "
            f"{len(gpus)} are free (other workers hold the rest): run fewer workers on this host "
            "or lower ARBITER_GPUS_PER_WORKER"
        )
    return claimed


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: claim-gpus COMMAND [ARG...]")
    per_worker = os.environ.get("ARBITER_GPUS_PER_WORKER", "1").strip().lower()
    if per_worker == "0":
        ids: list[str] = []
    else:
        gpus = host_gpus()
        ids = claim(
            gpus,
            wanted(per_worker, len(gpus)),
            os.environ.get("ARBITER_GPU_CLAIMS", DEFAULT_CLAIMS),
        )
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA numbers GPUs as nvidia-smi does
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    print(f"claim-gpus: GPUs [{','.join(ids)}] for this worker", file=sys.stderr, flush=True)
    command = [*argv, f"--num-gpus={len(ids)}"]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise SystemExit(f"claim-gpus: cannot run {command[0]}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
