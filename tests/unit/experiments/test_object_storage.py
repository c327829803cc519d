"""Experiments in object storage, against a real S3 server (moto's): the storage URI taken as
such (not as a local folder named `s3:`), each mistake one line and exit 2 before anything
starts (refused, missing and read-only credentials against a moto that checks signatures and
IAM policies), a record written to the bucket with no secret in it, the retries that travel
with the filesystem to the trials, and the lease refusing a second driver."""

from __future__ import annotations

import json
import os
import pickle
import socket
import threading
import time

import pytest
from helpers import start_moto, tiny_run

from arbiter.errors import UserError
from arbiter.experiments.lease import LEASE, Lease
from arbiter.experiments.location import PATIENT, Location, RetryingS3FileSystem
from arbiter.experiments.record import Record
from arbiter.experiments.storage import find_experiment, new_experiment, storage_root

SWEEP = {"sweep": 'metric = "val/accuracy"\n[sweep.space]\n"training.learning_rate" = [1e-3]'}


def record() -> Record:
    return Record("t.toml", [], "abc", {}, 0, 1)


def test_an_s3_uri_is_object_storage_and_the_record_lands_in_the_bucket(s3, tmp_path):
    os.chdir(tmp_path)
    root = storage_root(s3.uri("runs"))
    assert root.remote and root.uri == f"s3://{s3.bucket}/runs"
    path = new_experiment(root, "exp", record())
    assert s3.keys() == ["runs/exp/arbiter.json"]
    saved = json.loads(
        s3.client().get_object(Bucket=s3.bucket, Key="runs/exp/arbiter.json")["Body"].read()
    )
    assert saved["path"] == path.uri == f"s3://{s3.bucket}/runs/exp"
    assert "arbiter-test-secret" not in json.dumps(saved)
    assert find_experiment("exp", s3.uri("runs")).uri == path.uri
    assert find_experiment(path.uri, None).uri == path.uri
    assert not list(tmp_path.iterdir()), "nothing of an s3:// experiment is written locally"


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("s3://", "names no bucket"),
        ("nosuch://bucket/x", "not a storage URI"),
        ("s3://key:secret@bucket/x", "credentials do not belong in the URI"),
    ],
)
def test_a_malformed_storage_uri_is_one_line(cli, write, storage, expected):
    template = write("t.toml", tiny_run(50, SWEEP))
    code, out, err = cli("sweep", "--template", template, "--gpus", "0", "--storage", storage)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err, err
    assert "secret" not in err


def test_a_missing_bucket_is_refused_before_ray_starts(cli, write, s3):
    template = write("t.toml", tiny_run(50, SWEEP))
    missing = f"s3://{s3.bucket}-gone/runs"
    code, _, err = cli("sweep", "--template", template, "--gpus", "0", "--storage", missing)
    assert code == 2
    gone = f"{s3.bucket}-gone"
    assert (
        err == f"arbiter: error: --storage {missing}: the bucket {gone} does not exist; create it\n"
    )


def test_an_endpoint_that_does_not_answer_is_one_line_within_seconds(cli, write, s3, monkeypatch):
    from helpers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    template = write("t.toml", tiny_run(50, SWEEP))
    began = time.monotonic()
    code, _, err = cli("sweep", "--template", template, "--gpus", "0", "--storage", s3.uri())
    took = time.monotonic() - began
    assert code == 2 and err.count("\n") == 1
    assert "cannot reach the endpoint http://127.0.0.1:" in err, err
    print(f"refused in {took:.1f} s")


