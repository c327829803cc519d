"""Equal-budget sizing: each trial takes the size nearest its parameter budget, the real model
has that many parameters, and the shipped deep & narrow templates compare shapes at one budget."""

from __future__ import annotations

import pytest

from arbiter.config.budget import fit
from arbiter.config.estimate import parameter_count
from arbiter.config.loading import load_config
from arbiter.config.schema import Budget, Config
from arbiter.config.templates import find_template
from arbiter.config.trials import InvalidTrial, plan_trials, trial_config
from arbiter.core.model import build_model

BASE = {"model": {"dim": 64, "n_layers": 2, "n_heads": 4}, "training": {"steps": 100}}


def sized(config: Config, **model: int) -> int:
    """Parameters of `config` with some model keys changed."""
    return parameter_count(
        config.model_copy(update={"model": config.model.model_copy(update=model)})
    )


@pytest.mark.parametrize("layers", [1, 3, 8])
def test_the_derived_width_is_the_head_multiple_nearest_the_budget(layers) -> None:
    config = trial_config(BASE, {"model.n_layers": layers})
    budget = Budget(params=2e5)  # the template's head size: 64 / 4 = 16
    size = fit(config, budget)
    dim = size.model["dim"]
    assert dim % 16 == 0 and size.model["n_heads"] == dim // 16
    assert size.params == sized(config, **size.model)
    distance = abs(size.params - budget.params)
    for other in (dim - 16, dim + 16):  # no other width of whole heads comes nearer
        if other > 0:
            assert abs(sized(config, dim=other, n_heads=other // 16) - budget.params) >= distance


def test_the_derived_depth_is_the_layer_count_nearest_the_budget() -> None:
    config = trial_config(BASE, {"model.dim": 48})
    budget = Budget(params=1.5e5, derive="model.n_layers")
    size = fit(config, budget)
    layers = size.model["n_layers"]
    distance = abs(size.params - budget.params)
    assert abs(sized(config, n_layers=layers - 1) - budget.params) >= distance
    assert abs(sized(config, n_layers=layers + 1) - budget.params) >= distance


def test_a_sized_trial_builds_a_model_of_the_parameters_the_budget_gave() -> None:
    budget = Budget(params=2e5, head_size=8)
    for layers in (1, 3):
        config = trial_config(BASE, {"model.n_layers": layers}, budget)
        real = sum(p.numel() for p in build_model(config).parameters())
        assert real == parameter_count(config)
        assert abs(budget.deviation(real)) <= budget.tolerance
        assert config.model.dim // config.model.n_heads == 8


def test_a_budget_out_of_reach_names_the_trial_and_its_nearest_size() -> None:
    with pytest.raises(InvalidTrial, match=r"\(model.n_layers=40\): the nearest size") as caught:
        trial_config(BASE, {"model.n_layers": 40}, Budget(params=5e4))
    assert caught.value.key == "sweep.budget"
    assert "% over the budget of 50,000" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "layers"), [("deep_narrow_template.toml", 80), ("baseline_standard.toml", 6)]
)
def test_the_deep_and_wide_templates_share_one_budget(name, layers) -> None:
    template = load_config(find_template(name), [])
    assert template.sweep is not None and template.sweep.budget is not None
    budget = template.sweep.budget
    assert budget.params == pytest.approx(1.03e9)
    trials = plan_trials(template, name)
    assert {t.config.model.n_layers for t in trials} >= {layers}
    for trial in trials:
        assert abs(budget.deviation(parameter_count(trial.config))) <= 0.05
        assert trial.config.model.dim // trial.config.model.n_heads == 64
    if name.startswith("deep"):  # its deepest trial is the original project's 80 x 1024
        deepest = max(trials, key=lambda t: t.config.model.n_layers)
        assert deepest.config.model.dim == 1024
