"""Run an `arbiter` command from a benchmark so that Ctrl-C stops it as its own Ctrl-C would.

`subprocess.run` kills its command a quarter of a second after a Ctrl-C: an `arbiter sweep`
then leaves its Ray agents and the trials' scratch behind and saves no state to resume from.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def run_through_interrupts(command: list[str], **popen: Any) -> int:
    """Run `command` to its end and return its exit code, passing each Ctrl-C on to it.

    It gets a session of its own, so that a terminal's Ctrl-C reaches the caller alone, and
    each one reaches it once, as a SIGINT: `arbiter sweep` stops cleanly on the first.
    """
    child = subprocess.Popen(command, start_new_session=True, **popen)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
