"""The simulated TEE's MEASUREMENT: SHA-384 over the container runtime's own files.

Spec: DESIGN.md §4 ("the simulated TEE ... signs SNP-ABI reports whose measurement is the
SHA-384 of the container runtime's own files, so ... a requester can recompute the expected
measurement from a checkout"); the recipe is documented in ``docs/attestation.md``.

Recipe (byte-exact; a requester recomputes it from a checkout with ``cdvm attest measure
--simulated --root CHECKOUT``)::

    files   = every regular file under container/, attestation/, dvm/nostr/, dvm/relay/,
              plus dvm/__init__.py (it runs whenever dvm.nostr is imported),
              whose name ends in ".py" or ".pem" or is "py.typed" (the installed package
              files: modules and package data), skipping any path with a component that
              starts with "." or is "__pycache__"; directories that do not exist are skipped
    order   = ascending by the UTF-8 bytes of the path relative to ROOT, "/"-separated
    entry   = u64be(len(path)) || path || u64be(len(content)) || content
    MEASUREMENT = SHA-384(b"cdvm/1 simulated runtime\\0" || entry_1 || ... || entry_n)

Contract: :func:`measure_files` is pure over (path, content) pairs; :func:`measure_runtime`
reads the files under ``root`` (and nothing else) and raises
:class:`~attestation.errors.ParseError` when it finds none, so a wrong ``--root`` fails
loudly instead of measuring an empty set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from attestation.errors import ParseError

__all__ = [
    "MEASUREMENT_DOMAIN",
    "RUNTIME_DIRS",
    "RUNTIME_FILES",
    "measure_files",
    "measure_runtime",
    "runtime_files",
]

MEASUREMENT_DOMAIN = b"cdvm/1 simulated runtime\0"
#: Package directories of the container image, relative to the root holding the packages.
RUNTIME_DIRS = ("container", "attestation", "dvm/nostr", "dvm/cdvm", "dvm/relay")
#: Single files the runtime executes outside those directories.
RUNTIME_FILES = ("dvm/__init__.py",)
_SUFFIXES = (".py", ".pem")
_DATA_NAMES = ("py.typed",)


def _measured(relative: Path) -> bool:
    if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
        return False
    return relative.name.endswith(_SUFFIXES) or relative.name in _DATA_NAMES


def runtime_files(root: Path) -> list[str]:
    """The measured files under ``root``: relative POSIX paths, in measurement order."""
    found: set[str] = set()
    for name in RUNTIME_DIRS:
        base = root / name
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            relative = path.relative_to(root)
            if path.is_file() and not path.is_symlink() and _measured(relative):
                found.add(relative.as_posix())
    found.update(name for name in RUNTIME_FILES if (root / name).is_file())
    return sorted(found, key=lambda p: p.encode("utf-8"))


def measure_files(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """SHA-384 over the length-prefixed (path, content) entries, sorted by path (48 bytes)."""
    digest = hashlib.sha384(MEASUREMENT_DOMAIN)
    for path, content in sorted(entries, key=lambda e: e[0].encode("utf-8")):
        encoded = path.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.digest()


def measure_runtime(root: Path) -> bytes:
    """The simulated MEASUREMENT of the runtime files under ``root`` (48 bytes)."""
    paths = runtime_files(root)
    if not paths:
        raise ParseError(f"no runtime files under {root} (expected {', '.join(RUNTIME_DIRS)})")
    return measure_files((p, (root / p).read_bytes()) for p in paths)
