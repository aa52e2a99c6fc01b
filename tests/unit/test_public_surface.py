"""The public surface is what `__all__` lists, and it changes only on purpose.

Every module of the three packages declares `__all__`; every listed name exists and is public;
and the top-level surface of `dvm.nostr` is pinned here, so widening or narrowing it shows up in
review as a change to this file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import attestation
import container
import dvm
import dvm.nostr

PACKAGES = (dvm, attestation, container)


def _modules() -> list[ModuleType]:
    found: list[ModuleType] = []
    for package in PACKAGES:
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            found.append(importlib.import_module(info.name))
    return found


MODULES = _modules()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_module_lists_its_public_names(module: ModuleType) -> None:
    names = getattr(module, "__all__", None)
    if module.__name__ in {p.__name__ for p in PACKAGES} or module.__name__.endswith(".roots"):
        # Package markers may have no public names of their own.
        names = names or []
    assert names is not None, f"{module.__name__} has no __all__"
    for name in names:
        assert not name.startswith("_"), f"{module.__name__}.__all__ lists private {name}"
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name}"
    assert len(set(names)) == len(names), f"{module.__name__}.__all__ has duplicates"


def test_dvm_nostr_surface_is_pinned() -> None:
    assert sorted(dvm.nostr.__all__) == sorted(
        [
            "Event",
            "NostrError",
            "PublicKey",
            "SecretKey",
            "UnsignedEvent",
            "errors",
            "event",
            "filters",
            "hex64",
            "keys",
            "messages",
            "nip04",
            "nip09",
            "nip13",
            "nip17",
            "nip19",
            "nip40",
            "nip42",
            "nip44",
            "nip59",
            "nip89",
            "nip90",
            "strict_json",
        ]
    )
