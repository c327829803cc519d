"""`arbiter resume`'s check that the template is the one the sweep started with: a template
changed since is refused, while a record written before a setting existed (the setting at its
default now) is the same sweep (the changed template end to end: tests/e2e/test_security.py)."""

from __future__ import annotations

import pytest

from arbiter.commands.resume import _check_template
from arbiter.config.loading import load_config
from arbiter.config.schema import Config
from arbiter.errors import UserError
from arbiter.experiments.location import Location
from arbiter.experiments.record import Record, template_hash

TEMPLATE = """
[training]
steps = 100
[sweep.space]
"training.seed" = [0, 1]
"""


def record_of(template, resolved: dict) -> Record:
    """The record a sweep of `template` writes, with `resolved` as its settings."""
    return Record(str(template), [], template_hash(Config.model_validate(resolved)), resolved, 0, 1)


def test_a_record_from_before_a_setting_existed_resumes(tmp_path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE)
    resolved = load_config(template).model_dump(mode="json")
    del resolved["notify"]  # as written by a version without [notify]
    del resolved["logging"]["trackers"]
    del resolved["model"]["preset"]
    _check_template(Location.of(tmp_path), record_of(template, resolved))


def test_a_changed_template_is_refused(tmp_path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE)
    record = record_of(template, load_config(template).model_dump(mode="json"))
    assert record.template_hash == template_hash(load_config(template))
    template.write_text(TEMPLATE.replace("[0, 1]", "[0, 1, 2]"))
    with pytest.raises(UserError, match="changed since the sweep started"):
        _check_template(Location.of(tmp_path), record)
