"""The per-job runtime that runs inside the confidential VM (DESIGN §3.6-§3.9).

It imports ``dvm.nostr``, ``dvm.relay`` and ``attestation`` only, never ``dvm.node``: the code
measured into the VM stays small. The runtime itself lands with the end-to-end issue.
"""
