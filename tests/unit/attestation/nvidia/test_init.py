"""attestation.nvidia public surface: __all__ is exactly what the package exports."""

from __future__ import annotations

import attestation.nvidia as nvidia


def test_all_names_exist_and_are_sorted() -> None:
    assert nvidia.__all__ == sorted(nvidia.__all__)
    for name in nvidia.__all__:
        assert getattr(nvidia, name) is not None


def test_no_unlisted_public_names() -> None:
    public = {n for n in vars(nvidia) if not n.startswith("_") and n != "annotations"} - {
        "device",
        "opaque",
        "reference",
        "rim",
        "roots",
        "spdm",
        "verify",
    }
    assert public == set(nvidia.__all__)