def test_a_name_taken_in_the_bucket_is_refused(cli, write, s3):
    new_experiment(Location.of(s3.uri()), "taken", record())
    template = write("t.toml", tiny_run(50, SWEEP))
    code, _, err = cli(
        "sweep", "--template", template, "--gpus", "0", "--storage", s3.uri(), "--name", "taken"
    )
    assert code == 2 and "--name taken:" in err and "already exists" in err


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_live_lease_refuses_a_second_driver_and_a_released_one_does_not(where, s3, tmp_path):
    root = Location.of(s3.uri() if where == "s3" else tmp_path)
    path = new_experiment(root, "exp", record())
    with Lease(path) as held:
        assert (path / LEASE).is_file()
        with pytest.raises(UserError) as refused:
            Lease(path).__enter__()
        holder = held.holder
        assert str(refused.value).startswith(
            f"exp is being driven by pid {holder.pid} on {holder.host} since "
        )
        assert str(refused.value).endswith("; stop it first or wait")
    assert not (path / LEASE).exists()
    with Lease(path):  # released: the next driver takes it
        pass


def test_a_lease_whose_process_is_gone_is_stale_at_once(tmp_path):
    import subprocess
    import sys

    path = new_experiment(Location.of(tmp_path), "exp", record())
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with Lease(path):
        stale = {**json.loads((path / LEASE).read_text()), "pid": int(gone.stdout), "token": "x"}
    (path / LEASE).write_text(json.dumps({**stale, "heartbeat": time.time()}))
    with Lease(path) as taken:  # the killed driver's lease does not block
        assert taken.holder.token != stale["token"]
    assert not (path / LEASE).exists()


def test_the_filesystem_sent_to_trials_keeps_its_retries_and_no_keys(s3, monkeypatch):
    # A server that accepts and at once closes every connection: each S3 attempt is one accept.
    accepts = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed by the test
                return
            accepts.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    fs = Location.of(s3.uri()).fs
    tuned = RetryingS3FileSystem(fs.__reduce__()[1][0], {**PATIENT, "retries": 5})
    sent = pickle.dumps(tuned)  # as Tune sends its storage filesystem to every trial
    assert b"arbiter-test-secret" not in sent
    with server, pytest.raises(OSError, match="NETWORK_CONNECTION|connect"):
        pickle.loads(sent).get_file_info(f"{s3.bucket}/key")
    assert len(accepts) == 6  # the first attempt and 5 retries; pyarrow's own pickling: 3


@pytest.fixture(scope="module")
def s3_with_auth(tmp_path_factory):
    """A moto server that checks signatures and IAM policies (after the 5 set-up actions): a
    bucket, and the keys of a user who may only read it. Yields (endpoint, bucket, keys)."""
    import boto3

    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    server, endpoint = start_moto("127.0.0.1", log, env={"INITIAL_NO_AUTH_ACTION_COUNT": "5"})
    try:
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1", **ADMIN}
        iam, s3 = boto3.client("iam", **admin), boto3.client("s3", **admin)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        s3.create_bucket(Bucket="arbiter-auth")
        read_only = {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [read_only]}
        iam.put_user_policy(UserName="reader", PolicyName="ro", PolicyDocument=json.dumps(policy))
        yield endpoint, "arbiter-auth", (key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.kill()
        server.wait()


ADMIN = {"aws_access_key_id": "set-up", "aws_secret_access_key": "set-up"}


@pytest.mark.parametrize(
    "who, expected",
    [
        ("unknown keys", "the credentials were refused: check AWS_ACCESS_KEY_ID"),
        ("a reader", "access denied: these credentials may not use it"),
        ("no keys", "refused, and no AWS credentials are set: set AWS_ACCESS_KEY_ID"),
    ],
)
def test_credentials_refused_missing_or_read_only_are_one_line(
    who, expected, s3_with_auth, cli, write, monkeypatch, tmp_path
):
    endpoint, bucket, (key_id, secret) = s3_with_auth
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws files
    for variable in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    keys = {"unknown keys": ("AKIAUNKNOWN", "wrong"), "a reader": (key_id, secret)}.get(who)
    if keys is None:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[1])
    template = write("t.toml", tiny_run(50, SWEEP))
    storage = f"s3://{bucket}/runs"
    code, _, err = cli("sweep", "--template", template, "--gpus", "0", "--storage", storage)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"arbiter: error: --storage {storage}: {expected}"), err
    assert secret not in err
