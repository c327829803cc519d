"""Run an `arbiter` command from a benchmark so that Ctrl-C stops it as its own Ctrl-C would.

`subprocess.run` kills its command a quarter of a second after a Ctrl-C: an `arbiter sweep`
then leaves its Ray agents and the trials' scratch behind and saves no state to resume from.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

from arbiter.commands.exit_codes import ExitCode

EXIT_INTERRUPTED = ExitCode.INTERRUPTED

# What stops the command: Ctrl-C, a closed terminal, a `kill`. Each is passed on as a SIGINT.
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_through_interrupts(command: list[str], **popen: Any) -> int:
    """Run `command` to its end and return its exit code, 130 when a SIGINT ended it.

    It runs in a session of its own, so that a terminal's signals reach only this process,
    which passes each one on as a SIGINT and waits: `arbiter sweep` stops cleanly on the first
    (and Ray Tune gives up saving on a second).
    """
    # The handlers go in before the command starts, so that no signal finds this process with
    # its default action (which would end it and leave the command running); one that comes
    # before the command exists is passed on as soon as it does.
    child: subprocess.Popen | None = None
    pending: list[int] = []

    def pass_on(signum: int, _frame: Any) -> None:
        if child is None:
            pending.append(signum)
        else:
            child.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, pass_on) for sig in STOPPING}
    try:
        child = subprocess.Popen(command, start_new_session=True, **popen)
        if pending:
            child.send_signal(signal.SIGINT)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:  # waiting failed: leave nothing running
            child.kill()
    if code == -signal.SIGINT:  # a SIGINT before Ray Tune took it over, or a second one
        return EXIT_INTERRUPTED
    return 128 - code if code < 0 else code  # killed by another signal: the shell's 128 + N
