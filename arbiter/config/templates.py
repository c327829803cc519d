"""Where configurations live: template lookup by name and the packaged configs (the legacy
hardware tiers' files are found by `arbiter.legacy`).

The configs sit at the repository's top level (`configs/`) and are installed inside the package
as `arbiter/configs`, so they are found from any working directory after `pip install .`.
"""

from __future__ import annotations

from pathlib import Path

import arbiter
from arbiter.errors import UserError

TEMPLATES_SUBDIR = "sweep_templates"


def packaged_configs() -> Path:
    """The shipped `configs/` folder: inside an installed package, or the source checkout's."""
    package = Path(arbiter.__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def find_template(name: str) -> Path:
    """A path if it exists, else ./configs/sweep_templates/NAME, else the packaged template."""
    candidates = [Path(name)]
    file_name = name if name.endswith(".toml") else f"{name}.toml"
    if Path(name).name == name:  # a bare name, not a path: look in the template folders too
        candidates += [
            Path("configs") / TEMPLATES_SUBDIR / file_name,
            packaged_configs() / TEMPLATES_SUBDIR / file_name,
        ]
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a name the file system refuses (too long): not a file here
            continue
    known = ", ".join(p.name for p in list_templates())
    raise UserError(
        f"{name}: unknown template: not a file, not in ./configs/{TEMPLATES_SUBDIR}/ and not "
        f"packaged; packaged templates: {known}"
    )


def list_templates() -> list[Path]:
    """The packaged templates, and any local ./configs/sweep_templates/ ones, by name."""
    found: dict[str, Path] = {}
    for folder in (packaged_configs() / TEMPLATES_SUBDIR, Path("configs") / TEMPLATES_SUBDIR):
        for path in sorted(folder.glob("*.toml")):
            found[path.name] = path  # a local template of the same name shadows the packaged one
    return [found[name] for name in sorted(found)]
