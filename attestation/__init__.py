"""Evidence for SEV-SNP and NVIDIA GPUs: parse, verify, validate, get (DESIGN §3.4-§3.5, §4).

Imports nothing from ``dvm`` or ``container``. The verifiers land with the attestation issue.
"""
