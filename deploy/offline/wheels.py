"""The wheels that install Arbiter on a machine with no package index (a GPU node cut off from
the internet, an air-gapped cluster), made on a machine that has one.

Run it with the Python that has Arbiter installed (the repository's `.venv`): the requirement
tree is read from that environment, so the target gets the very versions tested here. What the
target already has (`--have`: its `pip list --format=freeze`, or one name a line) is left out,
torch above all, unless its version is one a requirement excludes; so is Ray's Java support
(`ray/jars`, a third of its wheel), which Python trials never load. The folder's
requirements.txt pins what is carried and states what it asks of the target's own
distributions, so that pip there refuses, before installing anything, a version that falls
short. Here, then on the target with nothing to fetch:

    .venv/bin/python deploy/offline/wheels.py --python 3.12 --have have.txt --out .whl
    python3 -m pip install --no-index --no-deps --find-links .whl -r .whl/requirements.txt
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# manylinux tags pip must be told one by one when it downloads for another interpreter
PLATFORMS = [
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
REQUIREMENTS = "requirements.txt"  # in the folder of wheels: what the target installs
UNUSED = {"ray": "ray/jars/"}  # files of a wheel that Arbiter never loads, by distribution


def marker_env(python: str) -> dict[str, str]:
    """The environment markers of CPython `python` (3.12, say) on x86-64 Linux."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    }


@dataclass
class Tree:
    """What a target needs of `root`: `carried`, name -> the version installed here, for every
    distribution to bring; `held`, name -> what the carried ones ask of a distribution the
    target has (merged specifiers, checked there by pip); `notes`, a line for each that the
    target has in a version a requirement excludes (carried instead)."""

    carried: dict[str, str]
    held: dict[str, SpecifierSet]
    notes: list[str]


def requirement_tree(
    root: str, python: str, have: dict[str, str | None], leave_out: set[str]
) -> Tree:
    """`root`'s run-time requirements under CPython `python`, extras followed. Neither carried
    nor followed: the `leave_out` names, and the `have` names (the target's, with what they
    need) unless their version is known and excluded."""
    env = marker_env(python)
    extras_of: dict[str, set[str]] = {}
    held: dict[str, SpecifierSet] = {}
    notes = []
    pending = [(Requirement(root), root)]
    while pending:
        requirement, parent = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in leave_out or (name in extras_of and extras <= extras_of[name]):
            continue
        if name in have and name not in extras_of:
            theirs = have[name]
            if theirs is None or requirement.specifier.contains(theirs, prereleases=True):
                held[name] = held.get(name, SpecifierSet()) & requirement.specifier
                continue
            notes.append(f"the target's {name} {theirs} is not {requirement} ({parent}'s)")
        extras_of[name] = extras_of.get(name, set()) | extras
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"wheels.py: {name} ({parent}'s requirement under Python {python}) is not "
                "installed here: run this script with a venv of the target's Python version"
            ) from None
        wanted = [""] + sorted(extras_of[name])  # the markers' `extra` values that apply
        for line in requires:
            needed = Requirement(line)
            if needed.marker is None or any(
                needed.marker.evaluate({**env, "extra": e}) for e in wanted
            ):
                pending.append((needed, name))
    carried = {name: metadata.version(name) for name in extras_of}
    held = {name: spec for name, spec in held.items() if name not in carried}
    return Tree(carried, held, notes)


def requirements_file(tree: Tree) -> str:
    """The file the target installs from: every carried distribution pinned, and what they ask
    of the target's own, which pip there finds met or takes from the folder (`--upgrade`), or
    names as missing before anything is installed."""
    lines = [f"{name}=={version}" for name, version in sorted(tree.carried.items())]
    lines += [f"{name}{spec}" for name, spec in sorted(tree.held.items()) if str(spec)]
    return "".join(f"{line}\n" for line in lines)


def read_have(path: Path) -> dict[str, str | None]:
    """Name -> version (None where not given) of a `pip list --format=freeze` or `pip freeze`
    file, or of one name a line; editable and option lines (`-e ...`) are passed over."""
    have: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[=<>~!@ ;\[]", line, maxsplit=1)[0]
        pinned = re.match(r"[^=]+==\s*([^\s;]+)", line)
        have[canonicalize_name(name)] = pinned.group(1) if pinned else None
    return have


def download(pins: dict[str, str], python: str, out: Path) -> None:
    """The binary wheels of `pins` for CPython `python` on x86-64 Linux, into `out`."""
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
            *("--only-binary=:all:", "--python-version", python, "--implementation", "cp"),
            *platforms,
            *("--dest", str(out)),
            *(f"{name}=={version}" for name, version in sorted(pins.items())),
        ],
        check=True,
    )


def build_arbiter(out: Path) -> None:
    """Arbiter's own wheel (pure Python, configs inside), from this checkout."""
    # setuptools builds in build/ and never empties it: a module deleted since would ship
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(out), str(ROOT)),
        ],
        check=True,
    )


def strip(wheel: Path, prefix: str) -> None:
    """Rewrite `wheel` without the files under `prefix`, and without their RECORD lines."""
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w") as target:
        for item in source.infolist():
            if item.filename.startswith(prefix):
                continue
            data = source.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(x for x in lines if not x.startswith(prefix)).encode()
            target.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    slim.replace(wheel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="{}.{}".format(*sys.version_info[:2]))
    parser.add_argument("--have", type=Path, help="what the target has: pip list --format=freeze")
    parser.add_argument("--out", type=Path, default=ROOT / ".whl")
    parser.add_argument(
        "--leave-out",
        nargs="*",
        default=[],
        metavar="NAME",
        help="distributions the target's commands never import (optuna without "
        "strategy = optuna or the report's parameter importance, apprise without [notify]), "
        "with what only they need",
    )
    parser.add_argument(
        "--upgrade",
        nargs="*",
        default=[],
        metavar="NAME",
        help="distributions the target has, in a version not given, that the carried ones need "
        "at least in some version: their wheels come too, installed there only if needed",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python):
        parser.error(f"--python {args.python}: give a CPython version such as 3.12")
    have = read_have(args.have) if args.have else {}
    have.pop("arbiter", None)  # always the checkout's own, built below
    leave_out = {canonicalize_name(name) for name in args.leave_out}
    tree = requirement_tree("arbiter", args.python, have, leave_out)
    for note in tree.notes:
        print(f"{note}: its wheel is added")
    upgrades = {}
    for name in map(canonicalize_name, args.upgrade):
        if name not in tree.held:
            parser.error(f"--upgrade {name}: not a distribution the target has that Arbiter needs")
        upgrades[name] = metadata.version(name)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.whl"):  # one version of each: pip refuses two
        old.unlink()
    download(
        {n: v for n, v in tree.carried.items() if n != "arbiter"} | upgrades, args.python, args.out
    )
    build_arbiter(args.out)
    for wheel in args.out.glob("*.whl"):
        prefix = UNUSED.get(canonicalize_name(wheel.name.split("-")[0]))
        if prefix:
            strip(wheel, prefix)
    (args.out / REQUIREMENTS).write_text(requirements_file(tree))
    wheels = sorted(args.out.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB, in {args.out}:")
    print("  " + " ".join(w.name.split("-")[0] for w in wheels))
    folder = args.out.name
    print(
        "on the target: python3 -m pip install --no-index --no-deps "
        f"--find-links {folder} -r {folder}/{REQUIREMENTS}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
