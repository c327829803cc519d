"""`repro_grokfast.toml`'s model is Grokfast's network exactly: with the weights of their decoder
(as `benchmarks/grokfast_reference.py` writes it after their main.py: nn.LayerNorm,
nn.MultiheadAttention, the block that normalises the residual stream itself) Theos computes the
same logits; its initial weights are drawn from the same distributions, layer by layer; their
optimizer's decay reaches every tensor; and the reference seeded as Arbiter starts where the
core starts."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers import ROOT, assert_drawn_alike

from arbiter.config.loading import load_config
from arbiter.core.loop import _build
from arbiter.core.model import build_model
from arbiter.core.optim import param_groups

sys.path.insert(0, str(ROOT / "benchmarks"))
from grokfast_reference import ReferenceDecoder, arbiter_draws, arbiter_names  # noqa: E402

TEMPLATE = ROOT / "configs" / "sweep_templates" / "repro_grokfast.toml"


@pytest.fixture(scope="module")
def models():
    config = load_config(TEMPLATE)
    torch.manual_seed(0)
    ours = build_model(config)
    torch.manual_seed(0)
    return config, ours, ReferenceDecoder()


def test_with_their_weights_theos_computes_their_logits(models):
    _, ours, reference = models
    mapped = arbiter_names(reference)
    assert set(mapped) == set(ours.state_dict())  # every tensor, nothing more
    twin = build_model(load_config(TEMPLATE))
    twin.load_state_dict({k: v.detach().clone() for k, v in mapped.items()})
    ids = torch.randint(0, 99, (64, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids.T).transpose(0, 1)  # theirs is time-first
        got = twin(ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_initial_weights_are_drawn_as_theirs_layer_by_layer(models):
    _, ours, reference = models
    assert_drawn_alike(ours.state_dict(), arbiter_names(reference))


def test_their_optimizer_decays_every_tensor(models):
    config, ours, reference = models
    decayed, kept = param_groups(ours, 0.005, False, config.training.decay_all)
    assert kept["params"] == [] and len(decayed["params"]) == len(list(reference.parameters()))


def test_seeded_as_arbiter_the_reference_starts_from_the_cores_weights_and_batches():
    config = load_config(TEMPLATE, ["training.seed=3"])
    core = _build(config, None)  # the core's build phase: seeding, model, data, in its order
    draws = arbiter_draws(3)
    for epoch in range(2):  # the second epoch begins on a new permutation
        batches = next(draws.epochs)
        assert [b.shape[1] for b in batches] == [512] * 9 + [48]
        for batch in batches:
            ids, answers = core.task.train_batch()
            assert torch.equal(batch, torch.cat([ids, answers], dim=1).T), epoch
    chunks = core.task.eval_splits()["val"]
    core_val = torch.cat([torch.cat([ids, answers], dim=1) for ids, answers in chunks]).T
    assert torch.equal(draws.val, core_val)
    with torch.no_grad():
        expected = core.model(core_val[:-1, :256].T)[:, -1]
        got = draws.model(draws.val[:-1, :256])[-1]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
