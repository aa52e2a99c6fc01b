"""`cdvm attest verify` and `cdvm attest measure` through the installed console script.

Real AMD reports from tests/vectors/snp (expected values from its manifest.json), simulated
evidence minted here, and garbage. Exit codes: 0 verified, 1 refused, 2 unusable input.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation.evidence import build_bundle
from attestation.simulated import SimulatedChain, SimulatedTee, load_or_mint, measure_runtime
from attestation.snp.vek import load_certificates
from dvm.cdvm.kind7100 import Claims, build_attestation
from dvm.nostr.keys import SecretKey

CDVM = Path(sys.executable).parent / "cdvm"
REPO = Path(__file__).resolve().parents[2]
SNP = REPO / "tests" / "vectors" / "snp"
MANIFEST = json.loads((SNP / "manifest.json").read_text(encoding="utf-8"))
VALID = [v for v in MANIFEST["vectors"] if v.get("expected") == "valid"]
LABEL = "SIMULATED: not confidential"
CONTAINER = SecretKey(bytes.fromhex("31" * 32))
PROVIDER = SecretKey(bytes.fromhex("32" * 32)).public_key.hex()
CLAIMS: dict[str, Any] = {
    "pubkey": CONTAINER.public_key.hex(),
    "job": "a1" * 32,
    "nonce": "b2" * 32,
    "provider": PROVIDER,
    "model": {"name": "gemma-3-270m", "sha256": "c3" * 32},
    "runtime": {"version": "0.1.0", "image": "local"},
}
EXPECT = [
    "--job",
    CLAIMS["job"],
    "--nonce",
    CLAIMS["nonce"],
    "--provider",
    PROVIDER,
    "--container",
    CLAIMS["pubkey"],
    "--model-sha256",
    CLAIMS["model"]["sha256"],
]


def cdvm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CDVM), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def verify_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    result = cdvm("attest", "verify", *args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def report_file(v: dict[str, Any], tmp: Path) -> Path:
    raw = (SNP / v["report_file"]).read_bytes()
    if v["report_file"].endswith(".hex"):
        raw = bytes.fromhex(raw.decode("ascii").strip())
    out = tmp / f"{uuid.uuid4().hex}.bin"
    out.write_bytes(raw[v["report_offset"] : v["report_offset"] + 1184])
    return out


def inside_validity(v: dict[str, Any]) -> str:
    vek = load_certificates((SNP / v["vek_file"]).read_bytes())[0]  # THIM PEM: VEK first
    return str(int((vek.not_valid_before_utc + dt.timedelta(days=1)).timestamp()))


# --- real AMD reports -----------------------------------------------------------------------


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_genuine_reports_verify_and_decode_as_the_manifest_says(
    v: dict[str, Any], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[snp]\nallow_debug = true\n", encoding="utf-8")
    code, out = verify_json(
        report_file(v, tmp_path),
        "--cert",
        SNP / v["vek_file"],
        "--cert",
        SNP / v["chain_file"],
        "--now",
        inside_validity(v),
        "--policy",
        policy,
    )
    assert (code, out["failures"]) == (0, [])
    assert out["verified"] is True
    assert out["tee"] == "sev-snp"
    assert out["product"] == v["product"]
    assert out["signer"] == v["signer"]
    assert out["version"] == v["version"]
    for name in ("measurement", "report_data", "host_data", "chip_id", "vmpl"):
        assert out[name] == v[name], name
    assert out["policy"]["raw"] == v["policy"]
    assert out["policy"]["debug"] is v["debug"]
    assert out["policy"]["smt"] is v["smt"]
    assert out["policy"]["migrate_ma"] is v["migrate_ma"]
    assert out["reported_tcb"] == v["reported_tcb"]
    assert out["current_version"] == v["fw_version"]
    assert out["cpuid"] == v["cpuid_fam_mod_step"]
    assert "label" not in out


def test_default_policy_passes_a_clean_report_and_warns(tmp_path: Path) -> None:
    v = next(v for v in VALID if v["name"] == "virtee-milan-v2")
    result = cdvm("attest", "verify", SNP / v["report_file"], "--cert", SNP / v["vek_file"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("VERIFIED (sev-snp)")
    assert "warning: measurement not pinned" in result.stdout
    assert "warning: no TCB floor" in result.stdout
    code, out = verify_json(
        SNP / v["report_file"], "--cert", SNP / v["vek_file"], "--product", "milan"
    )
    assert code == 0
    assert out["product"] == "Milan"


def test_debug_report_is_refused_by_the_default_policy(tmp_path: Path) -> None:
    v = next(v for v in VALID if v["name"] == "gsg-milan-v2-debug")
    args = (report_file(v, tmp_path), "--cert", SNP / v["vek_file"], "--now", inside_validity(v))
    code, out = verify_json(*args)
    assert code == 1
    assert out["verified"] is False
    assert len(out["failures"]) == 1
    assert "debug" in out["failures"][0]
    assert out["policy"]["debug"] is True
    text = cdvm("attest", "verify", *args)
    assert text.returncode == 1
    assert "NOT VERIFIED" in text.stdout
    assert "FAIL policy.debug" in text.stdout


def test_expired_vlek_fails_today(tmp_path: Path) -> None:
    v = next(v for v in VALID if v["signer"] == "VLEK")
    code, out = verify_json(
        report_file(v, tmp_path), "--cert", SNP / v["vek_file"], "--cert", SNP / v["chain_file"]
    )
    assert code == 1
    assert len(out["failures"]) == 1
    assert "expired" in out["failures"][0]
    assert "VLEK" in out["failures"][0]


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_negative_vceks_fail_the_chain(name: str, tmp_path: Path) -> None:
    v = next(v for v in VALID if v["name"] == "trustee-milan-v2")
    code, out = verify_json(
        report_file(v, tmp_path), "--cert", SNP / "negative" / name, "--now", "1735689600"
    )
    assert code == 1
    assert any(
        f.startswith("ChainError") and "does not verify under 'SEV-Milan'" in f
        for f in out["failures"]
    )


# --- unusable input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a report",
        b"\x00" * 1184,
        b"{}",
        b'{"kind": 7100, "sig": "00"}',
        b"ab" * 1184,
        b"\xff" * 77,
    ],
)
def test_unusable_input_exits_2(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    result = cdvm("attest", "verify", path, "--cert", SNP / "virtee-milan-v2" / "vcek_milan.der")
    assert result.returncode == 2
    assert "unusable input" in result.stderr
    assert result.stdout == ""


def test_unusable_options_exit_2(tmp_path: Path) -> None:
    report = SNP / "virtee-milan-v2" / "report_milan.hex"
    vek = SNP / "virtee-milan-v2" / "vcek_milan.der"
    bad_policy = tmp_path / "p.toml"
    bad_policy.write_text("[snp]\nallow_debugg = true\n", encoding="utf-8")
    for args in (
        (report,),  # no certificate
        (report, "--cert", tmp_path / "missing.der"),
        (report, "--cert", vek, "--policy", bad_policy),
        (report, "--cert", vek, "--now", "yesterday"),
        (report, "--cert", vek, "--measurement", "zz"),
        (tmp_path / "missing.bin", "--cert", vek),
    ):
        assert cdvm("attest", "verify", *args).returncode == 2, args


# --- simulated evidence -------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout's runtime packages (so a test may change a file)."""
    root = tmp_path_factory.mktemp("runtime")
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("attestation", "dvm/nostr", "dvm/cdvm", "dvm/relay", "container"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name, ignore=ignore)
    shutil.copy(REPO / "dvm" / "__init__.py", root / "dvm" / "__init__.py")
    return root


