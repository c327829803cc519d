"""An experiment's record: what template it ran, and whether Tune can restore it.

`STORAGE/NAME/arbiter.json` records the resolved template, its hash and the sweep's flags, so
`resume` runs exactly what was started and refuses a template that changed since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from arbiter.config.loading import describe_error, format_key
from arbiter.config.schema import Config
from arbiter.errors import UserError
from arbiter.experiments.location import Location, reaching

RECORD = "arbiter.json"


@dataclass(frozen=True)
class Record:
    """What `arbiter.json` holds."""

    template: str
    sets: list[str]
    template_hash: str
    resolved: dict[str, Any]
    gpus: int
    cpus_per_trial: int
    # `arbiter sweep --base-config`: the file layered under the template, which `resume` needs
    # to rebuild the same template. Records written before the flag existed have none.
    base_config: str | None = None
    # "sweep", or "long" for `arbiter long`'s one-trial experiments (which resume by rerunning)
    kind: str = "sweep"
    # Where the experiment was started (resolved); `resume` checks it has not moved since.
    # Records written before it was kept have none.
    path: str | None = None
    # Trials sharing each GPU, as the sweep decided it (`auto` resolved); `resume` keeps it.
    trials_per_gpu: int = 1
    # `arbiter extend`: the experiment this one continues ({"experiment": its URI, "changed":
    # {dotted key: new value}}); its trials begin from that one's checkpoints.
    parent: dict[str, Any] | None = None

    @cached_property
    def config(self) -> Config:
        """The validated settings, validated once (`read_record` does it first, to refuse a
        record this version cannot run)."""
        return Config.model_validate(self.resolved)


def template_hash(config: Config) -> str:
    """A hash of the resolved template: equal when every setting is equal. `model.preset` is
    left out: it only supplies settings, which are in the hash themselves."""
    settings = config.model_dump(mode="json")
    del settings["model"]["preset"]
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(path: Location) -> Record:
    """The experiment's record, its settings checked: a record this version cannot run (written
    by another version of Arbiter, or edited) is one line naming the key, not a traceback."""
    with reaching(path):
        text = (path / RECORD).read_text()
    try:
        record = Record(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path / RECORD}: unreadable experiment record: {exc}") from None
    try:
        record.config  # noqa: B018 (validates, and keeps the result)
    except ValidationError as exc:
        key, problem = describe_error(exc)
        raise UserError(
            f"{path / RECORD}: {format_key(key)}: {problem}; the experiment was written by "
            "another version of Arbiter, or edited: use the version that started it"
        ) from None
    return record


def has_tune_state(path: Location) -> bool:
    """Tune can restore only once it saved an experiment state, not merely tuner.pkl."""
    with reaching(path):
        return "tuner.pkl" in (names := path.children()) and bool(experiment_states(names))


def experiment_states(names: list[str]) -> list[str]:
    """Tune's saved experiment states among a folder's `names`, oldest first (named by time)."""
    return sorted(n for n in names if n.startswith("experiment_state-") and n.endswith(".json"))


def check_not_moved(path: Location, record: Record) -> None:
    """Refuse to resume a sweep moved since it started while some of its trials are not yet
    created: Ray Tune 2.60 restores the trials it saved at the new place, but creates the
    others at the old one (its search algorithm's saved state keeps the old path)."""
    if record.path is None or _same_place(record.path, path):
        return  # not moved, or the old path leads here
    with reaching(path):
        newest = path / experiment_states(path.children())[-1]
        created = len(json.loads(newest.read_text())["trial_data"])
    sweep = record.config.sweep
    assert sweep is not None
    if created < len(sweep.points()):
        raise UserError(
            f"{path}: was started at {record.path}, where Ray Tune would create the trials it "
            f"has not begun yet; move it back, or link that path here (ln -s {path} "
            f"{record.path})"
        )


def _same_place(recorded: str, path: Location) -> bool:
    """Whether the recorded path or URI is `path` (locally, after following links)."""
    if path.remote or "://" in recorded:
        return recorded == path.uri
    return Path(recorded).resolve() == path.local.resolve()
