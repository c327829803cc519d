"""`[notify]` through Apprise to a real HTTP endpoint on 127.0.0.1 (Apprise's JSON service): a
sweep's grokked, stalled and finished messages arrive; a service that does not answer is one
warning and the sweep goes on; an errored trial's message names its error."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from helpers import free_port, run, sweep_args, tiny_run

from arbiter.config.schema import NotifyConfig
from arbiter.tune.notify import Notifier, notify_urls


class Hook:
    """An HTTP endpoint that keeps the JSON body of every POST."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self) -> list[tuple[str, str]]:
        return [(m["title"], m["message"]) for m in self.received]


@pytest.fixture
def hook() -> Iterator[Hook]:
    endpoint = Hook()
    yield endpoint
    endpoint.server.shutdown()


def test_an_errored_trial_and_the_events_chosen(hook, monkeypatch) -> None:
    monkeypatch.delenv("ARBITER_NOTIFY_URLS", raising=False)
    trial = SimpleNamespace(trial_id="t_00001", get_error=lambda: "Traceback\nValueError: nan loss")
    notifier = Notifier("wd", [hook.url], ["errored", "finished"])
    notifier.on_trial_error(1, [trial], trial)
    notifier.stalled("t_00002", 400, "over 200 steps")  # not chosen: not sent
    assert hook.messages() == [
        ("arbiter wd: errored", "t_00001 failed after its retries: ValueError: nan loss")
    ]


def test_a_service_that_does_not_answer_is_one_warning(hook, caplog) -> None:
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    notifier = Notifier("wd", [hook.url, dead], ["grokked"])
    trial = SimpleNamespace(trial_id="t_00000")
    notifier.on_trial_result(1, [trial], trial, {"steps_to_grok": 600, "val/accuracy": 0.99})
    notifier.on_trial_result(2, [trial], trial, {"steps_to_grok": 600, "val/accuracy": 1.0})
    assert hook.messages() == [  # once per trial, to the service that answers
        ("arbiter wd: grokked", "t_00000 grokked at step 600, validation accuracy 0.9900 now")
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "notify: the grokked message of wd was not sent (a service refused it or did not answer)"
    ]


def test_without_apprise_a_message_is_one_warning_and_the_sweep_goes_on(
    hook, caplog, monkeypatch
) -> None:
    """URLs from $ARBITER_NOTIFY_URLS on an install that left Apprise out (deploy/offline)."""
    monkeypatch.setitem(sys.modules, "apprise", None)  # `import apprise` fails as if not there
    Notifier("wd", [hook.url], ["stalled"]).stalled("t_00002", 400, "over 200 steps")
    assert hook.messages() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "ModuleNotFoundError" in warnings[0], warnings


def test_urls_come_from_the_template_and_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ARBITER_NOTIFY_URLS", "ntfy://a, json://127.0.0.1/b")
    config = NotifyConfig(urls=["json://127.0.0.1/x"])
    assert notify_urls(config) == ["json://127.0.0.1/x", "ntfy://a", "json://127.0.0.1/b"]
    with pytest.raises(ValueError, match="not the URL of a service Apprise knows"):
        NotifyConfig(urls=["telegraph://nowhere"])


@pytest.mark.slow
def test_a_sweep_sends_grokked_stalled_and_finished(cluster, hook, tmp_path, write) -> None:
    """The grokking scheduler's real sweep (tests/unit/tune/test_grokking_scheduler.py): the
    learning rate 3e-3 groks, 1e-6 learns nothing and is stopped for it."""
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    template = write(
        "grok.toml",
        tiny_run(
            2000,
            {
                "data": "train_fraction = 0.8",
                "training": "weight_decay = 1.0",
                "checkpoint": "interval = 500",
                "notify": f'urls = ["{hook.url}", "{dead}"]',
                "sweep": 'scheduler = "grokking"',
                "sweep.grokking": "threshold = 0.95\npatience = 2\nfit_budget = 200\nwindow = 200",
                "sweep.space": '"training.learning_rate" = [3e-3, 1e-6]',
            },
        ),
    )
    done = run(*sweep_args(template, gpus=2, address=cluster, storage=tmp_path, name="told"))
    assert done.returncode == 0, done.stdout + done.stderr
    titles = [title for title, _ in hook.messages()]
    assert sorted(titles) == [
        "arbiter told: finished",
        "arbiter told: grokked",
        "arbiter told: stalled",
    ]
    assert titles[-1] == "arbiter told: finished"
    bodies = dict(hook.messages())
    assert bodies["arbiter told: finished"] == "2 trials: 2 terminated; 1 grokked"
    assert "no progress (over 200 steps: weight norm" in bodies["arbiter told: stalled"]
    assert done.stderr.count("notify: the ") == 3  # the dead service: one warning per message