@pytest.fixture(scope="module")
def minted(tmp_path_factory: pytest.TempPathFactory) -> SimulatedChain:
    return load_or_mint(
        tmp_path_factory.mktemp("config") / "simulated-tee",
        now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    )


@pytest.fixture(scope="module")
def ark(minted: SimulatedChain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "ark.pem"
    path.write_bytes(minted.pem("ark"))
    return path


def bundle_file(
    chain: SimulatedChain, root: Path, tmp: Path, claims: dict[str, Any] = CLAIMS
) -> Path:
    tee = SimulatedTee(chain, measure_runtime(root))
    item = tee.attest(
        container_pubkey=bytes.fromhex(claims["pubkey"]), claims=claims, initdata=b"job"
    )
    path = tmp / f"{uuid.uuid4().hex}.json"
    path.write_text(
        build_bundle(claims=claims, evidence=[item], initdata=b"job").to_json(), encoding="utf-8"
    )
    return path


def measured(root: Path) -> str:
    result = cdvm("attest", "measure", "--simulated", "--root", root)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_measure_simulated_recomputes_the_runtime(runtime: Path) -> None:
    assert measured(runtime) == measure_runtime(runtime).hex()
    installed = cdvm("attest", "measure", "--simulated")
    assert installed.returncode == 0
    assert installed.stdout.strip() == measure_runtime(REPO).hex()
    assert (
        cdvm("attest", "measure", "--simulated", "--root", runtime / "nothing-here").returncode == 2
    )


def test_simulated_bundle_round_trip(
    minted: SimulatedChain, ark: Path, runtime: Path, tmp_path: Path
) -> None:
    bundle = bundle_file(minted, runtime, tmp_path)
    code, out = verify_json(
        bundle, "--trust-simulated", ark, "--measurement", measured(runtime), *EXPECT
    )
    assert (code, out["failures"]) == (0, [])
    assert out["label"] == LABEL
    assert out["tee"] == "simulated"
    assert out["claims"] == CLAIMS
    assert out["measurement"] == measured(runtime)
    text = cdvm("attest", "verify", bundle, "--trust-simulated", ark, *EXPECT)
    assert text.returncode == 0
    assert text.stdout.splitlines()[0] == LABEL
    assert "VERIFIED (simulated)" in text.stdout


def test_simulated_event_round_trip(
    minted: SimulatedChain, ark: Path, runtime: Path, tmp_path: Path
) -> None:
    bundle = json.loads(bundle_file(minted, runtime, tmp_path).read_text(encoding="utf-8"))
    event = build_attestation(
        claims=Claims.from_dict(CLAIMS),
        recipient=SecretKey(bytes.fromhex("33" * 32)).public_key,
        tee="simulated",
        expiration=4_000_000_000,
        evidence=bundle["evidence"],
        initdata=b"job",
        created_at=1_800_000_000,
    ).sign(CONTAINER, aux_rand=bytes(32))
    path = tmp_path / "event.json"
    path.write_text(event.to_json(), encoding="utf-8")
    code, out = verify_json(path, "--trust-simulated", ark, *EXPECT)
    assert (code, out["failures"]) == (0, [])
    assert out["label"] == LABEL
    forged = json.loads(event.to_json())
    forged["content"] = forged["content"].replace(CLAIMS["nonce"], "ee" * 32)
    path.write_text(json.dumps(forged), encoding="utf-8")
    assert cdvm("attest", "verify", path, "--trust-simulated", ark).returncode == 2  # bad event id


def test_simulated_is_refused_without_explicit_trust(
    minted: SimulatedChain, runtime: Path, tmp_path: Path
) -> None:
    bundle = bundle_file(minted, runtime, tmp_path)
    code, out = verify_json(bundle, *EXPECT)
    assert code == 1
    assert out["label"] == LABEL
    assert "refused unless its root is trusted explicitly" in out["failures"][0]
    text = cdvm("attest", "verify", bundle)
    assert text.stdout.startswith(LABEL)


def test_simulated_raw_report_with_its_certificates(
    minted: SimulatedChain, ark: Path, runtime: Path, tmp_path: Path
) -> None:
    bundle = json.loads(bundle_file(minted, runtime, tmp_path).read_text(encoding="utf-8"))
    item = bundle["evidence"][0]
    files = {}
    for key in ("report", "vek", "ask", "ark"):
        files[key] = tmp_path / key
        files[key].write_bytes(base64.b64decode(item[key]))
    certs = ("--cert", files["vek"], "--cert", files["ask"], "--cert", files["ark"])
    code, out = verify_json(files["report"], *certs, "--trust-simulated", ark)
    assert (code, out["label"], out["tee"]) == (0, LABEL, "simulated")
    assert any("REPORT_DATA is not bound" in w for w in out["warnings"])
    code, out = verify_json(files["report"], *certs)
    assert (code, out["label"]) == (1, LABEL)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job", "d4" * 32),
        ("nonce", "d4" * 32),
        ("provider", SecretKey(bytes.fromhex("34" * 32)).public_key.hex()),
        ("pubkey", SecretKey(bytes.fromhex("35" * 32)).public_key.hex()),
        ("model", {"name": "gemma-3-270m", "sha256": "d4" * 32}),
    ],
)
def test_simulated_is_refused_when_a_claim_changes(
    field: str, value: Any, minted: SimulatedChain, ark: Path, runtime: Path, tmp_path: Path
) -> None:
    bundle = bundle_file(minted, runtime, tmp_path, {**CLAIMS, field: value})
    code, out = verify_json(bundle, "--trust-simulated", ark, *EXPECT)
    assert code == 1
    assert out["label"] == LABEL
    name = "model.sha256" if field == "model" else field
    assert any(f"claims.{name} is" in f for f in out["failures"]), out["failures"]


