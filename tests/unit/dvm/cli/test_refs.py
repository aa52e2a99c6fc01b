"""``cdvm refs publish`` (built and signed here, written with --no-publish) and the pin flags.

Publishing to and showing from a real relay: tests/e2e/test_cli_pins.py.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from attestation.simulated import measure_runtime
from attestation.snp.abi import Product
from attestation.snp.validate import TcbFloor
from dvm.cdvm.refs import parse_reference_event
from dvm.cli.main import main
from dvm.cli.pinning import pins_from_args
from dvm.client import OptionsError, PinKind
from dvm.nostr.event import Event
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub, encode_nsec

REPO = Path(__file__).resolve().parents[4]
IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
MODEL = "cd" * 32


def cdvm(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "publisher.nsec"
    path.write_text(encode_nsec(SecretKey(b"\x31" * 32)) + "\n")
    return path


def published(path: Path) -> Event:
    return Event.from_json(path.read_text())


def test_publish_simulated_measures_the_runtime(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ref.json"
    code = cdvm(
        "refs", "publish", "--key", str(key_file), "--simulated", "--root", str(REPO),
        "--model", f"identity={MODEL}", "--source-repo", "https://example.org/cdvm",
        "--source-commit", "5" * 40, "--release", "demo", "--out", str(out), "--no-publish",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ref = parse_reference_event(published(out))
    assert ref.publisher == SecretKey(b"\x31" * 32).public_key.hex()
    assert ref.values.tee == "simulated"
    assert ref.values.release == "demo"
    (entry,) = ref.values.measurements
    assert entry.measurement == measure_runtime(REPO).hex()
    assert [(m.name, m.sha256) for m in ref.values.models] == [("identity", MODEL)]
    assert ref.values.source.commit == "5" * 40
    text = capsys.readouterr().out
    assert encode_npub(SecretKey(b"\x31" * 32).public_key) in text
    assert f"measurement {entry.measurement}" in text


def test_publish_sev_snp_states_the_inputs(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {}
    for name in ("ovmf", "kernel", "initrd"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode() * 100)
    out = tmp_path / "ref.json"
    code = cdvm(
        "refs", "publish", "--key", str(key_file), "--tee", "sev-snp",
        "--measurement", f"{'AA' * 48}:Genoa:3:EPYC-Genoa",
        "--measurement", f"{'bb' * 48}:milan:4:EPYC-Milan",
        "--ovmf", str(files["ovmf"]), "--kernel", str(files["kernel"]),
        "--initrd", str(files["initrd"]), "--append", "console=ttyS0", "--guest-features", "0x1",
        "--image", IMAGE, "--min-tcb", "Genoa:bl=7,tee=0,snp=14,ucode=72",
        "--min-tcb", "Milan:snp=20", "--model", f"gemma3-270m={MODEL}",
        "--source-repo", "https://example.org/cdvm", "--source-commit", "6" * 40,
        "--runtime-version", "9.9.9", "--out", str(out), "--no-publish",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    values = parse_reference_event(published(out)).values
    assert values.release == "sev-snp/9.9.9"
    assert values.images == (IMAGE,)
    genoa, milan = values.measurements
    assert (genoa.measurement, genoa.product, genoa.vcpus, genoa.vcpu_type) == (
        "aa" * 48,
        Product.GENOA,
        3,
        "EPYC-Genoa",
    )
    assert milan.product is Product.MILAN
    assert genoa.inputs.ovmf_sha256 == hashlib.sha256(b"ovmf" * 100).hexdigest()
    assert genoa.inputs.cmdline_sha256 == hashlib.sha256(b"console=ttyS0").hexdigest()
    assert genoa.inputs.guest_features == 1
    assert values.floor_for(Product.GENOA) == TcbFloor(bl=7, tee=0, snp=14, ucode=72)
    assert values.floor_for(Product.MILAN) == TcbFloor(snp=20)
    text = capsys.readouterr().out
    assert "minimum TCB Genoa: bl=7 tee=0 snp=14 ucode=72" in text
    assert "ovmf sha256" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --tee"),
        (["--tee", "simulated"], "--simulated goes with --tee simulated"),
        (["--tee", "sev-snp"], "at least one --measurement"),
        (["--tee", "sev-snp", "--measurement", "aa"], "HEX:PRODUCT:VCPUS:VCPU_TYPE"),
        (["--tee", "sev-snp", "--measurement", f"{'aa' * 48}:Rome:3:x"], "unknown product"),
        (["--simulated", "--measurement", "x"], "no --measurement"),
        (["--simulated", "--root", "/nonexistent"], "cannot measure"),
        (["--simulated", "--min-tcb", "Genoa"], "PRODUCT:bl=N"),
        (["--simulated", "--min-tcb", "Genoa:xx=1"], "is not NAME=N"),
        (["--simulated", "--model", "nohash"], "NAME=SHA256"),
        (["--simulated", "--model", "m=xyz"], "models[].sha256"),
        (["--tee", "sev-snp", "--measurement", f"{'aa' * 48}:Genoa:3:x", "--ovmf", "/nope"],
         "--ovmf /nope"),
        (["--tee", "sev-snp", "--measurement", f"{'aa' * 48}:Genoa:3:x", "--image", IMAGE],
         "must state inputs"),
    ],
)  # fmt: skip
def test_publish_usage_errors_exit_2(
    tmp_path: Path,
    key_file: Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["refs", "publish", "--key", str(key_file), "--source-repo", "r"]
    base += ["--source-commit", "5" * 40, "--out", str(tmp_path / "x.json"), "--no-publish"]
    assert cdvm(*base, *extra) == 2
    assert message in capsys.readouterr().err


def test_publish_needs_a_destination_and_a_key(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["refs", "publish", "--simulated", "--source-repo", "r"]
    assert cdvm(*base, "--key", str(key_file)) == 2
    assert "give --relay URL" in capsys.readouterr().err
    assert cdvm(*base, "--key", str(key_file), "--relay", "ws://x", "--no-publish") == 2
    assert "--no-publish needs --out" in capsys.readouterr().err
    bad = tmp_path / "bad.nsec"
    bad.write_text("not a key")
    assert cdvm(*base, "--key", str(bad), "--out", str(tmp_path / "o"), "--no-publish") == 2
    assert "does not hold an nsec" in capsys.readouterr().err
    assert cdvm(*base, "--key", str(tmp_path / "none"), "--out", "o", "--no-publish") == 2


def test_show_refuses_a_bad_publisher(capsys: pytest.CaptureFixture[str]) -> None:
    assert cdvm("refs", "show", "--relay", "ws://127.0.0.1:1", "--publisher", "npub1x") == 2
    assert "not an npub" in capsys.readouterr().err


def _job_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    defaults = {
        "measurement": [],
        "model_sha256": [],
        "trust_config": str(tmp_path / "trust.toml"),
        "require_publishers": 1,
        "accept_unpinned": [],
    }
    ns = argparse.Namespace(**defaults)
    for item in extra:
        name, value = item.split("=", 1)
        current = getattr(ns, name)
        setattr(ns, name, [*current, value] if isinstance(current, list) else int(value))
    return ns


def test_pin_flags(tmp_path: Path) -> None:
    pins = pins_from_args(
        _job_args(
            tmp_path,
            f"measurement={'AA' * 48}",
            f"model_sha256={MODEL}",
            "accept_unpinned=image, model",
            "accept_unpinned=measurement",
            "require_publishers=2",
        )
    )
    assert pins.measurements == {"aa" * 48}
    assert pins.model_sha256s == {MODEL}
    assert pins.accept_unpinned == set(PinKind)
    assert pins.require_publishers == 2
    assert pins.trusted_publishers == frozenset()
    npub = encode_npub(SecretKey(b"\x31" * 32).public_key)
    (tmp_path / "trust.toml").write_text(f'publishers = ["{npub}"]\n')
    pins = pins_from_args(_job_args(tmp_path))
    assert pins.trusted_publishers == {SecretKey(b"\x31" * 32).public_key.hex()}
    for bad, message in (
        ("accept_unpinned=everything", "--accept-unpinned takes"),
        ("require_publishers=0", "--require-publishers"),
        ("measurement=xyz", "--measurement"),
    ):
        with pytest.raises(OptionsError, match=message):
            pins_from_args(_job_args(tmp_path, bad))
    (tmp_path / "trust.toml").write_text("nope = 1\n")
    with pytest.raises(OptionsError, match="--trust-config"):
        pins_from_args(_job_args(tmp_path))
