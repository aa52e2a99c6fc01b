"""``cdvm trust add|remove|list``: the trust file, through the real parser (no relay)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dvm.cli.main import main
from dvm.cli.trust import TrustFileError, load_trusted, resolve, save_trusted
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub

A, B = (encode_npub(SecretKey(bytes([i]) * 32).public_key) for i in (0x21, 0x22))


def cdvm(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0)


def test_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "nested" / "trust.toml"
    assert cdvm("trust", "list", "--config", str(config)) == 0
    assert "no trusted publishers" in capsys.readouterr().err
    assert cdvm("trust", "add", A, "--config", str(config)) == 0
    assert f"trusted {A} (1 publisher(s) in {config})" in capsys.readouterr().out
    assert cdvm("trust", "add", A, "--config", str(config)) == 0  # idempotent
    assert "already trusted" in capsys.readouterr().err
    assert cdvm("trust", "add", B, "--config", str(config)) == 0
    capsys.readouterr()
    assert cdvm("trust", "list", "--config", str(config)) == 0
    assert capsys.readouterr().out.split() == [A, B]
    assert config.read_text().startswith("# Reference-value publishers")
    assert cdvm("trust", "remove", A, "--config", str(config)) == 0
    assert cdvm("trust", "remove", A, "--config", str(config)) == 1
    assert "is not trusted" in capsys.readouterr().err
    assert [encode_npub(k) for k in load_trusted(config)] == [B]
    assert not [p for p in config.parent.iterdir() if p.name.startswith(".trust-")]


def test_config_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cdvm("trust", "add", A, "--config", "rel/trust.toml") == 0
    assert (tmp_path / "rel" / "trust.toml").exists()
    assert resolve("x.toml") == tmp_path / "x.toml"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve(None) == tmp_path / "home" / ".config" / "cdvm" / "trust.toml"


def test_a_missing_file_trusts_nobody(tmp_path: Path) -> None:
    assert load_trusted(tmp_path / "absent.toml") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("publishers = [1]", "list of npub strings"),
        ('publishers = "npub1x"', "list of npub strings"),
        ('publisher = ["x"]', "unknown keys"),
        ('publishers = ["npub1nope"]', "not an npub"),
        ("publishers = [", "not UTF-8 TOML"),
    ],
)
def test_a_bad_file_is_a_usage_error(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trust.toml"
    config.write_text(text)
    with pytest.raises(TrustFileError, match=message):
        load_trusted(config)
    assert cdvm("trust", "list", "--config", str(config)) == 2
    assert message in capsys.readouterr().err


def test_bad_npub_and_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cdvm("trust", "add", "npub1bad", "--config", str(tmp_path / "t.toml")) == 2
    assert "not an npub" in capsys.readouterr().err
    hexkey = SecretKey(b"\x21" * 32).public_key.hex()
    assert cdvm("trust", "add", hexkey, "--config", str(tmp_path / "t.toml")) == 0
    assert load_trusted(tmp_path / "t.toml")[0].hex() == hexkey
    if os.geteuid() != 0:
        locked = tmp_path / "locked.toml"
        save_trusted(locked, ())
        locked.chmod(0)
        with pytest.raises(TrustFileError, match="cannot read"):
            load_trusted(locked)
