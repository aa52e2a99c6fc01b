"""Errors of the provider node (``dvm.node``).

One root; ``cdvm serve`` turns any of them into exit code 1 with the message. Messages name
config keys, job ids, kinds and sizes, never key material::

    NodeError
    ├── ConfigError        the provider config is invalid (names the key)
    ├── LedgerError        the SQLite job ledger cannot be opened or is inconsistent
    ├── SandboxUnavailable bubblewrap is missing and allow_unsandboxed is false
    └── LaunchError        a job container could not be started
"""

from __future__ import annotations

__all__ = ["ConfigError", "LaunchError", "LedgerError", "NodeError", "SandboxUnavailable"]


class NodeError(Exception):
    """Root of every error raised by the provider node."""


class ConfigError(NodeError):
    """The provider config is invalid; the message names the offending key."""


class LedgerError(NodeError):
    """The job ledger cannot be opened, or a transition is not allowed."""


class SandboxUnavailable(NodeError):  # noqa: N818 - names the condition
    """bubblewrap is not usable and the config does not allow running unsandboxed."""


class LaunchError(NodeError):
    """A job container could not be started (maps to ``launch-failed`` feedback)."""
