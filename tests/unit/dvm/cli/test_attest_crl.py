"""`cdvm attest verify --crl FILE | --crl-fetch [--crl-accept-unavailable]` on a genuine report.

The report and VCEK are real (tests/vectors/snp/tinfoil-genoa-v3); the CRL given is minted
here (test-only) and cannot verify under AMD's ARK; KDS is replaced by a fetcher that fails,
so nothing leaves the machine.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from attestation.errors import FetchError
from attestation.snp.abi import Product, SigningKey
from attestation.snp.trust import bundled_chain
from dvm.cli import attest as attest_command
from dvm.cli.main import main

VECTOR = Path(__file__).resolve().parents[3] / "vectors" / "snp" / "tinfoil-genoa-v3"
NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)  # inside the VCEK's validity (2026-01-11 ..)
URL = "https://kdsintf.amd.com/vcek/v1/Genoa/crl"


def verify(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    argv = ["attest", "verify", str(VECTOR / "report.bin"), "--cert", str(VECTOR / "vcek.der")]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--now", str(int(NOW.timestamp())), "--json", *extra])
    out = capsys.readouterr().out
    return int(exc.value.code or 0), json.loads(out) if out else {}


def test_without_a_crl_flag_revocation_is_reported_unchecked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = verify(capsys)
    assert code == 0
    assert "revocation not checked: AMD's CRL was not consulted (crl mode off)" in out["warnings"]


def test_a_crl_file_not_signed_by_amd_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, ark = bundled_chain(Product.GENOA, SigningKey.VCEK)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ark.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .sign(
            forger,
            hashes.SHA384(),
            rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
        )
    )
    path = tmp_path / "genoa.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    code, out = verify(capsys, "--crl", str(path))
    assert code == 1
    assert out["failures"] == [
        "CrlInvalid: the CRL's signature does not verify under the ARK 'ARK-Genoa'"
    ]


def test_a_crl_file_that_is_not_a_crl_is_unusable_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "x.crl").write_bytes(b"not a crl")
    with pytest.raises(SystemExit) as exc:
        main(["attest", "verify", str(VECTOR / "report.bin"), "--crl", str(tmp_path / "x.crl")])
    assert exc.value.code == attest_command.EXIT_UNUSABLE
    assert "not an X.509 CRL" in capsys.readouterr().err


def test_crl_fetch_fails_closed_unless_unavailable_is_accepted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked: list[str] = []

    def kds_down(url: str, *, timeout_s: float = 10.0) -> bytes:
        asked.append(url)
        raise FetchError(f"KDS fetch failed for {url}: [Errno 101] Network is unreachable")

    monkeypatch.setattr(attest_command, "fetch_https", kds_down)
    monkeypatch.setenv("HOME", str(tmp_path))  # the KDS cache lives under ~/.cache/cdvm/kds
    code, out = verify(capsys, "--crl-fetch")
    assert code == 1
    (failure,) = out["failures"]
    assert failure.startswith(f"CrlUnavailable: AMD CRL unavailable: {URL}: ")
    code, out = verify(capsys, "--crl-fetch", "--crl-accept-unavailable")
    assert code == 0
    assert any(w.startswith(f"revocation not checked: the AMD CRL {URL}") for w in out["warnings"])
    assert asked == [URL, URL]
    assert not (tmp_path / ".cache" / "cdvm" / "kds").exists()  # failures are not cached
