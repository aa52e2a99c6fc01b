"""``cdvm refs publish`` (built and signed here, written with --no-publish) and the pin flags.

Publishing to and showing from a real relay: tests/e2e/test_cli_pins.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from attestation.nvidia.reference import expected_from_rims
from attestation.nvidia.rim import parse_rim
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
GPU_VECTORS = REPO / "tests" / "vectors" / "gpu" / "nvidia-hopper"
DRIVER_RIM = GPU_VECTORS / "Driver_RIM_test_no_gpu.swidtag"
VBIOS_RIM = GPU_VECTORS / "1010_0200_882_96005E0001_test_no_gpu.swidtag"


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
        "gpu_measurements": [],
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
            "accept_unpinned=measurement,gpu",
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


# --- GPU reference measurements (sev-snp+nvidia-h100) -----------------------------------------


def _gpu_publish(tmp_path: Path, key_file: Path, *extra: str) -> int:
    inputs = []
    for name in ("ovmf", "kernel"):
        (tmp_path / name).write_bytes(name.encode())
        inputs += [f"--{name}", str(tmp_path / name)]
    return cdvm(
        "refs", "publish", "--key", str(key_file), "--tee", "sev-snp+nvidia-h100",
        "--measurement", f"{'aa' * 48}:Genoa:3:EPYC-Genoa", *inputs, "--append", "c",
        "--image", IMAGE, "--min-tcb", "Genoa:snp=14", "--model", f"m={MODEL}",
        "--source-repo", "r", "--source-commit", "5" * 40, "--runtime-version", "1.0",
        "--out", str(tmp_path / "ref.json"), "--no-publish", *extra,
    )  # fmt: skip


def test_publish_gpu_release_from_nvidias_rims(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _gpu_publish(tmp_path, key_file, "--gpu-rims", str(DRIVER_RIM), str(VBIOS_RIM))
    assert code == 0, capsys.readouterr().err
    values = parse_reference_event(published(tmp_path / "ref.json")).values
    (entry,) = values.gpu
    driver, vbios = parse_rim(DRIVER_RIM.read_bytes()), parse_rim(VBIOS_RIM.read_bytes())
    assert entry.key == ("GH100", "545.00", "96.00.5e.00.01")
    assert entry.expected() == expected_from_rims(driver, vbios)
    assert [(r.id, r.sha256) for r in entry.rims] == [
        (driver.tag_id, hashlib.sha256(DRIVER_RIM.read_bytes()).hexdigest()),
        (vbios.tag_id, hashlib.sha256(VBIOS_RIM.read_bytes()).hexdigest()),
    ]
    text = capsys.readouterr().out
    assert "GPU GH100 driver 545.00 VBIOS 96.00.5e.00.01: 33 measurement block(s)" in text
    assert f"from RIM {driver.tag_id} sha256" in text


def test_publish_gpu_release_from_a_json_file(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "measurements": {"1": "AA" * 48, "7": ["bb" * 48, "cc" * 48]},
        "driver_version": "550.90.07",
        "vbios_version": "96.00.9F.00.01",
        "sources": ["driver-rim-id", "vbios-rim-id"],
    }
    (tmp_path / "gpu.json").write_text(json.dumps(doc))
    code = _gpu_publish(tmp_path, key_file, "--gpu-measurements", str(tmp_path / "gpu.json"))
    assert code == 0, capsys.readouterr().err
    (entry,) = parse_reference_event(published(tmp_path / "ref.json")).values.gpu
    assert entry.key == ("GH100", "550.90.07", "96.00.9f.00.01")
    assert entry.blocks == ((1, ("aa" * 48,)), (7, ("bb" * 48, "cc" * 48)))
    assert [(r.id, r.sha256) for r in entry.rims] == [
        ("driver-rim-id", None),
        ("vbios-rim-id", None),
    ]


@pytest.mark.parametrize(
    ("extra", "doc", "message"),
    [
        ([], None, "needs --gpu-rims DRIVER_RIM VBIOS_RIM or --gpu-measurements FILE"),
        (["--gpu-rims", "/nope", "/nope2"], None, "--gpu-rims /nope"),
        (["--gpu-rims", str(DRIVER_RIM), str(DRIVER_RIM)], None, "active in the driver and"),
        (["--gpu-rims", str(DRIVER_RIM), str(VBIOS_RIM), "--gpu-architecture", "GB100"], None,
         "is a RIM for 'GH100', not --gpu-architecture GB100"),
        (["--gpu-measurements", "{gpu}"], "not json", "--gpu-measurements"),
        (["--gpu-measurements", "{gpu}"], {"measurements": {"1": "aa" * 48}, "sources": ["s"]},
         "driver_version and vbios_version"),
        (["--gpu-measurements", "{gpu}"],
         {"measurements": {"1": "aa" * 48}, "driver_version": "1", "vbios_version": "2"},
         "name the RIMs the values came from"),
    ],
)  # fmt: skip
def test_publish_gpu_usage_errors_exit_2(
    tmp_path: Path,
    key_file: Path,
    extra: list[str],
    doc: object,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gpu = tmp_path / "gpu.json"
    gpu.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    assert _gpu_publish(tmp_path, key_file, *(e.format(gpu=gpu) for e in extra)) == 2
    assert message in capsys.readouterr().err


def test_gpu_values_only_for_gpu_releases(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cdvm(
        "refs", "publish", "--key", str(key_file), "--simulated", "--root", str(REPO),
        "--model", f"identity={MODEL}", "--source-repo", "r", "--source-commit", "5" * 40,
        "--out", str(tmp_path / "o.json"), "--no-publish",
        "--gpu-rims", str(DRIVER_RIM), str(VBIOS_RIM),
    )  # fmt: skip
    assert code == 2
    assert "and only it takes them" in capsys.readouterr().err


def test_gpu_measurements_pin_flag(tmp_path: Path) -> None:
    doc = {"measurements": {"3": "ab" * 48}, "driver_version": "550.90.07"}
    (tmp_path / "gpu.json").write_text(json.dumps(doc))
    pins = pins_from_args(_job_args(tmp_path, f"gpu_measurements={tmp_path / 'gpu.json'}"))
    (expected,) = pins.gpu_measurements
    assert dict(expected.blocks) == {3: (b"\xab" * 48,)}
    assert expected.driver_version == "550.90.07"
    assert expected.vbios_version is None
    (tmp_path / "bad.json").write_text('{"measurements": {"0": "ab"}}')
    (tmp_path / "big.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    for path, message in (
        (tmp_path / "bad.json", "outside 1..254"),
        (tmp_path / "no", "No such"),
        (tmp_path / "big.json", "over 4194304 bytes"),
    ):
        with pytest.raises(OptionsError, match=message):
            pins_from_args(_job_args(tmp_path, f"gpu_measurements={path}"))
