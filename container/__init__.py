"""The per-job runtime that runs inside the confidential VM (DESIGN §3.4-§3.9).

It imports ``dvm.nostr``, ``dvm.relay`` and ``attestation`` only, never ``dvm.node``: the code
measured into the VM stays small. Started as ``python -m container``; see docs/container.md
(the state machine, the channel, the runners, destruction) and docs/launch.md (the contract
with the node).
"""
