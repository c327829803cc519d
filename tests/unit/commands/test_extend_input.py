"""`arbiter extend` refuses in one line, exit code 2, before Ray starts and before it writes
anything: a setting a checkpoint fixes, nothing changed, an unknown parent, a taken name (the
continued trials themselves: tests/e2e/test_extend.py)."""

from __future__ import annotations

import pytest

from arbiter.config.schema import Config
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record
from arbiter.experiments.storage import new_experiment


@pytest.fixture
def storage(tmp_path):
    """An experiments folder holding the sweep `par` (its record, as `arbiter sweep` starts)."""
    config = Config.model_validate(
        {"training": {"steps": 400}, "sweep": {"space": {"training.seed": [1, 2]}}}
    )
    record = Record("t.toml", [], "0", config.model_dump(mode="json"), 0, 1)
    new_experiment(Location.of(tmp_path), "par", record)
    return tmp_path


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["model.dim=64"], "--set model.dim: a checkpoint of par fixes it"),
        (["data.modulus=53"], "--set data.modulus: a checkpoint of par fixes it"),
        (["training.optimizer=sgd"], "--set training.optimizer: a checkpoint of par fixes it"),
        ([], "extend: nothing changed: give --set KEY=VALUE"),
        (["training.steps=-1"], "training.steps: Input should be greater than 0"),
    ],
)
def test_what_a_checkpoint_cannot_take_is_one_line(cli, storage, sets, words) -> None:
    flags = [arg for s in sets for arg in ("--set", s)]
    code, out, err = cli("extend", "par", "--name", "par2", *flags, "--storage", storage)
    assert code == 2, err
    assert err.count("\n") == 1 and words in err, err
    assert not (storage / "par2").exists()
    assert sorted(p.name for p in (storage / "par").iterdir()) == ["arbiter.json"]


def test_an_unknown_parent_and_a_taken_name_are_one_line(cli, storage) -> None:
    code, _, err = cli(
        "extend", "nope", "--name", "x", "--set", "training.steps=800", "--storage", storage
    )
    assert code == 2 and "nope" in err and err.count("\n") == 1
    code, _, err = cli(
        "extend", "par", "--name", "par", "--set", "training.steps=800", "--storage", storage
    )
    assert code == 2 and "already exists" in err, err
