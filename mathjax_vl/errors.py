"""The one marker for mistakes in a user's input (files, keys, values, flags, run dirs).

The CLI prints a `UserError` (and the domain errors that subclass it) as one line, `error: ...`,
and exits 2; `--log-level DEBUG` shows the traceback. Anything else is a bug and keeps its
traceback. Lowest layer: every package may import it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the file / key / value and what was expected."""


class ConfigError(UserError, ValueError):
    """A config value (or a combination) that cannot run; names the key and the value."""


class ConfigKeyError(UserError, KeyError):
    """A config key (e.g. in a `--config.a.b=v` override) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigTypeError(UserError, TypeError):
    """A config value of the wrong type for its key."""