def test_simulated_is_refused_when_the_runtime_changes(
    minted: SimulatedChain, ark: Path, runtime: Path, tmp_path: Path
) -> None:
    pinned = measured(runtime)
    changed = tmp_path / "changed"
    shutil.copytree(runtime, changed)
    target = changed / "dvm" / "cdvm" / "kind7100.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n# provider patch\n", encoding="utf-8")
    bundle = bundle_file(minted, changed, tmp_path)
    code, out = verify_json(bundle, "--trust-simulated", ark, "--measurement", pinned, *EXPECT)
    assert code == 1
    assert out["label"] == LABEL
    assert any(f.startswith("measurement: saw") for f in out["failures"]), out["failures"]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=2048))
def test_random_input_exits_2(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random"
    path.write_bytes(data)
    assert cdvm("attest", "verify", path).returncode == 2


# --- launch measurement (sev-snp-measure) --------------------------------------------------


def fake_ovmf() -> bytes:
    """A tiny OVMF image with the footer table and SEV metadata sev-snp-measure reads."""
    size = 0x4000
    data = bytearray(size)
    metadata_at = 0x100
    items = [(0x80_0000, 0x1000, 0x10), (0x80_1000, 0x1000, 1)]  # kernel hashes, SEC mem
    header = b"ASEV" + (16 + 12 * len(items)).to_bytes(4, "little") + (1).to_bytes(4, "little")
    header += len(items).to_bytes(4, "little")
    body = b"".join(
        g.to_bytes(4, "little") + s.to_bytes(4, "little") + t.to_bytes(4, "little")
        for g, s, t in items
    )
    data[metadata_at : metadata_at + len(header + body)] = header + body

    def entry(guid: str, value: bytes) -> bytes:
        return value + (len(value) + 18).to_bytes(2, "little") + uuid.UUID(guid).bytes_le

    table = entry("00f771de-1a7e-4fcb-890e-68c77e2fb44e", (0xFFFF_F000).to_bytes(4, "little"))
    table += entry("7255371f-3a3b-4b04-927b-1da6efa8d454", (0x80_0010).to_bytes(4, "little"))
    table += entry(
        "dc886566-984a-4798-a75e-5585a7bf67cc", (size - metadata_at).to_bytes(4, "little")
    )
    footer = (len(table) + 18).to_bytes(2, "little") + uuid.UUID(
        "96b582de-1fb2-45f7-baea-a366c55a082d"
    ).bytes_le
    end = size - 32
    data[end - len(footer) - len(table) : end] = table + footer
    return bytes(data)


def test_launch_measurement_matches_sev_snp_measure(tmp_path: Path) -> None:
    pytest.importorskip("sevsnpmeasure")
    ovmf, kernel, initrd = tmp_path / "OVMF.fd", tmp_path / "vmlinuz", tmp_path / "initrd"
    ovmf.write_bytes(fake_ovmf())
    kernel.write_bytes(b"kernel" * 100)
    initrd.write_bytes(b"initrd" * 100)
    common = (
        "--ovmf",
        ovmf,
        "--kernel",
        kernel,
        "--initrd",
        initrd,
        "--append",
        "console=ttyS0",
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Genoa",
    )
    ours = cdvm("attest", "measure", *common)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(
        [str(CDVM.parent / "sev-snp-measure"), "--mode", "snp", *map(str, common)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ours.stdout.strip() == theirs.stdout.strip()
    assert len(bytes.fromhex(ours.stdout.strip())) == 48
    other = cdvm("attest", "measure", *common[:-3], "4", "--vcpu-type", "EPYC-Genoa")
    assert other.stdout.strip() != ours.stdout.strip()


def test_measure_needs_its_arguments(tmp_path: Path) -> None:
    result = cdvm("attest", "measure", "--ovmf", tmp_path / "x")
    assert result.returncode == 2
    assert "--vcpus" in result.stderr
    missing = cdvm(
        "attest", "measure", "--ovmf", tmp_path / "x", "--vcpus", "1", "--vcpu-type", "EPYC"
    )
    assert missing.returncode == 2
    bad_type = cdvm(
        "attest", "measure", "--ovmf", tmp_path / "x", "--vcpus", "1", "--vcpu-type", "Z80"
    )
    assert bad_type.returncode == 2
