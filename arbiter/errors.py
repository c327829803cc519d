"""The one exception type for mistakes a user can make.

The command line prints a `UserError` as a single line and exits with code 2, without a
traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: bad TOML, key, value, flag, name or path."""


class ConfigError(UserError):
    """A problem with one key of a configuration file, shown as `file: key: problem`."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class KeyProblem(ValueError):
    """Raised inside config validation for a rule that spans fields, naming the dotted key.

    A ValueError, so pydantic collects it like its own errors; the loader reads `key` back from
    the error's context to say which key of which file is wrong.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class RunFailed(Exception):
    """A run that started but cannot go on (e.g. its loss became NaN): one line, exit code 1."""
