"""An experiment that extends another (`arbiter extend`): which settings it changed, which of
them a checkpoint forbids changing, and where each of the parent's trials left off.

A point of the space (a trial's swept values) is matched between the two experiments by
`point_key`: a point the parent ran continues from the parent trial's newest checkpoint, a new
one starts from step 0.
"""

from __future__ import annotations

import json
import re
from typing import Any

from arbiter.config.schema import Config
from arbiter.experiments.location import Location
from arbiter.experiments.trials import TrialStatus

# Settings a checkpoint holds the consequences of: the network's shapes, the data it was
# trained on (and its cursor), the optimizer's and Grokfast's state.
FIXED = ("model.", "data.", "training.optimizer", "training.grokfast")
_TUNE_CHECKPOINT = re.compile(r"checkpoint_(\d+)$")


def point_key(overrides: dict[str, Any]) -> str:
    """A point of the space as text, the same for equal swept values."""
    return json.dumps(overrides, sort_keys=True)


def changed_settings(parent: Config, child: Config) -> dict[str, Any]:
    """Every dotted key whose value differs between the two configs, with the child's value."""
    old, new = _leaves(parent.model_dump(mode="json")), _leaves(child.model_dump(mode="json"))
    return {
        key: new.get(key) for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)
    }


def fixed_changes(changed: dict[str, Any]) -> list[str]:
    """The changed keys that a continued checkpoint cannot take."""
    return [key for key in changed if key.startswith(FIXED)]


def newest_checkpoints(trials: list[TrialStatus]) -> dict[str, str]:
    """point_key -> the URI of the trial's newest checkpoint, for each trial that saved one."""
    starts = {}
    for trial in trials:
        folder = Location.of(trial.path)
        numbered = [
            (int(m.group(1)), name)
            for name in folder.children()
            if (m := _TUNE_CHECKPOINT.match(name))
        ]
        if numbered:
            starts[point_key(trial.config)] = (folder / max(numbered)[1]).uri
    return starts


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not (prefix == "sweep." and key == "space"):
            leaves.update(_leaves(value, f"{dotted}."))
        else:
            leaves[dotted] = value
    return leaves
