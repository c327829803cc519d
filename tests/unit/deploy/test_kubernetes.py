"""deploy/kubernetes/: the KubeRay manifests, checked without a Kubernetes cluster.

Every YAML document is read with PyYAML and what a cluster needs from it is asserted: the kinds
and API versions, one Arbiter image everywhere, a head without GPUs and workers with one each,
Ray's token as a file from the Secret on every pod, S3 keys only through secretKeyRef, and a
RayJob whose entrypoint Arbiter's own parser accepts as a requeue-safe sweep over exactly the
GPUs of the worker group, on the same cluster spec as raycluster.yaml.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml
from helpers import ROOT
from packaging.requirements import Requirement

from arbiter.cli import build_parser
from arbiter.config.templates import TEMPLATES_SUBDIR, find_template, packaged_configs

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

KUBE = ROOT / "deploy" / "kubernetes"
RAYCLUSTER = "raycluster.yaml"
RAYJOB = "rayjob.yaml"
SECRETS = "secrets.example.yaml"
S3_CONFIG = "s3-config.yaml"

# What each manifest holds, in order: (apiVersion, kind) of every document.
EXPECTED = {
    RAYCLUSTER: [("ray.io/v1", "RayCluster")],
    RAYJOB: [("ray.io/v1", "RayJob")],
    SECRETS: [("v1", "Secret"), ("v1", "Secret")],
    S3_CONFIG: [("v1", "ConfigMap")],
}
# Env variables that hold a secret: never a literal value in a manifest.
SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RAY_AUTH_TOKEN"}
AWS_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
AWS_SETTINGS = {"AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"}
# The Secret key KubeRay's authOptions.secretName reads the token from.
TOKEN_KEY = "auth_token"
GPU = "nvidia.com/gpu"


def _docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBE / name).read_text()) if doc is not None]


def _doc(name: str) -> dict[str, Any]:
    (doc,) = _docs(name)
    return doc


def _secrets() -> dict[str, dict[str, str]]:
    """The example Secrets by name: their keys and placeholder values."""
    return {doc["metadata"]["name"]: doc["stringData"] for doc in _docs(SECRETS)}


def _cluster_pods(spec: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield f"{where} head", spec["headGroupSpec"]["template"]["spec"]
    for group in spec["workerGroupSpecs"]:
        yield f"{where} worker group {group['groupName']}", group["template"]["spec"]


def _pods() -> list[tuple[str, dict[str, Any]]]:
    """Every pod template: the RayCluster's, the RayJob's cluster and its submitter."""
    job = _doc(RAYJOB)["spec"]
    return [
        *_cluster_pods(_doc(RAYCLUSTER)["spec"], RAYCLUSTER),
        *_cluster_pods(job["rayClusterSpec"], RAYJOB),
        (f"{RAYJOB} submitter", job["submitterPodTemplate"]["spec"]),
    ]


def _ray_pods() -> list[tuple[str, dict[str, Any]]]:
    """The pods that run Ray nodes (and so the driver or the trials): all but the submitter."""
    return [(where, pod) for where, pod in _pods() if "submitter" not in where]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _env_lists(node: Any) -> Iterator[list[dict[str, Any]]]:
    """Every `env:` list anywhere in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield value
            yield from _env_lists(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_lists(item)


def _gpus_per_pod(group: dict[str, Any]) -> int:
    """The GPU limit of a worker group's Ray container (KubeRay's: the first)."""
    return int(group["template"]["spec"]["containers"][0]["resources"]["limits"][GPU])


def _entrypoint() -> list[str]:
    return shlex.split(_doc(RAYJOB)["spec"]["entrypoint"])


def _sweep_args() -> Any:
    argv = _entrypoint()
    assert argv[0] == "arbiter", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:  # the parser's one-line reason is in the captured stderr
        pytest.fail(f"arbiter's parser refuses the RayJob entrypoint: {shlex.join(argv)}")


def test_each_manifest_holds_the_expected_kinds_and_api_versions():
    """Exactly these files, each with these documents, each named."""
    assert sorted(p.name for p in KUBE.glob("*.yaml")) == sorted(EXPECTED)
    assert not list(KUBE.glob("*.yml"))
    for name, expected in EXPECTED.items():
        docs = _docs(name)
        assert [(d["apiVersion"], d["kind"]) for d in docs] == expected, name
        assert all(d["metadata"]["name"] for d in docs), name


def test_the_rayjob_retries_on_its_own_copy_of_the_raycluster_spec():
    """KubeRay allows backoffLimit only with rayClusterSpec, so the spec is a copy: kept equal."""
    job = _doc(RAYJOB)["spec"]
    assert job["rayClusterSpec"] == _doc(RAYCLUSTER)["spec"]
    assert "clusterSelector" not in job
    assert job["submissionMode"] == "K8sJobMode"
    assert job["backoffLimit"] >= 1
    assert job["submitterConfig"]["backoffLimit"] >= 1
    assert job["shutdownAfterJobFinishes"] is True
    assert job["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    # KubeRay supplies the submitter's `ray job submit` only to a container without a command
    assert "command" not in job["submitterPodTemplate"]["spec"]["containers"][0]


def test_ray_version_is_the_one_arbiter_pins():
    """rayVersion (KubeRay needs it for token auth) matches the Ray of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ray = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "ray")
    version = _doc(RAYCLUSTER)["spec"]["rayVersion"]
    assert ray.specifier.contains(version), (version, str(ray.specifier))


def test_every_container_runs_the_one_arbiter_image():
    images = {
        (where, c["name"]): c["image"]
        for where, pod in _pods()
        for c in pod["containers"] + pod.get("initContainers", [])
    }
    assert len(set(images.values())) == 1, images
    (image,) = set(images.values())
    assert "arbiter" in image and not image.startswith("rayproject/"), image


def test_the_head_has_no_gpu_and_each_worker_one():
    """Trials reserve a GPU each, so with none on the head they all run on the workers."""
    spec = _doc(RAYCLUSTER)["spec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    for container in head["template"]["spec"]["containers"]:
        for kind in ("requests", "limits"):
            assert GPU not in container.get("resources", {}).get(kind, {}), container["name"]
    assert spec["enableInTreeAutoscaling"] is False
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group
        # KubeRay takes num-gpus from the limit; one given here could disagree with it
        assert "num-gpus" not in group["rayStartParams"], group["groupName"]
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert _gpus_per_pod(group) == 1, group["groupName"]
        assert int(resources["requests"][GPU]) == 1, group["groupName"]


def test_every_pod_authenticates_with_the_token_file_of_the_secret():
    """RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH, a file of a volume of the token Secret,
    in every container of every pod; the same Secret KubeRay's authOptions names."""
    secrets = _secrets()
    for spec in (_doc(RAYCLUSTER)["spec"], _doc(RAYJOB)["spec"]["rayClusterSpec"]):
        auth = spec["authOptions"]
        assert auth["mode"] == "token"
        assert TOKEN_KEY in secrets[auth["secretName"]]
    token_secret = _doc(RAYCLUSTER)["spec"]["authOptions"]["secretName"]
    for where, pod in _pods():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            env = _env(container)
            assert env["RAY_AUTH_MODE"].get("value") == "token", (where, container["name"])
            path = PurePosixPath(env["RAY_AUTH_TOKEN_PATH"]["value"])
            mounts = [
                m
                for m in container.get("volumeMounts", [])
                if path.is_relative_to(m["mountPath"]) and path != PurePosixPath(m["mountPath"])
            ]
            assert len(mounts) == 1, (where, container["name"], str(path))
            secret = volumes[mounts[0]["name"]]["secret"]
            assert secret["secretName"] == token_secret, where
            relative = str(path.relative_to(mounts[0]["mountPath"]))
            files = {item["path"]: item["key"] for item in secret.get("items", [])} or {
                key: key for key in secrets[token_secret]
            }
            assert files.get(relative) == TOKEN_KEY, (where, relative, files)


def test_s3_keys_reach_the_pods_only_through_the_secret():
    """No literal secret value in any env of any manifest; the Ray pods get the AWS keys by
    secretKeyRef and the endpoint and region from the ConfigMap, each key defined there."""
    secrets = _secrets()
    config = _doc(S3_CONFIG)
    for name in EXPECTED:
        for doc in _docs(name):
            if name != SECRETS:
                assert doc["kind"] != "Secret", f"{name}: a Secret belongs in {SECRETS}"
            for env in _env_lists(doc):
                for item in env:
                    if item["name"] in SECRET_ENV:
                        assert "value" not in item, (name, item["name"])
                        ref = item["valueFrom"]["secretKeyRef"]
                        assert ref["key"] in secrets[ref["name"]], (name, ref)
    for where, pod in _ray_pods():
        env = _env(pod["containers"][0])
        for key in AWS_KEYS:
            assert env[key]["valueFrom"]["secretKeyRef"]["key"] == key, (where, key)
        for key in AWS_SETTINGS:
            ref = env[key]["valueFrom"]["configMapKeyRef"]
            assert (ref["name"], ref["key"]) == (config["metadata"]["name"], key), (where, key)
            # an optional key (the endpoint, which AWS S3 itself does without) may be left out
            assert key in config["data"] or ref.get("optional") is True, key


def test_the_example_secrets_hold_placeholders_only():
    """Every value is an <angle-bracketed> placeholder; no base64 `data` that could hide one."""
    for doc in _docs(SECRETS):
        assert "data" not in doc, doc["metadata"]["name"]
        for key, value in doc["stringData"].items():
            assert value.startswith("<") and value.endswith(">"), (key, value)


def test_the_rayjob_entrypoint_is_a_requeue_safe_sweep_arbiter_accepts():
    """Parsed by arbiter's own parser: a sweep of a packaged template, a fixed --name,
    --resume-if-exists, s3:// storage, the cluster it runs on."""
    argv = _entrypoint()
    # The words pass through two shells (the submitter's bash, Ray's job runner): none may
    # need quoting.
    assert all(shlex.quote(word) == word for word in argv), argv
    args = _sweep_args()
    assert args.command == "sweep"
    assert args.resume_if_exists is True
    assert args.name
    assert args.address == "auto"
    assert not args.dry_run
    storage = argv[argv.index("--storage") + 1]  # as written: the parser may turn it into more
    bucket, _, prefix = storage.removeprefix("s3://").partition("/")
    assert storage.startswith("s3://") and bucket and prefix, storage
    assert args.storage
    # a bare name, found among the templates packaged in the image from any directory
    packaged = {p.name for p in (packaged_configs() / TEMPLATES_SUBDIR).glob("*.toml")}
    assert str(args.template) in packaged, (args.template, sorted(packaged))
    assert find_template(str(args.template)).is_file()


def test_the_sweep_asks_for_the_gpus_of_the_worker_group():
    """--gpus is replicas x GPUs per pod: arbiter refuses more GPUs than the cluster has, and
    fewer would leave workers idle."""
    groups = _doc(RAYJOB)["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(group["replicas"] * _gpus_per_pod(group) for group in groups)
    assert gpus > 0
    assert _sweep_args().gpus == gpus


def test_the_readme_names_every_manifest_and_object_it_needs():
    readme = (KUBE / "README.md").read_text()
    names = {doc["metadata"]["name"] for name in EXPECTED for doc in _docs(name)}
    for word in sorted(set(EXPECTED) | names):
        assert word in readme, word
