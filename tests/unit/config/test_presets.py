"""`model.preset`: a reference network's keys as the model table's defaults, which any key given
beside it overrides, in a file, an inherited file, --set or a sweep axis."""

from __future__ import annotations

import pytest

from arbiter.config.loading import load_config
from arbiter.config.presets import MODEL_PRESETS
from arbiter.config.schema import Config, ModelConfig
from arbiter.config.trials import plan_trials
from arbiter.experiments.record import template_hash


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_a_preset_sets_every_key_of_its_network(name):
    model = ModelConfig.model_validate({"preset": name})
    for key, value in MODEL_PRESETS[name].items():
        assert getattr(model, key) == value, key
    # each key differs from Arbiter's default somewhere: no preset depends on the defaults
    defaults = ModelConfig()
    assert any(getattr(defaults, key) != value for key, value in MODEL_PRESETS[name].items())


def test_keys_beside_the_preset_win_wherever_they_are_set(write):
    write("base.toml", "[model]\ndim = 64\n")
    child = write("child.toml", 'extends = "base.toml"\n[model]\npreset = "power"\n')
    config = load_config(child, ["model.n_layers=3"])
    assert (config.model.dim, config.model.n_layers) == (64, 3)  # the parent's, --set's
    assert (config.model.block, config.model.positions) == ("post_norm", "sinusoidal")


def test_a_sweep_over_presets_gives_each_trial_its_whole_network(write):
    template = write(
        "t.toml",
        '[model]\npreset = "power"\ndim = 64\n'
        '[sweep.space]\n"model.preset" = ["power", "grokfast", "nanda"]\n',
    )
    trials = plan_trials(load_config(template), str(template))
    for trial in trials:
        preset = trial.overrides["model.preset"]
        for key, value in MODEL_PRESETS[preset].items():
            expected = 64 if key == "dim" else value  # the template's own key stays
            assert getattr(trial.config.model, key) == expected, (preset, key)


def test_a_preset_and_its_keys_spelled_out_are_the_same_run():
    spelled = Config.model_validate({"model": MODEL_PRESETS["grokfast"]})
    named = Config.model_validate({"model": {"preset": "grokfast"}})
    assert template_hash(spelled) == template_hash(named)  # a sweep resumes across the change
    again = Config.model_validate(named.run_settings())  # as a trial rebuilds it
    assert again == named and "block" not in named.run_settings()["model"]
