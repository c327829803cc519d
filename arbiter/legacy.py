"""Every legacy form of the original command line, in one place so that it can be removed
in one commit: `sweep --base-config` and `--strategy`, and `train`'s hardware tiers with their
interactive menu. Each use prints a note naming what replaces it (docs/migration.md).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from arbiter.config.schema import Config
from arbiter.config.templates import find_template, list_templates, packaged_configs
from arbiter.errors import UserError

TIERS = ("high_vram", "low_vram")
# The seed's tiers: 12+ GB of GPU memory for high_vram, 4-6 GB for low_vram.
HIGH_VRAM_BYTES = 12 * 10**9
MENU = {"1": "high_vram", "2": "low_vram"}


def resolve_sweep_files(template: str | None, base_config: str | None) -> tuple[Path, Path | None]:
    """The template file and the config layered under it, from `--template` and the legacy
    `--base-config` (alone, the base config is the template)."""
    base = _base_config(base_config) if base_config else None
    if template:
        return find_template(template), base
    if base:
        return base, None
    raise UserError(
        "sweep: a template is required: --template T (see `arbiter templates`), "
        "or the legacy --base-config FILE"
    )


def apply_strategy(template: Config, strategy: str | None, sets: list[str]) -> Config:
    """`--strategy S`: the template with `[sweep] strategy = S`, recorded in `sets` as the
    `--set sweep.strategy=S` it stands for, so that `resume` rebuilds the same template."""
    if not strategy:
        return template
    sets.append(f"sweep.strategy={strategy}")
    resolved = template.model_dump(mode="json")
    resolved["sweep"]["strategy"] = strategy
    return Config.model_validate(resolved)


def _base_config(text: str) -> Path:
    """The --base-config file: a path, or a template name as --template takes them."""
    try:
        return find_template(text)
    except UserError:
        pass
    hint = ""
    with contextlib.suppress(UserError):
        # The legacy command ran from engine/ (`../configs/...`), and `cd engine` is gone:
        # point to the file of that name where templates are looked up.
        hint = f"; did you mean {find_template(Path(text).name)}?"
    raise UserError(f"--base-config {text}: file not found{hint}")


def nothing_to_sweep(base: Path) -> str:
    """The error for `--base-config B` alone when B has no [sweep] table, naming the templates
    that extend B, since the legacy orchestrator's own default space is not known here."""
    from arbiter.config.loading import read_toml

    extending = []
    for template in list_templates():
        try:
            parent = read_toml(template).get("extends")
        except UserError:
            continue
        if isinstance(parent, str) and (template.parent / parent).resolve() == base.resolve():
            extending.append(template.name)
    which = "see `arbiter templates`"
    if extending:
        which = f"one that extends it: {', '.join(extending)}"
    return (
        f"--base-config {base}: has no [sweep] table, so there is nothing to sweep; add "
        f"--template T ({which}) or a [sweep] table (see docs/migration.md)"
    )


def notes(
    base_config: str | None,
    strategy_flag: str | None,
    template: Path,
    base: Path | None,
    strategy: str,
) -> list[str]:
    """One line per legacy flag used, naming what replaces it."""
    lines = []
    if base_config:
        if base:
            instead = f'templates now say extends = "{base.name}"'
        else:
            instead = f"give it as --template {template}"
        lines.append(f"note: --base-config is the legacy form; {instead} (see docs/migration.md)")
    if strategy_flag:
        lines.append(
            f'note: --strategy is the legacy form; templates now say strategy = "{strategy}" '
            f"in [sweep], or --set sweep.strategy={strategy} (see docs/migration.md)"
        )
    return lines


def tier_config(tier: str) -> Path:
    """The legacy hardware tier's config file (`high_vram` or `low_vram`)."""
    if tier not in TIERS:
        raise UserError(f"--tier {tier}: unknown tier; allowed: {', '.join(TIERS)}, auto")
    return packaged_configs() / f"{tier}.toml"


def choose_tier(tier: str | None) -> str:
    """--tier as given, `auto` by GPU memory, or the interactive menu on a terminal."""
    from arbiter.core.hardware import visible_gpus

    if tier in MENU.values():
        return tier
    gpus = visible_gpus()
    memory = min((g.memory_bytes for g in gpus), default=0)
    suggestion = "high_vram" if memory >= HIGH_VRAM_BYTES else "low_vram"
    if tier == "auto":
        if not gpus:
            raise UserError("--tier auto: no GPU visible; the tiers are GPU configs (use --config)")
        return suggestion
    if not sys.stdin.isatty():
        raise UserError("train: give --config FILE or --tier high_vram|low_vram|auto (no terminal)")
    seen = f"{gpus[0].name}, {memory / 1e9:.1f} GB" if gpus else "no GPU detected"
    print(f"Detected: {seen}")
    print("  [1] High VRAM tier (12+ GB: batch 4 x 4, bf16, flash attention)")
    print("  [2] Low VRAM tier (4-6 GB: batch 1 x 32, fp16, gradient checkpointing)")
    default = "1" if suggestion == "high_vram" else "2"
    answer = input(f"Select a tier [{default}]: ").strip() or default
    if answer not in MENU:
        raise UserError(f"tier menu: '{answer}' is not a choice; allowed: 1, 2")
    return MENU[answer]
