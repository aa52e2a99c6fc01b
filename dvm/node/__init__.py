"""The provider daemon (`cdvm serve`): intake, admission, job ledger, launchers, feedback.

Sits above ``dvm.relay`` and ``dvm.nostr`` (import-linter enforces it); built in the end-to-end
issue.
"""

__all__: list[str] = []
