"""cdvm/1, this project's own protocol, in one place (docs/protocol.md).

Pure like :mod:`dvm.nostr` (no sockets, clock or randomness; import-linter enforces it), and
built on it: ``kind7100`` (the attestation event and its claims), ``channel`` (the messages of
the encrypted conversation) and ``chunks`` (splitting long messages), ``params`` (the one table
of generation parameters that the node's admission and the container's runner both apply),
``tee`` (what each TEE kind implies: GPU, Confidential Containers, the evidence it needs),
``pod_contract`` (the per-job pod: workload, agent policy, initdata), ``agent_policy`` (the
Rego rules of that policy), ``jobcheck`` (the one "this kind-7100 event attests this job"
check, run by the node and by the requester), and ``refs`` / ``release`` / ``release_gpu``
(kind 37100: the reference values a publisher vouches for).
"""

from __future__ import annotations

__all__: list[str] = []
