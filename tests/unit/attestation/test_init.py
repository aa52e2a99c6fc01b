"""The public surface of `attestation`: exactly `__all__`, each name importable."""

from __future__ import annotations

import attestation


def test_all_is_the_public_surface() -> None:
    public = {n for n in vars(attestation) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(attestation, n)).__name__ == "module"}
    assert set(attestation.__all__) == public - modules - {"annotations"}
    assert attestation.__all__ == sorted(attestation.__all__, key=lambda n: (not n.isupper(), n))
    for name in attestation.__all__:
        assert getattr(attestation, name) is not None


def test_the_evidence_api_is_exported() -> None:
    for name in ("parse_bundle", "build_bundle", "verify_evidence", "Trust", "Expected"):
        assert name in attestation.__all__
    assert attestation.SIMULATED_LABEL == "SIMULATED: not confidential"
