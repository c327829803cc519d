"""deploy/offline/wheels.py's parts: the requirement tree it reads from this environment, the
target's package list it leaves out, and the wheel it rewrites without unused files."""

from __future__ import annotations

import sys
import zipfile

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "deploy" / "offline"))
from wheels import read_have, requirement_tree, requirements_file, strip  # noqa: E402


def test_the_tree_follows_extras_and_leaves_out_what_the_target_has():
    full = requirement_tree("arbiter", "3.12", have={}, leave_out=set())
    assert {"ray", "pydantic", "torch", "aiohttp-cors", "tensorboardx"} <= set(full.carried)
    assert "tomli" not in full.carried  # arbiter needs it below Python 3.11 only
    assert full.held == {} and full.notes == []
    assert all(version[0].isdigit() for version in full.carried.values())
    # ray[default]'s aiohttp-cors came in through the extra; what a name left out (or had)
    # needs goes with it unless something else needs it too
    tree = requirement_tree("arbiter", "3.12", have={"torch": None}, leave_out={"ray"})
    assert "torch" not in tree.carried and "sympy" not in tree.carried  # sympy: torch's alone
    assert "aiohttp-cors" not in tree.carried and "pydantic" in tree.carried
    assert str(tree.held["torch"]) == ">=2.4"  # what arbiter asks of the target's torch


def test_what_the_carried_wheels_ask_of_the_targets_own_is_in_the_requirements():
    tree = requirement_tree(
        "arbiter", "3.12", have={"typing-extensions": None, "torch": None}, leave_out=set()
    )
    # pydantic and pydantic-core ask for typing-extensions>=4.16 at the least (this venv's)
    assert tree.held["typing-extensions"].contains("4.16.0")
    assert not tree.held["typing-extensions"].contains("4.10.0")
    lines = requirements_file(tree).splitlines()
    assert f"pydantic=={tree.carried['pydantic']}" in lines and "torch>=2.4" in lines
    assert any(line.startswith("typing-extensions>=") for line in lines)


def test_a_version_the_target_has_that_a_requirement_excludes_is_carried():
    tree = requirement_tree(
        "arbiter", "3.12", have={"torch": "2.11.0", "pydantic": "1.10.0"}, leave_out=set()
    )
    assert "torch" not in tree.carried and "pydantic" in tree.carried  # asked: >=2.7,<3
    assert "pydantic" not in tree.held and str(tree.held["torch"]) == ">=2.4"
    assert tree.notes == ["the target's pydantic 1.10.0 is not pydantic<3,>=2.7 (arbiter's)"]


def test_below_this_pythons_version_a_missing_requirement_is_one_line():
    with pytest.raises(
        SystemExit, match=r"tomli \(\w+.s requirement under Python 3.10\) is not installed here"
    ):
        requirement_tree("arbiter", "3.10", have={}, leave_out=set())


def test_the_targets_list_is_read_in_each_of_pips_forms(tmp_path):
    listed = tmp_path / "have.txt"
    listed.write_text(
        "# pip list --format=freeze\nTorch==2.11.0\nnumpy @ file:///wheels/numpy.whl\n"
        "ruamel.yaml>=0.18\nscikit_learn\n\n  pyarrow==25.0 ; python_version >= '3.9'\n"
        "-e git+https://example.org/x.git#egg=x\n"
    )
    assert read_have(listed) == {
        "torch": "2.11.0",
        "numpy": None,
        "ruamel-yaml": None,
        "scikit-learn": None,
        "pyarrow": "25.0",
    }


def test_a_rewritten_wheel_loses_the_files_and_their_record_lines(tmp_path):
    wheel = tmp_path / "ray-1.0-py3-none-any.whl"
    record = (
        "ray/__init__.py,sha256=a,1\nray/jars/ray_dist.jar,sha256=b,9\nray-1.0.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("ray/__init__.py", "x = 1\n")
        z.writestr("ray/jars/ray_dist.jar", b"\0" * 1000)
        z.writestr("ray-1.0.dist-info/RECORD", record)
    strip(wheel, "ray/jars/")
    with zipfile.ZipFile(wheel) as z:
        assert z.namelist() == ["ray/__init__.py", "ray-1.0.dist-info/RECORD"]
        assert z.read("ray/__init__.py") == b"x = 1\n"
        assert "jars" not in z.read("ray-1.0.dist-info/RECORD").decode()
