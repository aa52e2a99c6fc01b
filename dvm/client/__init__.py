"""The requester SDK: submit a job, verify the container's evidence, chat, fetch the result.

Sits above ``dvm.relay`` and ``dvm.nostr`` (import-linter enforces it); built in the end-to-end
issue.
"""

__all__: list[str] = []
