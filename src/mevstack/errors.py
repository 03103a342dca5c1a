"""The exception hierarchy: every error a user can cause is a MevstackError with one clear line.

The CLI prints ``str(error)`` on stderr and exits with ``error.exit_code``; anything that is not a
MevstackError is a bug and keeps its traceback.
"""

from __future__ import annotations


class MevstackError(Exception):
    """Base of every error mevstack raises on purpose."""

    exit_code = 1


class ConfigError(MevstackError):
    """The configuration file or an environment override is invalid."""

    exit_code = 2


class DevnetError(MevstackError):
    """The local devnet could not be started or deployed."""
