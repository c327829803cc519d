"""deploy/offline/wheels.py: Arbiter installed from its wheels alone on a machine with no package
index that has only what the lent GPU machines' image has (benchmarks/gpu_image_packages.txt),
then a sweep on the embedded Ray there, dashboard included.

The machine is a fresh virtual environment of this Python whose site folder also holds links to
the files of this environment's distributions that the image lists (torch among them) and no
others; the wheels are this Python's, where a GPU session makes them for the image's 3.12.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT, tiny_run
from packaging.utils import canonicalize_name

sys.path.insert(0, str(ROOT / "deploy" / "offline"))
from wheels import read_have  # noqa: E402

pytestmark = pytest.mark.slow

IMAGE = ROOT / "benchmarks" / "gpu_image_packages.txt"
# what a GPU session runs nothing of (docs/benchmarks.md): the wheels fit the device's carry
LEAVE_OUT = ["virtualenv", "py-spy", "optuna", "apprise"]


def link_distributions(names: set[str], site: Path) -> list[str]:
    """Links in `site` to every file of this environment's distributions named in `names`
    (file by file: a namespace folder such as google/ is shared with distributions left out)."""
    linked = []
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in names:
            continue
        linked.append(dist.metadata["Name"])
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if ".." in file.parts or not source.is_file():
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
    return linked


def test_the_wheels_install_arbiter_offline_beside_the_images_packages_and_a_sweep_runs(
    tmp_path, write
):
    wheels = tmp_path / "whl"
    made = subprocess.run(
        [
            *(sys.executable, ROOT / "deploy" / "offline" / "wheels.py", "--have", IMAGE),
            *("--out", wheels, "--leave-out", *LEAVE_OUT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    names = {w.name.split("-")[0] for w in wheels.glob("*.whl")}
    assert {"ray", "pydantic", "arbiter"} <= names and not names & {"torch", "numpy", "optuna"}
    with zipfile.ZipFile(next(wheels.glob("ray-*.whl"))) as ray_wheel:
        assert not any(name.startswith("ray/jars/") for name in ray_wheel.namelist())

    # the machine: a bare venv, and the image's distributions through a .pth folder
    machine = tmp_path / "machine"
    subprocess.run([sys.executable, "-m", "venv", machine / "venv"], check=True)
    python = machine / "venv" / "bin" / "python"
    image_site = machine / "image"
    linked = link_distributions(read_have(IMAGE), image_site)
    assert "torch" in linked
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "image.pth").write_text(f"{image_site}\n")
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONSTRAINT": ""}

    def install(requirements: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", wheels]
            + ["-r", requirements],
            capture_output=True,
            text=True,
            env=offline,
            timeout=600,
        )

    def has_ray() -> bool:
        return not subprocess.run([python, "-c", "import ray"], env=offline).returncode

    assert not has_ray()
    # a requirement on the image's own packages that it does not meet (as an image with an old
    # typing-extensions would) is refused before anything is installed
    unmet = tmp_path / "unmet.txt"
    unmet.write_text((wheels / "requirements.txt").read_text() + "torch>=99\n")
    refused = install(unmet)
    assert refused.returncode and "torch>=99" in refused.stderr, refused.stderr[-3000:]
    assert not has_ray()

    installed = install(wheels / "requirements.txt")
    assert installed.returncode == 0, installed.stderr[-3000:]

    template = write("offline.toml", tiny_run(40, {"sweep.space": '"training.seed" = [0, 1]'}))
    bin_ = machine / "venv" / "bin"
    env = {**offline, "PATH": f"{bin_}:{os.environ['PATH']}", "PYTHONPATH": ""}
    storage = tmp_path / "experiments"
    ran = subprocess.run(
        [bin_ / "arbiter", "sweep", "--template", template, "--gpus", "0"]
        + ["--storage", storage, "--name", "offline"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    shown = subprocess.run(
        [bin_ / "arbiter", "status", "offline", "--storage", storage, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    trials = json.loads(shown.stdout)["trials"]
    assert [t["status"] for t in trials] == ["TERMINATED"] * 2
    # the report, with Optuna left out: everything but the parameter importance
    reported = subprocess.run(
        [bin_ / "arbiter", "report", "offline", "--storage", storage, "--out", tmp_path / "r"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert "importance needs Optuna" in (tmp_path / "r" / "summary.md").read_text()
    # the sweep ran on the installed wheels, not this checkout's editable install
    where = subprocess.run(
        [python, "-c", "import arbiter, ray; print(arbiter.__file__, ray.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    ).stdout
    assert str(ROOT / "arbiter") not in where and where.count(purelib) == 2, where
    assert sysconfig.get_paths()["purelib"] not in where
