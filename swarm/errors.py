"""The learning package's error base, so a caller can catch every `swarm` failure with one class.

Each specific error keeps the builtin base callers already catch (`ValueError` for bad names and
settings), next to `SwarmError`.
"""

from __future__ import annotations


class SwarmError(Exception):
    """Base class of every error raised by `swarm`; the message says what to change."""


class ConfigError(SwarmError, ValueError):
    """A setting (config file, environment, flag or `--set` override) is unknown or has a value that
    cannot work; the message names it. The simulator and the node raise this one type."""
