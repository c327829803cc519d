"""The layers of docs/architecture.md, read from the source: every import statement of every
module (those inside functions included) points down, Ray is imported only by `arbiter.tune`
and the commands, and no two modules import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

# Each part of the code base, and the parts it may import (besides itself, the standard library
# and third-party packages; `arbiter` alone is the package's version).
ALLOWED = {
    "models": set(),
    "arbiter.errors": set(),
    "arbiter.ui": set(),
    "arbiter.config": {"arbiter.errors"},
    "arbiter.core": {"models", "arbiter.config", "arbiter.errors"},
    "arbiter.experiments": {"arbiter.config", "arbiter.errors"},
    "arbiter.report": {"arbiter.config", "arbiter.core", "arbiter.experiments", "arbiter.ui"},
    "arbiter.tune": {
        "arbiter.config",
        "arbiter.core",
        "arbiter.experiments",
        "arbiter.errors",
        "arbiter.ui",
    },
    "arbiter.legacy": {"arbiter.config", "arbiter.core", "arbiter.errors"},
    "arbiter.commands": {
        "arbiter.config",
        "arbiter.core",
        "arbiter.errors",
        "arbiter.experiments",
        "arbiter.legacy",
        "arbiter.report",
        "arbiter.tune",
        "arbiter.ui",
    },
    "arbiter.cli": {"arbiter.commands", "arbiter.config", "arbiter.errors", "arbiter.experiments"},
    "arbiter.__main__": {"arbiter.cli"},
}
RAY_ALLOWED = ("arbiter.tune", "arbiter.commands")
FORBIDDEN_THIRD_PARTY = {
    "arbiter.config": ("ray", "torch", "matplotlib"),
    "arbiter.experiments": ("ray", "torch", "matplotlib"),
    "arbiter.report": ("ray", "torch"),
    "arbiter.core": ("ray", "matplotlib"),
    "models": ("ray", "matplotlib"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    files = [*(ROOT / "arbiter").rglob("*.py"), *(ROOT / "models").rglob("*.py")]
    return {module_name(p): p for p in files if "configs" not in p.parts}


def imports(path: Path, name: str) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    top = set(tree.body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, node in top))
    return found


def part(name: str) -> str | None:
    """The part of ALLOWED that a module belongs to (the longest matching prefix)."""
    matches = [p for p in ALLOWED if name == p or name.startswith(p + ".")]
    return max(matches, key=len) if matches else None


MODULES = modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    here = part(name)
    if here is None:
        assert name == "arbiter", f"{name}: not in any layer of ALLOWED"
        return
    for target, _ in imports(MODULES[name], name):
        root = target.split(".")[0]
        if root == "ray":
            assert here.startswith(RAY_ALLOWED), f"{name} imports {target}"
        assert root not in FORBIDDEN_THIRD_PARTY.get(here, ()), f"{name} imports {target}"
        if root not in ("arbiter", "models") or target == "arbiter":
            continue
        there = part(target)
        assert there is not None, f"{name} imports {target}, which is in no layer"
        assert there == here or there in ALLOWED[here], f"{name} ({here}) imports {target}"


def test_no_module_level_import_cycle():
    graph = {
        name: {
            target
            for target, at_top in imports(path, name)
            if at_top and target in MODULES and target != name and target != "arbiter"
        }
        for name, path in MODULES.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in graph[name]:
            visit(target, [*trail, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_the_checker_sees_a_violation(tmp_path):
    """The reading of imports is not vacuous: a core module importing Ray, written the three
    ways Python allows, is seen each time."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import ray\nfrom arbiter.tune import tuner\ndef f():\n    from ..commands import sweep\n"
    )
    found = {target for target, _ in imports(sample, "arbiter.core.sample")}
    assert {"ray", "arbiter.tune", "arbiter.commands"} <= found
