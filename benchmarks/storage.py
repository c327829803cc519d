"""Object storage against a local folder: the makespan of one 8-trial sweep with `--storage` a
local folder and with `--storage s3://...` on an S3 server on this machine, and what each
checkpoint costs in the bucket.

Both sweeps are `arbiter sweep` drivers joining the same `ray start` cluster (CPU trials, one CPU
each) with the same template (sweep_overhead.py's grid, a checkpoint every `--checkpoint-interval`
steps), run one after the other, `--repeats` times alternately. The S3 server is moto's (dev
dependency), on loopback: this measures what Arbiter and Tune add to reach a bucket (uploads,
the experiment state, the record and the lease), not a network. Goal: the S3 sweep within 1.10x
of the local one. Prints a markdown table and appends it to docs/benchmarks.md.

    python benchmarks/storage.py [--steps 1250] [--checkpoint-interval 250] [--repeats 1]
    python benchmarks/storage.py --smoke-test   # tiny trials; writes nothing
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

from report import Started, publish
from sweep_overhead import TEMPLATE, makespan, start_cluster

CREDENTIALS = {  # moto accepts any keys
    "AWS_ACCESS_KEY_ID": "arbiter-bench",
    "AWS_SECRET_ACCESS_KEY": "arbiter-bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_s3(log: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free loopback port: the process and its endpoint."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}"
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("moto_server did not start (pip install 'moto[server]')")
        time.sleep(0.2)


def checkpoint_sizes_s3(client, bucket: str, prefix: str) -> list[int]:
    """The bytes of every checkpoint folder under `prefix`."""
    sizes: dict[str, int] = defaultdict(int)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            parts = item["Key"].split("/")
            folder = next((i for i, p in enumerate(parts) if p.startswith("checkpoint_")), None)
            if folder is not None:
                sizes["/".join(parts[: folder + 1])] += item["Size"]
    return list(sizes.values())


def checkpoint_sizes_local(experiment: Path) -> list[int]:
    return [
        sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for folder in experiment.glob("*/checkpoint_*")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1250, help="steps per trial")
    parser.add_argument("--checkpoint-interval", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="local/S3 pairs, alternated")
    parser.add_argument("--smoke-test", action="store_true", help="tiny trials; write nothing")
    args = parser.parse_args()
    steps = 50 if args.smoke_test else args.steps
    interval = 25 if args.smoke_test else args.checkpoint_interval
    started = Started()
    import boto3

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, endpoint = start_s3(work / "moto.log")
        env = {
            **os.environ,
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "RAY_AUTH_MODE": "token",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        bucket = f"arbiter-bench-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        head, address = start_cluster(args.concurrency, env)
        template = work / "grid.toml"
        template.write_text(
            TEMPLATE.format(steps=steps).replace("interval = 1000", f"interval = {interval}")
        )
        spans: dict[str, list[float]] = {"local": [], "s3": []}
        try:
            for repeat in range(args.repeats):
                for kind, storage in (("local", str(work)), ("s3", f"s3://{bucket}/exp")):
                    spans[kind].append(
                        makespan(
                            [
                                *(sys.executable, "-m", "arbiter", "sweep"),
                                *("--template", str(template), "--gpus", "0"),
                                *("--address", address, "--storage", storage),
                                *("--name", f"{kind}-{repeat}"),
                            ],
                            env,
                        )
                    )
            s3_sizes = checkpoint_sizes_s3(client, bucket, "exp/s3-0/")
            local_sizes = checkpoint_sizes_local(work / "local-0")
        finally:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait()
            server.kill()
            server.wait()

    local, s3 = statistics.median(spans["local"]), statistics.median(spans["s3"])
    table = [
        "| storage | makespan (s), median | checkpoints | bytes per checkpoint | vs local |",
        "|---|---|---|---|---|",
        f"| local folder | {local:.1f} | {len(local_sizes)} | "
        f"{statistics.median(local_sizes):,.0f} | 1.00x |",
        f"| s3:// (moto, loopback) | {s3:.1f} | {len(s3_sizes)} | "
        f"{statistics.median(s3_sizes):,.0f} | {s3 / local:.2f}x |",
    ]
    verdict = "met" if s3 / local <= 1.10 else "NOT met"
    publish(
        started,
        "object storage, a sweep in s3:// against a local folder",
        f"8 trials (1 x 64 modular model, {steps} steps, a checkpoint every {interval}), CPU "
        f"trials on a `ray start` cluster with {args.concurrency} CPUs; {args.repeats} "
        f"alternated pair(s). Goal s3 <= 1.10x local: {verdict}.\n\n" + "\n".join(table),
        write=not args.smoke_test,
    )


if __name__ == "__main__":
    main()
