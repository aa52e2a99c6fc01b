"""`cdvm keygen` through the installed console script."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dvm.nostr.nip19 import decode_npub, decode_nsec

CDVM = Path(sys.executable).parent / "cdvm"


def _cdvm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CDVM), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_keygen_writes_a_0600_nsec_and_prints_its_npub(tmp_path: Path) -> None:
    out = tmp_path / "node.nsec"
    result = _cdvm("keygen", "--out", str(out))
    assert result.returncode == 0, result.stderr
    npub = result.stdout.strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret = decode_nsec(out.read_text(encoding="ascii").strip())
    assert secret.public_key == decode_npub(npub)
    # The secret never reaches the terminal.
    assert out.read_text(encoding="ascii").strip() not in result.stdout + result.stderr
    assert secret.reveal_hex() not in result.stdout + result.stderr


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "node.nsec"
    out.write_text("keep me", encoding="ascii")
    result = _cdvm("keygen", "--out", str(out))
    assert result.returncode == 1
    assert "exists" in result.stderr
    assert out.read_text(encoding="ascii") == "keep me"


def test_keygen_force_overwrites_and_tightens_mode(tmp_path: Path) -> None:
    out = tmp_path / "node.nsec"
    out.write_text("old", encoding="ascii")
    out.chmod(0o644)
    result = _cdvm("keygen", "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text(encoding="ascii").startswith("nsec1")


def test_two_keys_differ(tmp_path: Path) -> None:
    first = _cdvm("keygen", "--out", str(tmp_path / "a")).stdout
    second = _cdvm("keygen", "--out", str(tmp_path / "b")).stdout
    assert first != second


@pytest.mark.parametrize("argv", [[], ["keygen"], ["nope"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert _cdvm(*argv).returncode == 2
