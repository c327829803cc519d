"""Finding templates by name, and the configs shipped inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

from arbiter.config.templates import find_template, list_templates, packaged_configs
from arbiter.errors import UserError
from arbiter.legacy import tier_config

SEED_TEMPLATES = {
    "base_config.toml",
    "deep_narrow_template.toml",
    "grokking_regime.toml",
    "baseline_standard.toml",
}


def test_packaged_templates_include_the_seed_four_and_quickstart():
    names = {p.name for p in list_templates()}
    assert SEED_TEMPLATES | {"quickstart.toml"} <= names


def test_lookup_order_path_then_local_folder_then_packaged(tmp_path, monkeypatch, write):
    monkeypatch.chdir(tmp_path)
    packaged = find_template("grokking_regime")
    assert packaged == packaged_configs() / "sweep_templates" / "grokking_regime.toml"
    local = write("configs/sweep_templates/grokking_regime.toml", "[training]\nsteps = 5\n")
    assert find_template("grokking_regime.toml").resolve() == local.resolve()
    direct = write("mine.toml", "")
    assert find_template(str(direct)) == direct
    assert find_template("mine.toml") == Path("mine.toml")  # a relative path in the cwd


def test_unknown_template_lists_what_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"nope: unknown template: .*grokking_regime.toml"):
        find_template("nope")
    with pytest.raises(UserError, match="unknown template"):
        find_template("some/dir/nope.toml")


def test_tiers():
    assert tier_config("low_vram").name == "low_vram.toml"
    with pytest.raises(UserError, match="allowed: high_vram, low_vram"):
        tier_config("mid_vram")


@pytest.mark.slow
def test_wheel_ships_configs_found_from_any_directory(tmp_path):
    """A built wheel holds the configs inside the package and finds them outside the repo."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("arbiter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for name in SEED_TEMPLATES | {"quickstart.toml"}:
        assert f"arbiter/configs/sweep_templates/{name}" in names
    assert {"arbiter/configs/high_vram.toml", "arbiter/configs/low_vram.toml"} <= names
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import arbiter, sys; from arbiter.cli import main; "
        f"assert arbiter.__file__.startswith({str(tmp_path / 'site')!r}), arbiter.__file__; "
        "sys.exit(main(['templates']))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    for name in SEED_TEMPLATES:
        assert name in run.stdout
