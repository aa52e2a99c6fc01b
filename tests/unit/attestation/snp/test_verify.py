"""attestation.snp.verify with a fake AMD signer: every refusal, each with its error type."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestation.errors import (
    ChainError,
    ExtensionMismatch,
    FetchError,
    SignatureInvalid,
    UntrustedRoot,
)
from attestation.snp.abi import (
    Cpuid,
    KeyInfo,
    Product,
    Report,
    SigningKey,
    TcbVersion,
    parse_report,
)
from attestation.snp.kds import vcek_url
from attestation.snp.trust import bundled_chain
from attestation.snp.vek import parse_vek_extensions
from attestation.snp.verify import check_vek_extensions, verify_chain, verify_report

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
MakeReport = Callable[..., Report]


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def signed(fake: Any, report: Report, **vek_overrides: object) -> tuple[bytes, bytes]:
    return fake.sign(report), der(fake.vek_for(report, **vek_overrides))


def test_fake_chain_verifies(fake_amd: Any, make_report: MakeReport) -> None:
    raw, vek = signed(fake_amd, make_report())
    verified = verify_report(
        raw, vek=vek, chain=fake_amd.chain_pem(), now=NOW, trusted_arks=fake_amd.trusted_arks
    )
    assert verified.product == Product.MILAN
    assert verified.signer == SigningKey.VCEK
    assert verified.verified_at == NOW
    assert verified.csp_id is None
    # the same chain as a (ask, ark) pair of DER blobs
    pair = (der(fake_amd.ask), der(fake_amd.ark))
    assert (
        verify_report(raw, vek=vek, chain=pair, now=NOW, trusted_arks=fake_amd.trusted_arks)
        == verified
    )


def test_vlek_report_verifies_and_exposes_csp_id(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report(key_info=KeyInfo(SigningKey.VLEK), chip_id=bytes(64))
    raw, vek = signed(fake_amd, report)
    verified = verify_report(
        raw, vek=vek, chain=fake_amd.chain_pem(), now=NOW, trusted_arks=fake_amd.trusted_arks
    )
    assert verified.signer == SigningKey.VLEK
    assert verified.csp_id == "CN=example-csp"


def test_turin_report_with_8_byte_hwid(
    fake_amd_factory: Callable[[Product], Any], make_report: MakeReport
) -> None:
    fake = fake_amd_factory(Product.TURIN)
    tcb = TcbVersion(fmc=1, bl=2, tee=0, snp=3, ucode=9)
    report = make_report(
        cpuid=Cpuid(0x1A, 0x02, 0),
        product=Product.TURIN,
        current_tcb=tcb,
        reported_tcb=tcb,
        committed_tcb=tcb,
        launch_tcb=tcb,
        chip_id=bytes(range(1, 9)) + bytes(56),
    )
    raw, vek = signed(fake, report)
    verified = verify_report(
        raw, vek=vek, chain=fake.chain_pem(), now=NOW, trusted_arks=fake.trusted_arks
    )
    assert verified.product == Product.TURIN
    assert verified.vek.spl["fmcSPL"] == 1
    raw_bad, vek_bad = signed(fake, report, tcb=dataclasses.replace(tcb, fmc=0))
    with pytest.raises(ExtensionMismatch, match="fmcSPL: VEK says 0, REPORTED_TCB says 1"):
        verify_report(
            raw_bad, vek=vek_bad, chain=fake.chain_pem(), now=NOW, trusted_arks=fake.trusted_arks
        )


def test_default_roots_refuse_a_fake_ark(fake_amd: Any, make_report: MakeReport) -> None:
    raw, vek = signed(fake_amd, make_report())
    with pytest.raises(UntrustedRoot, match="is not pinned for Milan"):
        verify_report(raw, vek=vek, chain=fake_amd.chain_pem(), now=NOW)
    with pytest.raises(UntrustedRoot):  # the bundled AMD chain does not lead to this VEK either
        verify_report(raw, vek=vek, now=NOW, trusted_arks={Product.MILAN: frozenset()})


def test_naive_now_is_a_programming_error(fake_amd: Any, make_report: MakeReport) -> None:
    raw, vek = signed(fake_amd, make_report())
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_report(
            raw,
            vek=vek,
            chain=fake_amd.chain_pem(),
            now=dt.datetime(2026, 1, 1),
            trusted_arks=fake_amd.trusted_arks,
        )


def test_vek_signed_by_the_wrong_key(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = fake_amd.cert("SEV-VCEK", "SEV-Milan", fake_amd.vek_key.public_key(), other)
    with pytest.raises(
        ChainError, match="VEK 'SEV-VCEK' signature does not verify under 'SEV-Milan'"
    ):
        verify_chain(
            forged,
            fake_amd.ask,
            fake_amd.ark,
            product=Product.MILAN,
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )
    assert report.product == Product.MILAN


def test_issuer_name_must_match(fake_amd: Any) -> None:
    vek = fake_amd.cert("SEV-VCEK", "SEV-Genoa", fake_amd.vek_key.public_key(), fake_amd.ask_key)
    with pytest.raises(ChainError, match="issuer 'SEV-Genoa' is not 'SEV-Milan'"):
        verify_chain(
            vek,
            fake_amd.ask,
            fake_amd.ark,
            product=Product.MILAN,
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


def test_pkcs1_signature_is_refused(fake_amd: Any) -> None:
    vek = fake_amd.cert(
        "SEV-VCEK", "SEV-Milan", fake_amd.vek_key.public_key(), fake_amd.ask_key, pss=False
    )
    with pytest.raises(ChainError, match="not signed with RSASSA-PSS"):
        verify_chain(
            vek,
            fake_amd.ask,
            fake_amd.ark,
            product=Product.MILAN,
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


def test_issuer_without_rsa_key(fake_amd: Any) -> None:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    ask = fake_amd.cert("SEV-Milan", "ARK-Milan", ec_key.public_key(), fake_amd.ark_key)
    vek = fake_amd.cert("SEV-VCEK", "SEV-Milan", fake_amd.vek_key.public_key(), fake_amd.ask_key)
    with pytest.raises(ChainError, match="has no RSA key"):
        verify_chain(
            vek,
            ask,
            fake_amd.ark,
            product=Product.MILAN,
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


def test_ask_not_signed_by_ark(fake_amd: Any) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask = fake_amd.cert("SEV-Milan", "ARK-Milan", fake_amd.ask_key.public_key(), stranger)
    vek = fake_amd.cert("SEV-VCEK", "SEV-Milan", fake_amd.vek_key.public_key(), fake_amd.ask_key)
    with pytest.raises(ChainError, match="ASK 'SEV-Milan' signature does not verify"):
        verify_chain(
            vek,
            ask,
            fake_amd.ark,
            product=Product.MILAN,
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


@pytest.mark.parametrize("which", ["ark", "ask", "vek"])
@pytest.mark.parametrize("when", ["early", "late"])
def test_validity_of_each_certificate(fake_amd: Any, which: str, when: str) -> None:
    window = (
        {"not_before": dt.datetime(2026, 7, 1, tzinfo=dt.UTC)}
        if when == "early"
        else {"not_after": dt.datetime(2026, 5, 1, tzinfo=dt.UTC)}
    )
    ark, ask = fake_amd.ark, fake_amd.ask
    if which == "ark":
        ark = fake_amd.cert(
            "ARK-Milan", "ARK-Milan", fake_amd.ark_key.public_key(), fake_amd.ark_key, **window
        )
    if which == "ask":
        ask = fake_amd.cert(
            "SEV-Milan", "ARK-Milan", fake_amd.ask_key.public_key(), fake_amd.ark_key, **window
        )
    vek = fake_amd.cert(
        "SEV-VCEK",
        "SEV-Milan",
        fake_amd.vek_key.public_key(),
        fake_amd.ask_key,
        **(window if which == "vek" else {}),
    )
    trusted = {Product.MILAN: frozenset({hashlib.sha256(der(ark)).hexdigest()})}
    message = "not valid before" if when == "early" else "expired on"
    with pytest.raises(ChainError, match=f"{which.upper()}.*{message}"):
        verify_chain(vek, ask, ark, product=Product.MILAN, now=NOW, trusted_arks=trusted)


@pytest.mark.parametrize("curve_or_rsa", ["p256", "rsa"])
def test_vek_key_must_be_p384(
    fake_amd: Any, fake_cert: Callable[..., Any], make_report: MakeReport, curve_or_rsa: str
) -> None:
    report = make_report()
    if curve_or_rsa == "p256":
        key: Any = ec.generate_private_key(ec.SECP256R1()).public_key()
    else:
        key = fake_amd.ask_key.public_key()
    exts = fake_cert(report.reported_tcb, product="Milan", hw_id=report.chip_id)
    vek = fake_amd.cert("SEV-VCEK", "SEV-Milan", key, fake_amd.ask_key, extensions=exts)
    with pytest.raises(ChainError, match="not ECDSA P-384"):
        verify_report(
            fake_amd.sign(report),
            vek=der(vek),
            chain=fake_amd.chain_pem(),
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


def test_unsigned_report(fake_amd: Any, make_report: MakeReport) -> None:
    raw, vek = signed(
        fake_amd, make_report(key_info=KeyInfo(SigningKey.NONE)), hw_id=bytes(range(100, 164))
    )
    with pytest.raises(SignatureInvalid, match="unsigned"):
        verify_report(raw, vek=vek, now=NOW)


def test_certificate_type_must_match_key_info(fake_amd: Any, make_report: MakeReport) -> None:
    vcek_report = make_report()
    vlek_report = make_report(key_info=KeyInfo(SigningKey.VLEK))
    raw = fake_amd.sign(vlek_report)
    with pytest.raises(
        ExtensionMismatch,
        match="KEY_INFO says VLEK signed the report but the certificate is 'SEV-VCEK'",
    ):
        verify_report(
            raw,
            vek=der(fake_amd.vek_for(vcek_report)),
            chain=fake_amd.chain_pem(),
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


def test_v2_report_takes_its_product_from_the_vek_issuer(
    fake_amd: Any, make_report: MakeReport
) -> None:
    report = make_report(version=2, cpuid=None, product=None)
    raw, vek = signed(fake_amd, report)
    assert parse_report(raw).product is None
    verified = verify_report(
        raw, vek=vek, chain=fake_amd.chain_pem(), now=NOW, trusted_arks=fake_amd.trusted_arks
    )
    assert verified.product == Product.MILAN
    assert verified.report.product == Product.MILAN
    stranger = fake_amd.cert(
        "SEV-VCEK", "SEV-Unknown", fake_amd.vek_key.public_key(), fake_amd.ask_key
    )
    with pytest.raises(ChainError, match="cannot tell the product"):
        verify_report(
            raw,
            vek=der(stranger),
            chain=fake_amd.chain_pem(),
            now=NOW,
            trusted_arks=fake_amd.trusted_arks,
        )


def test_chain_bundle_must_have_two_certificates(fake_amd: Any, make_report: MakeReport) -> None:
    raw, vek = signed(fake_amd, make_report())
    with pytest.raises(ChainError, match="got 1 certs"):
        verify_report(
            raw, vek=vek, chain=pem(fake_amd.ark), now=NOW, trusted_arks=fake_amd.trusted_arks
        )


def test_missing_vek_is_fetched_from_kds(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report()
    raw, vek = signed(fake_amd, report)
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return vek

    verified = verify_report(
        raw, fetch=fetch, chain=fake_amd.chain_pem(), now=NOW, trusted_arks=fake_amd.trusted_arks
    )
    assert asked == [vcek_url(Product.MILAN, report.chip_id, report.reported_tcb)]
    assert verified.signer == SigningKey.VCEK


def test_missing_vek_without_a_way_to_fetch(fake_amd: Any, make_report: MakeReport) -> None:
    raw, _ = signed(fake_amd, make_report())
    with pytest.raises(FetchError, match="no VEK given"):
        verify_report(raw, now=NOW)
    vlek_raw, _ = signed(fake_amd, make_report(key_info=KeyInfo(SigningKey.VLEK)))
    with pytest.raises(FetchError, match="VCEK-signed"):
        verify_report(vlek_raw, now=NOW, fetch=lambda url: b"")


def test_bundled_chain_for_every_product_and_signer() -> None:
    for product in Product:
        for signer in (SigningKey.VCEK, SigningKey.VLEK):
            ask, ark = bundled_chain(product, signer)
            assert ark.subject.rfc4514_string().startswith(f"CN=ARK-{product}")
            assert ("VLEK" in ask.subject.rfc4514_string()) == (signer == SigningKey.VLEK)
    with pytest.raises(ChainError, match="no AMD chain"):
        bundled_chain(Product.MILAN, SigningKey.NONE)


# --- extension checks -----------------------------------------------------------------------


def exts_for(fake: Any, report: Report, **overrides: object) -> Any:
    return parse_vek_extensions(fake.vek_for(report, **overrides))


def test_extension_mismatches_are_all_listed(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report()
    ext = exts_for(fake_amd, report, product="Genoa", tcb=TcbVersion(bl=1, tee=0, snp=8, ucode=115))
    with pytest.raises(ExtensionMismatch) as info:
        check_vek_extensions(report, ext, product=Product.MILAN, signer=SigningKey.VCEK)
    assert "blSPL: VEK says 1, REPORTED_TCB says 3" in str(info.value)
    assert "productName: VEK says 'Genoa', expected Milan" in str(info.value)


def test_missing_spl_extension(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report()
    ext = exts_for(fake_amd, report)
    without = dataclasses.replace(ext, spl={k: v for k, v in ext.spl.items() if k != "teeSPL"})
    with pytest.raises(ExtensionMismatch, match="teeSPL: VEK says None"):
        check_vek_extensions(report, without, product=Product.MILAN, signer=SigningKey.VCEK)


def test_hwid_checks(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report()
    with pytest.raises(ExtensionMismatch, match="hwID: the VCEK has none"):
        check_vek_extensions(
            report,
            exts_for(fake_amd, report, hw_id=None),
            product=Product.MILAN,
            signer=SigningKey.VCEK,
        )
    other = bytes(64 * [7])
    with pytest.raises(ExtensionMismatch, match="CHIP_ID is 6465") as info:
        check_vek_extensions(
            report,
            exts_for(fake_amd, report, hw_id=other),
            product=Product.MILAN,
            signer=SigningKey.VCEK,
        )
    assert "MASK_CHIP_KEY" not in str(info.value)
    masked = make_report(key_info=KeyInfo(mask_chip_key=True), chip_id=bytes(64))
    with pytest.raises(ExtensionMismatch, match="MASK_CHIP_KEY is set"):
        check_vek_extensions(
            masked, exts_for(fake_amd, report), product=Product.MILAN, signer=SigningKey.VCEK
        )


def test_vlek_needs_a_csp_id(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report(key_info=KeyInfo(SigningKey.VLEK))
    with pytest.raises(ExtensionMismatch, match="cspID"):
        check_vek_extensions(
            report,
            exts_for(fake_amd, report, csp_id=None),
            product=Product.MILAN,
            signer=SigningKey.VLEK,
        )
