"""Reading trial states: Tune's saved state lags the trials by up to ~10 s."""

from __future__ import annotations

from arbiter.tune.state import _state


def test_a_pending_trial_that_reported_is_running():
    assert _state("PENDING", [{"step": 50}]) == "RUNNING"
    assert _state("PENDING", []) == "PENDING"
    assert _state("TERMINATED", [{"step": 50}]) == "TERMINATED"
    assert _state("ERROR", [{"step": 50}]) == "ERROR"
