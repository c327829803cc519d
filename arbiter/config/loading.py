"""TOML files to a validated `Config`: `extends` chains, deep merge, `--set` overrides, errors.

Every value remembers which file (or `--set`) it came from, so a validation error names the file
the user must edit: `configs/x.toml: training.steps: Input should be greater than 0 (got -1)`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from arbiter.config.schema import Config
from arbiter.errors import ConfigError, KeyProblem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

SET_SOURCE = "--set"
# Tables whose entries are replaced whole when a child file sets them, never merged key by key:
# merging two distributions of one swept key would make an axis with two distributions.
_LEAF_TABLES = {("sweep", "space")}


class RawConfig:
    """Merged TOML data before validation, with the file each leaf value came from."""

    def __init__(self, data: dict[str, Any], origins: dict[tuple[str, ...], str], source: str):
        self.data = data
        self.origins = origins
        self.source = source

    def origin(self, key: tuple[str, ...]) -> str:
        """The file that set `key`, else the last one that set a key below it (a table that
        `--set a.b=1` made), else the one that set the nearest table above it, else the top file.
        """
        below = [src for k, src in self.origins.items() if k[: len(key)] == key]
        if key and key not in self.origins and below:
            return below[-1]
        for depth in range(len(key), 0, -1):
            found = self.origins.get(key[:depth])
            if found:
                return found
        return self.source


def load_config(
    path: str | Path, sets: list[str] | tuple[str, ...] = (), base: str | Path | None = None
) -> Config:
    """Read, merge, override and validate one configuration or template.

    `base` (`arbiter sweep --base-config`) is layered under `path` itself: see `load_layered`.
    """
    raw = load_raw(Path(path)) if base is None else load_layered(Path(path), Path(base))
    apply_sets(raw, sets)
    return validate(raw)


def load_layered(path: Path, base: Path) -> RawConfig:
    """`path` on top of `base` on top of what `path` extends: the file's own keys win, then the
    base's, then everything the file inherits through `extends`.

    The base sits above the inherited files because naming it is the user's explicit choice: with
    it below them, a base config's checkpoint, logging and precision keys would lose to the
    shipped templates' own `extends = "base_config.toml"`, which sets exactly those keys.
    """
    inherited = load_raw(path)
    below = load_raw(base)
    own = read_toml(path)
    own.pop("extends", None)
    data = _merge(_merge(inherited.data, below.data), own)
    origins = {**inherited.origins, **below.origins}
    origins.update({key: str(path) for key in _leaf_keys(own)})
    return RawConfig(data, origins, str(path))


def load_raw(path: Path, _chain: tuple[Path, ...] = ()) -> RawConfig:
    """Read `path` and the files it extends, merged (the child wins)."""
    data = read_toml(path)
    source = str(path)
    parent = data.pop("extends", None)
    origins = {key: source for key in _leaf_keys(data)}
    if parent is None:
        return RawConfig(data, origins, source)
    if not isinstance(parent, str):
        raise ConfigError(source, "extends", f"must be a file name string, got {parent!r}")
    base_path = path.parent / parent
    chain = (*_chain, path.resolve())
    if base_path.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain, base_path.resolve()))
        raise ConfigError(source, "extends", f"cycle: {cycle}")
    if not _is_file(base_path):
        raise ConfigError(
            source, "extends", f"'{parent}' not found next to it (looked for {base_path})"
        )
    base = load_raw(base_path, chain)
    return RawConfig(_merge(base.data, data), {**base.origins, **origins}, source)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; every way it can fail is a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "", "is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot be read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid TOML: {exc}") from None


def apply_sets(raw: RawConfig, sets: list[str] | tuple[str, ...]) -> None:
    """Apply `--set dotted.key=value` overrides; the value is TOML, or else a plain string.

    Setting a key the template sweeps pins it: that axis leaves the space.
    """
    for assignment in sets:
        key, value = parse_set(assignment)
        table = raw.data
        for depth, part in enumerate(key[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                where = ".".join(key[: depth + 1])
                raise ConfigError(SET_SOURCE, assignment, f"'{where}' is a value, not a table")
        table[key[-1]] = value
        raw.origins[key] = SET_SOURCE
        sweep = raw.data.get("sweep")
        space = sweep.get("space") if isinstance(sweep, dict) else None
        dotted = ".".join(key)
        if isinstance(space, dict) and dotted in space:
            del space[dotted]
            log.info("--set %s pins a swept key: it is no longer swept", dotted)


def parse_set(assignment: str) -> tuple[tuple[str, ...], Any]:
    """`training.weight_decay=0.5` -> (("training", "weight_decay"), 0.5)."""
    key_text, sep, value_text = assignment.partition("=")
    if not sep or not key_text.strip():
        raise ConfigError(
            SET_SOURCE, assignment, "expected KEY=VALUE, e.g. training.weight_decay=0.5"
        )
    try:
        parsed = tomllib.loads(f"{key_text} = 0")
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            SET_SOURCE, assignment, f"'{key_text}' is not a dotted TOML key"
        ) from None
    key: list[str] = []
    while isinstance(parsed, dict):
        ((part, parsed),) = parsed.items()
        key.append(part)
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        # Unquoted words (`precision=bf16`) are what people type in a shell: take them as strings.
        value = tomllib.loads(f"v = {json.dumps(value_text)}")["v"]
    return tuple(key), value


def validate(raw: RawConfig) -> Config:
    """Validate merged data; the first problem becomes one ConfigError naming file and key."""
    try:
        return Config.model_validate(raw.data)
    except ValidationError as exc:
        key, problem = describe_error(exc)
        raise ConfigError(raw.origin(key), format_key(key), problem) from None


def describe_error(exc: ValidationError) -> tuple[tuple[str, ...], str]:
    """The first error of a validation as (key path, one-line problem with what is allowed)."""
    errors = exc.errors()
    first = errors[0]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, KeyProblem):
        return split_key(cause.key), cause.problem + more
    loc = tuple(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(loc[:-1]))
        return loc, f"unknown key; allowed here: {allowed}{more}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return loc, f"must be a table, got {first['input']!r}{more}"
    message = first["msg"].removeprefix("Value error, ")
    return loc, f"{message} (got {first['input']!r}){more}"


def format_key(key: tuple[str, ...]) -> str:
    """("sweep", "space", "training.lr") -> sweep.space."training.lr"; list indexes as [i]."""
    text = ""
    for part in key:
        if part.isdigit():
            text += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            text += f".{part}" if text else part
        else:
            text += f'."{part}"' if text else f'"{part}"'
    return text


def split_key(dotted: str) -> tuple[str, ...]:
    """The inverse of format_key for the keys KeyProblem names (quoted parts may hold dots)."""
    try:
        parsed: Any = tomllib.loads(f"{dotted} = 0")
    except tomllib.TOMLDecodeError:
        return (dotted,)
    key = []
    while isinstance(parsed, dict):
        ((part, parsed),) = parsed.items()
        key.append(part)
    return tuple(key)


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    """The field names of the config table at `loc`, for 'allowed keys' messages."""
    node: type[BaseModel] = Config
    for part in loc:
        annotation = node.model_fields[part].annotation
        # Optional tables (`sweep`) are `X | None`: take the model out of the union.
        candidates = getattr(annotation, "__args__", (annotation,))
        node = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return list(node.model_fields)


def _is_file(path: Path) -> bool:
    """Path.is_file, but False for a path the OS refuses to look at (e.g. a name too long)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _merge(
    base: dict[str, Any], child: dict[str, Any], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    merged = dict(base)
    for key, value in child.items():
        both_tables = isinstance(value, dict) and isinstance(merged.get(key), dict)
        if both_tables and path not in _LEAF_TABLES:
            merged[key] = _merge(merged[key], value, (*path, key))
        else:
            merged[key] = value
    return merged


def _leaf_keys(data: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys = []
    for key, value in data.items():
        here = (*path, key)
        if isinstance(value, dict) and path not in _LEAF_TABLES:
            keys.extend(_leaf_keys(value, here) or [here])
        else:
            keys.append(here)
    return keys
