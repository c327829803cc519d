"""Grokking measures (steps to fit and to grok) and the Grokfast gradient filter, by hand."""

from __future__ import annotations

import pickle

import pytest
import torch

from arbiter.core.grokfast import Grokfast
from arbiter.core.grokking import GrokClock, measures_from_rows, phase


def evaluation(step: int, train: float, val: float) -> dict:
    return {"eval_step": step, "train/accuracy": train, "val/accuracy": val}


def test_the_clock_records_the_first_step_at_each_threshold():
    clock = GrokClock()
    clock.observe(evaluation(100, 0.5, 0.01))
    assert clock.metrics() == {}  # nothing reached yet: absent, not zero
    clock.observe(evaluation(200, 0.99, 0.02))
    assert clock.metrics() == {"steps_to_fit": 200}
    clock.observe(evaluation(300, 0.98, 0.3))  # a dip after fitting does not move steps_to_fit
    clock.observe(evaluation(400, 1.0, 0.995))
    clock.observe(evaluation(500, 1.0, 0.5))  # nor a later collapse steps_to_grok
    assert clock.metrics() == {"steps_to_fit": 200, "steps_to_grok": 400, "grok_delay": 200}


def run(*points: tuple[int, float, float]) -> list[dict]:
    return [evaluation(step, train, val) for step, train, val in points]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (run((100, 0.95, 0.5), (900, 1.0, 0.95)), "comprehension"),  # 800 steps apart
        (run((100, 0.95, 0.5), (1100, 1.0, 0.95)), "grokking"),  # exactly the gap: grokking
        (run((100, 0.95, 0.5), (5000, 1.0, 0.6)), "memorization"),
        (run((100, 0.5, 0.3), (5000, 0.8, 0.7)), "confusion"),
        (run((100, 0.5, 0.91)), "comprehension"),  # validation first: nothing to wait for
        (run((100, 0.9, 0.9), (200, 0.9, 0.9)), "confusion"),  # 90% is not past 90%
    ],
    ids=["comprehension", "grokking", "memorization", "confusion", "val-first", "at-90"],
)
def test_phases_follow_liu_et_al_table_1(rows, expected):
    assert phase(rows) == expected


def test_grokking_without_a_recorded_fit_has_no_delay():
    clock = GrokClock()
    clock.observe({"eval_step": 50, "val/accuracy": 1.0})  # a task with no train evaluation
    assert clock.metrics() == {"steps_to_grok": 50}


def test_the_clock_state_round_trips():
    clock = GrokClock()
    clock.observe(evaluation(100, 1.0, 0.1))
    restored = GrokClock()
    restored.load_state_dict(clock.state_dict())
    restored.observe(evaluation(200, 1.0, 1.0))
    assert restored.metrics() == {"steps_to_fit": 100, "steps_to_grok": 200, "grok_delay": 100}


def test_measures_from_rows_skip_rows_without_an_evaluation():
    rows = [
        {"step": 10, "train/loss": 1.0},
        {"step": 20, **evaluation(20, 0.995, 0.1)},
        {"step": 30, **evaluation(30, 1.0, 0.999)},
    ]
    assert measures_from_rows(rows) == {"steps_to_fit": 20, "steps_to_grok": 30, "grok_delay": 10}


def parameter(*grads: list[float]) -> tuple[torch.nn.Parameter, list[torch.Tensor]]:
    return torch.nn.Parameter(torch.zeros(len(grads[0]))), [torch.tensor(g) for g in grads]


def filtered(grokfast: Grokfast, p: torch.nn.Parameter, grad: torch.Tensor) -> list[float]:
    p.grad = grad.clone()
    grokfast.filter()
    return p.grad.tolist()


@pytest.mark.parametrize("guard", [False, True], ids=["fp32", "fp16-guarded"])
def test_grokfast_matches_a_hand_computed_example(guard):
    # alpha 0.5, lamb 2. Step 1: h = g1 = [1, 2];          g1' = g1 + 2 h = [3, 6].
    # Step 2: h = 0.5 [1, 2] + 0.5 [3, -1] = [2, 0.5];      g2' = [3, -1] + 2 h = [7, 0].
    # Step 3: h = 0.5 [2, 0.5] + 0.5 [-2, 1.5] = [0, 1];    g3' = [-2, 1.5] + 2 h = [-2, 3.5].
    p, grads = parameter([1.0, 2.0], [3.0, -1.0], [-2.0, 1.5])
    grokfast = Grokfast([p], alpha=0.5, lamb=2.0, guard_overflow=guard)
    assert [filtered(grokfast, p, g) for g in grads] == [[3, 6], [7, 0], [-2, 3.5]]


def test_an_overflowed_step_leaves_the_averages_alone():
    p, grads = parameter([float("inf"), 1.0], [1.0, 2.0], [float("nan"), 0.0], [3.0, -1.0])
    grokfast = Grokfast([p], alpha=0.5, lamb=2.0, guard_overflow=True)
    out = [filtered(grokfast, p, g) for g in grads]
    # the first finite gradient starts the averages; the NaN step is skipped (the scaler skips
    # that optimizer step too), so the last step sees h = 0.5 [1, 2] + 0.5 [3, -1]
    assert out[1] == [3, 6] and out[3] == [7, 0]
    assert all(torch.isfinite(t).all() for t in grokfast.ema)


@pytest.mark.parametrize("guard", [False, True])
def test_grokfast_state_round_trips_through_a_checkpoint(guard):
    p, grads = parameter([1.0, 2.0], [3.0, -1.0], [-2.0, 1.5])
    straight = Grokfast([p], alpha=0.9, lamb=1.5, guard_overflow=guard)
    expected = [filtered(straight, p, g) for g in grads]

    first = Grokfast([p], alpha=0.9, lamb=1.5, guard_overflow=guard)
    filtered(first, p, grads[0])
    saved = pickle.loads(pickle.dumps(first.state_dict()))
    second = Grokfast([p], alpha=0.9, lamb=1.5, guard_overflow=guard)
    second.load_state_dict(saved)
    assert [filtered(second, p, g) for g in grads[1:]] == expected[1:]


def test_grokfast_refuses_state_of_another_model():
    p, _ = parameter([1.0])
    state = {"ema": [torch.zeros(1), torch.zeros(1)], "started": True}
    with pytest.raises(ValueError, match="2 tensors, the model 1"):
        Grokfast([p], alpha=0.9, lamb=1.0, guard_overflow=False).load_state_dict(state)
