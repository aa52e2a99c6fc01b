"""The runtime measurement recipe (docs/attestation.md), recomputed independently here."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import ParseError
from attestation.simulated.measure import measure_files, measure_runtime, runtime_files

REPO = Path(__file__).resolve().parents[4]


def recipe(entries: dict[str, bytes]) -> bytes:
    """The documented recipe, written out again without the module's code."""
    h = hashlib.sha384()
    h.update(b"cdvm/1 simulated runtime\x00")
    for path in sorted(entries, key=lambda p: p.encode()):
        raw = path.encode()
        h.update(struct.pack(">Q", len(raw)) + raw + struct.pack(">Q", len(entries[path])))
        h.update(entries[path])
    return h.digest()


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


MEASURED = {
    "attestation/__init__.py": b"x = 1\n",
    "attestation/py.typed": b"",
    "attestation/snp/roots/ark.pem": b"-----BEGIN-----\n",
    "dvm/__init__.py": b"",
    "dvm/nostr/keys.py": b"k\n",
    "dvm/cdvm/params.py": b"c\n",
    "dvm/relay/pool.py": b"p\n",
    "container/runtime.py": b"r\n",
}
IGNORED = {
    "attestation/__pycache__/x.cpython-311.pyc": b"\0",
    "attestation/.swp.py": b"editor",
    "attestation/notes.txt": b"not package data",
    "dvm/node/daemon.py": b"not in the container",
    "dvm/cli.py": b"not in the container",
    "tests/test_x.py": b"not installed",
}


def test_known_tree(tmp_path: Path) -> None:
    root = tree(tmp_path, {**MEASURED, **IGNORED})
    assert runtime_files(root) == sorted(MEASURED)
    assert measure_runtime(root) == recipe(MEASURED)


def test_any_change_changes_the_measurement(tmp_path: Path) -> None:
    root = tree(tmp_path, MEASURED)
    before = measure_runtime(root)
    (root / "dvm/nostr/keys.py").write_bytes(b"k \n")
    assert measure_runtime(root) != before
    (root / "dvm/nostr/keys.py").write_bytes(b"k\n")
    assert measure_runtime(root) == before
    (root / "container/extra.py").write_bytes(b"")
    assert measure_runtime(root) != before


def test_ignored_files_do_not_count(tmp_path: Path) -> None:
    assert measure_runtime(tree(tmp_path / "a", MEASURED)) == measure_runtime(
        tree(tmp_path / "b", {**MEASURED, **IGNORED})
    )


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    root = tree(tmp_path, MEASURED)
    (root / "attestation/link.py").symlink_to(root / "dvm/nostr/keys.py")
    assert "attestation/link.py" not in runtime_files(root)


def test_empty_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no runtime files"):
        measure_runtime(tmp_path)


def test_this_checkout_has_a_measurement() -> None:
    files = runtime_files(REPO)
    assert "dvm/__init__.py" in files
    assert "attestation/simulated/measure.py" in files
    assert not any(f.startswith(("dvm/node/", "tests/")) or f == "dvm/cli.py" for f in files)
    assert len(measure_runtime(REPO)) == 48


@given(
    st.dictionaries(
        st.text(alphabet="abc/é", min_size=1, max_size=8), st.binary(max_size=16), max_size=6
    )
)
def test_measure_files_is_the_recipe_in_any_order(entries: dict[str, bytes]) -> None:
    items = list(entries.items())
    assert measure_files(items) == recipe(entries)
    assert measure_files(reversed(items)) == recipe(entries)


def test_length_prefixes_separate_path_and_content() -> None:
    assert measure_files([("a", b"bc")]) != measure_files([("ab", b"c")])
