"""cdvm/1, this project's own protocol, in one place (docs/protocol.md).

Pure like :mod:`dvm.nostr` (no sockets, clock or randomness; import-linter enforces it), and
built on it: ``kind7100`` (the attestation event and its claims), ``channel`` (the messages of
the encrypted conversation) and ``chunks`` (splitting long messages), ``params`` (the one table
of generation parameters that the node's admission and the container's runner both apply).
"""

from __future__ import annotations
