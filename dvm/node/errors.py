"""Errors of the provider node (``dvm.node``).

One root; ``cdvm serve`` turns any of them into exit code 1 with the message. Messages name
config keys, job ids, kinds and sizes, never key material::

    NodeError
    ├── ConfigError        the provider config is invalid (names the key)
    ├── LedgerError        the SQLite job ledger cannot be opened or is inconsistent
    ├── SandboxUnavailable bubblewrap is missing and allow_unsandboxed is false
    ├── LaunchError        a job container could not be started (``reason``: the feedback reason)
    └── AttestationIgnored a kind-7100 event the node will not take as its container's
"""

from __future__ import annotations

from dvm.nostr.nip90 import ErrorReason

__all__ = [
    "AttestationIgnored",
    "ConfigError",
    "LaunchError",
    "LedgerError",
    "NodeError",
    "SandboxUnavailable",
]


class NodeError(Exception):
    """Root of every error raised by the provider node."""


class ConfigError(NodeError):
    """The provider config is invalid; the message names the offending key."""


class LedgerError(NodeError):
    """The job ledger cannot be opened, or a transition is not allowed."""


class SandboxUnavailable(NodeError):  # noqa: N818 - names the condition
    """bubblewrap is not usable and the config does not allow running unsandboxed."""


class LaunchError(NodeError):
    """A job container could not be started.

    ``reason`` is the ``error`` feedback reason the requester gets (``launch-failed`` unless the
    launcher knows better: ``capacity`` for a full cluster, ``unsupported-tee``); the message
    goes into the feedback's content, so it names ids, kinds and the API's words, never job data.
    """

    def __init__(self, message: str, *, reason: ErrorReason = ErrorReason.LAUNCH_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


class AttestationIgnored(NodeError):  # noqa: N818 - names the outcome, like SandboxUnavailable
    """A kind-7100 event for one of our jobs that the node does not accept as its container's.

    ``reasons`` lists every failed check (the operator's log line); the event is then ignored,
    so an impostor can never make the node name its key in ``processing`` feedback.
    ``evidence_checked`` says whether the event got as far as the evidence verification.
    """

    def __init__(
        self, event_id: str, reasons: list[str], *, evidence_checked: bool = False
    ) -> None:
        self.event_id = event_id
        self.reasons = tuple(reasons)
        #: True when the event got as far as the (costlier) evidence verification.
        self.evidence_checked = evidence_checked
        super().__init__(f"attestation {event_id}: " + "; ".join(reasons))
