"""`[notify]`: a message through Apprise when a trial grokked, errored or stalled, and when the
sweep finished, from a Ray Tune callback on the driver.

A trial has grokked when its results first carry `steps_to_grok` (validation accuracy 0.99) or
when the grokking scheduler stops it as grokked (its own threshold); "stalled" is that
scheduler's decision alone. It calls `grokked` and `stalled`.
Sending never fails the sweep: a service that does not answer or refuses is one warning, and
each message waits on its services for a few seconds at most.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray.tune import Callback

from arbiter.config.schema import NotifyConfig

log = logging.getLogger(__name__)

# Apprise URLs from the environment, besides the template's: where a token should not be
# written into a template (and so into the experiment's record).
URLS_VARIABLE = "ARBITER_NOTIFY_URLS"
TIMEOUT_S = 5  # per service


def notify_urls(config: NotifyConfig) -> list[str]:
    """The template's URLs and those of $ARBITER_NOTIFY_URLS (separated by spaces or commas)."""
    extra = os.environ.get(URLS_VARIABLE, "").replace(",", " ").split()
    return [*config.urls, *extra]


class Notifier(Callback):
    """Sends the sweep `name`'s events named in `config.on` to `urls`."""

    def __init__(self, name: str, urls: list[str], events: list[str]) -> None:
        self.name = name
        self.urls = urls
        self.events = set(events)
        self._grokked: set[str] = set()  # trials already announced

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        if result.get("steps_to_grok") is not None:
            self.grokked(trial.trial_id, result["steps_to_grok"], result.get("val/accuracy"))

    def grokked(self, trial_id: str, step: int, accuracy: float | None) -> None:
        """`trial_id` reached its grokking threshold at `step`: said once per trial."""
        if trial_id in self._grokked:
            return
        self._grokked.add(trial_id)
        shown = f", validation accuracy {accuracy:.4f} now" if accuracy is not None else ""
        self.send("grokked", f"{trial_id} grokked at step {step:,}{shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.send("errored", f"{trial.trial_id} failed after its retries: {_last_line(trial)}")

    def stalled(self, trial_id: str, step: int, why: str) -> None:
        """The grokking scheduler stopped `trial_id` at `step` for lack of progress."""
        self.send("stalled", f"{trial_id} stopped at step {step:,}: no progress ({why})")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        states: dict[str, int] = {}
        for trial in trials:
            states[trial.status] = states.get(trial.status, 0) + 1
        tally = ", ".join(f"{n} {state.lower()}" for state, n in sorted(states.items()))
        grokked = f"; {len(self._grokked)} grokked" if self._grokked else ""
        self.send("finished", f"{len(trials)} trials: {tally}{grokked}")

    def send(self, event: str, body: str) -> None:
        if event not in self.events or not self.urls:
            return
        try:
            sent = self._notify(f"arbiter {self.name}: {event}", body)
        except Exception as exc:  # a notification never fails the sweep (nor a missing Apprise)
            sent, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = "a service refused it or did not answer"
        if not sent:
            log.warning("notify: the %s message of %s was not sent (%s)", event, self.name, why)

    def _notify(self, title: str, body: str) -> bool:
        """Apprise's notify to every URL: whether all of them took the message."""
        import apprise  # only for a sweep that notifies: a slow import, and optional offline

        # Apprise logs each failed service itself; send's warning is the one line of it
        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        services = apprise.Apprise()
        for url in self.urls:
            services.add(url)
        for server in services:
            server.socket_connect_timeout = server.socket_read_timeout = TIMEOUT_S
        return services.notify(title=title, body=body)


def _last_line(trial: Any) -> str:
    """The last line of the trial's error, as Tune keeps it (its error.txt)."""
    try:
        text = trial.get_error() or ""
    except Exception:  # the error file in a store that is away: the message goes anyway
        text = ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "see its error.txt"
