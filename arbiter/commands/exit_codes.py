"""The exit codes of every command, in one table."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    DONE = 0
    FAILED = 1  # a run failed, or a sweep ended with failed trials
    USAGE = 2  # a mistake in the input: one line on stderr, nothing started
    BUDGET_SPENT = 75  # EX_TEMPFAIL: `long --hours` ran out; run the same command again
    INTERRUPTED = 130  # 128 + SIGINT, the shell's convention: resumable
