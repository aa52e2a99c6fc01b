"""attestation.snp.crl: AMD CRLs minted by the fake ARK (test-only), and AMD's real roots.

Every refusal is shown with its own error type: a revoked VCEK or ASK (``Revoked``), a CRL
signed by another key, issued by another name, stale, not yet valid, a delta or with an
unknown critical extension (``CrlInvalid``), a CRL that cannot be had (``CrlUnavailable`` when
required, an ``unavailable`` result when the caller accepts that), and garbage (our errors
only). Revocation reached through ``verify_report`` and ``verify_snp_item`` /
``verify_evidence`` is tested here too, where the fake AMD signer lives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation.binding import report_data
from attestation.errors import (
    AttestationError,
    ChainError,
    CrlInvalid,
    CrlUnavailable,
    FetchError,
    ParseError,
    Revoked,
)
from attestation.evidence import EvidenceType, SnpItem, build_bundle
from attestation.simulated import SimulatedTee, mint_chain
from attestation.snp.abi import KeyInfo, Product, Report, SigningKey
from attestation.snp.crl import (
    CRL_OFF,
    NOT_CHECKED,
    CrlMode,
    CrlPolicy,
    CrlResult,
    CrlStatus,
    check_not_revoked,
    check_revocation,
    parse_crl,
    parse_crls,
    verify_crl,
)
from attestation.snp.kds import cached, crl_url
from attestation.snp.trust import bundled_chain
from attestation.snp.vek import load_certificates
from attestation.snp.verify import verify_report
from attestation.verification import (
    EvidenceRejected,
    Expected,
    Trust,
    verify_evidence,
    verify_snp_item,
)
from tests.unit.attestation.snp.conftest import ASK_SERIAL, PSS, VEK_SERIAL

NOW = dt.datetime(2025, 1, 3, tzinfo=dt.UTC)
MakeReport = Callable[..., Report]
VECTORS = Path(__file__).parents[3] / "vectors" / "snp"
MILAN_CRL = "https://kdsintf.amd.com/vcek/v1/Milan/crl"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem_crl(data: bytes) -> bytes:
    return x509.load_der_x509_crl(data).public_bytes(serialization.Encoding.PEM)


def chain_of(fake: Any, report: Report) -> tuple[x509.Certificate, ...]:
    return fake.vek_for(report), fake.ask, fake.ark


def check(fake: Any, report: Report, policy: CrlPolicy, **kw: Any) -> CrlResult:
    vek, ask, ark = chain_of(fake, report)
    signer = report.key_info.signing_key
    return check_revocation(
        vek, ask, ark, product=fake.product, signer=signer, now=kw.get("now", NOW), policy=policy
    )


class CountingFetcher:
    """A KDS stand-in: serves ``bodies`` by URL, counts calls, fails for anything else."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.bodies:
            raise FetchError(f"KDS fetch failed for {url}: HTTP Error 503")
        return self.bodies[url]


# --- parsing -------------------------------------------------------------------------------


def test_parse_der_pem_and_pem_bundles(fake_amd: Any) -> None:
    one, two = fake_amd.crl([ASK_SERIAL]), fake_amd.crl()
    assert parse_crl(one).get_revoked_certificate_by_serial_number(ASK_SERIAL) is not None
    assert parse_crl(pem_crl(one)).tbs_certlist_bytes == parse_crl(one).tbs_certlist_bytes
    assert len(parse_crls(pem_crl(one) + pem_crl(two))) == 2
    assert len(parse_crls(bytearray(one))) == 1  # type: ignore[arg-type]
    with pytest.raises(ParseError, match="expected one CRL, found 2"):
        parse_crl(pem_crl(one) + pem_crl(two))
    with pytest.raises(ParseError, match="must be bytes"):
        parse_crls("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ParseError, match=r"not an X.509 CRL \(5 bytes\)"):
        parse_crl(b"hello")
    # tbsCertList version 1 (v2) -> 0, which no CRL may carry (found by hypothesis)
    version_0 = bytearray(one)
    version_0[one.index(b"\x02\x01\x01") + 2] = 0
    with pytest.raises(ParseError, match="not a valid CRL version"):
        parse_crl(bytes(version_0))


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_garbage_raises_parse_error_only(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_crls(data)
    with pytest.raises(ParseError):
        parse_crls(b"-----BEGIN X509 CRL-----\n" + data)


# --- verify_crl ----------------------------------------------------------------------------


def test_a_minted_crl_verifies_under_its_ark(fake_amd: Any) -> None:
    verify_crl(parse_crl(fake_amd.crl()), fake_amd.ark, now=NOW)
    verify_crl(parse_crl(fake_amd.crl()), fake_amd.ark, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    verify_crl(parse_crl(fake_amd.crl()), fake_amd.ark, now=dt.datetime(2025, 1, 8, tzinfo=dt.UTC))


def test_signed_by_another_key_is_refused(fake_amd: Any) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    crl = parse_crl(fake_amd.crl(signing_key=other))
    with pytest.raises(CrlInvalid, match="signature does not verify under the ARK 'ARK-Milan'"):
        verify_crl(crl, fake_amd.ark, now=NOW)
    # ASK-signed: the right family, the wrong key
    with pytest.raises(CrlInvalid, match="does not verify"):
        verify_crl(parse_crl(fake_amd.crl(signing_key=fake_amd.ask_key)), fake_amd.ark, now=NOW)


def test_wrong_issuer_is_refused(fake_amd: Any) -> None:
    crl = parse_crl(fake_amd.crl(issuer="ARK-Genoa"))  # signed by the right key, misnamed
    with pytest.raises(CrlInvalid, match="CRL issuer 'ARK-Genoa' is not the ARK 'ARK-Milan'"):
        verify_crl(crl, fake_amd.ark, now=NOW)


def test_pkcs1_signature_is_refused(fake_amd: Any) -> None:
    with pytest.raises(CrlInvalid, match="not signed with RSASSA-PSS"):
        verify_crl(parse_crl(fake_amd.crl(pss=False)), fake_amd.ark, now=NOW)


def test_an_ark_without_an_rsa_key_cannot_check(fake_amd: Any) -> None:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    ark = fake_amd.cert("ARK-Milan", "ARK-Milan", ec_key.public_key(), fake_amd.ark_key)
    with pytest.raises(CrlInvalid, match="has no RSA key"):
        verify_crl(parse_crl(fake_amd.crl()), ark, now=NOW)


def test_expired_and_not_yet_valid_are_refused(fake_amd: Any) -> None:
    crl = parse_crl(fake_amd.crl())  # 2025-01-01 .. 2025-01-08
    with pytest.raises(CrlInvalid, match=r"stale: its nextUpdate was 2025-01-08T00:00:00\+00:00"):
        verify_crl(crl, fake_amd.ark, now=dt.datetime(2025, 1, 8, 0, 0, 1, tzinfo=dt.UTC))
    with pytest.raises(CrlInvalid, match=r"not valid before 2025-01-01T00:00:00\+00:00"):
        verify_crl(crl, fake_amd.ark, now=dt.datetime(2024, 12, 31, 23, 59, tzinfo=dt.UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_crl(crl, fake_amd.ark, now=dt.datetime(2025, 1, 3))


def test_delta_and_unknown_critical_extensions_are_refused(fake_amd: Any) -> None:
    delta = fake_amd.crl(extensions=[(x509.DeltaCRLIndicator(7), True)])
    with pytest.raises(CrlInvalid, match="delta CRL"):
        verify_crl(parse_crl(delta), fake_amd.ark, now=NOW)
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    with pytest.raises(CrlInvalid, match=r"unknown critical extension 1\.3\.6\.1\.4\.1\.99999\.1"):
        verify_crl(parse_crl(fake_amd.crl(extensions=[(unknown, True)])), fake_amd.ark, now=NOW)
    # the same extension, not critical, and a CRL number: ignored as RFC 5280 allows
    benign = fake_amd.crl(extensions=[(unknown, False), (x509.CRLNumber(3), False)])
    verify_crl(parse_crl(benign), fake_amd.ark, now=NOW)


def _tlv(data: bytes, pos: int) -> tuple[int, int]:
    """(content start, end) of the DER element at ``pos``."""
    length, head = data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length, head = int.from_bytes(data[head : head + count], "big"), head + count
    return head, head + length


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def test_a_crl_without_next_update_is_refused(fake_amd: Any) -> None:
    # `cryptography` cannot build one (RFC 5280 requires nextUpdate), so cut it out by hand and
    # sign the shortened TBS with the fake ARK: version, signature, issuer, thisUpdate.
    data = fake_amd.crl()
    start, _ = _tlv(data, 0)
    tbs_start, tbs_end = _tlv(data, start)
    fields, pos = [], tbs_start
    while pos < tbs_end:
        end = _tlv(data, pos)[1]
        fields.append(data[pos:end])
        pos = end
    tbs = _der(0x30, b"".join(fields[:4]))
    algorithm = data[tbs_end : _tlv(data, tbs_end)[1]]
    signature = fake_amd.ark_key.sign(tbs, PSS, hashes.SHA384())
    crl = parse_crl(_der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature)))
    assert crl.next_update_utc is None
    with pytest.raises(CrlInvalid, match="has no nextUpdate"):
        verify_crl(crl, fake_amd.ark, now=NOW)


# --- check_not_revoked ---------------------------------------------------------------------


def test_a_listed_vcek_is_revoked(fake_amd: Any, make_report: MakeReport) -> None:
    vek, ask, _ = chain_of(fake_amd, make_report())
    crl = parse_crl(fake_amd.crl([VEK_SERIAL]))
    check_not_revoked(crl, [("ASK", ask)])
    with pytest.raises(Revoked) as exc:
        check_not_revoked(crl, [("ASK", ask), ("VCEK", vek)], source=MILAN_CRL)
    assert str(exc.value) == (
        "VCEK 'SEV-VCEK' serial 42 (0x2a) is revoked: listed on the ARK-Milan CRL "
        f"({MILAN_CRL}) since 2024-06-01T00:00:00+00:00"
    )


def test_an_entry_for_another_issuer_does_not_count(fake_amd: Any, make_report: MakeReport) -> None:
    vek, ask, _ = chain_of(fake_amd, make_report())

    def entry(serial: int, issuer: str) -> x509.RevokedCertificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        return (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
            .add_extension(x509.CertificateIssuer([x509.DirectoryName(name)]), critical=True)
            .build()
        )

    # RFC 5280 5.3.3: serial 42 of some other CA is not this VCEK; serial 42 of the ASK is
    other = parse_crl(fake_amd.crl([entry(VEK_SERIAL, "SEV-Genoa")]))
    check_not_revoked(other, [("VCEK", vek), ("ASK", ask)])
    mine = parse_crl(fake_amd.crl([entry(VEK_SERIAL, "SEV-Milan")]))
    with pytest.raises(Revoked, match="VCEK 'SEV-VCEK' serial 42"):
        check_not_revoked(mine, [("VCEK", vek)])
    # the same entry naming the issuer as an x400Address, which `cryptography` cannot decode
    raw = fake_amd.crl([entry(VEK_SERIAL, "SEV-Milan")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-Milan")]).public_bytes()
    at = raw.index(bytes([0xA4, len(name)]) + name)
    with pytest.raises(ParseError, match="not supported"):
        parse_crl(raw[:at] + b"\xa3" + raw[at + 1 :])  # found by fuzzing: [4] directoryName -> [3]


# --- check_revocation ----------------------------------------------------------------------


def test_off_checks_nothing_and_says_so(fake_amd: Any, make_report: MakeReport) -> None:
    fetch = CountingFetcher({})
    result = check(fake_amd, make_report(), CrlPolicy(CrlMode.OFF, fetch))
    assert result is NOT_CHECKED
    assert result.note == "revocation not checked: AMD's CRL was not consulted (crl mode off)"
    assert fetch.calls == []
    assert CRL_OFF.mode == CrlMode.OFF


def test_a_current_offline_crl_passes(fake_amd: Any, make_report: MakeReport) -> None:
    policy = CrlPolicy("require", crls=(pem_crl(fake_amd.crl([12345])),))  # type: ignore[arg-type]
    assert policy.mode is CrlMode.REQUIRE
    result = check(fake_amd, make_report(), policy)
    assert result == CrlResult(
        CrlStatus.NOT_REVOKED,
        source="offline CRL",
        next_update=dt.datetime(2025, 1, 8, tzinfo=dt.UTC),
    )
    assert result.note is None


def test_offline_crls_of_other_roots_are_skipped_but_one_must_match(
    fake_amd_factory: Callable[[Product], Any], make_report: MakeReport
) -> None:
    milan, genoa = fake_amd_factory(Product.MILAN), fake_amd_factory(Product.GENOA)
    both = CrlPolicy(CrlMode.REQUIRE, crls=(genoa.crl(), milan.crl([ASK_SERIAL])))
    with pytest.raises(Revoked, match="ASK 'SEV-Milan' serial 65537"):
        check(milan, make_report(), both)
    only_genoa = CrlPolicy(CrlMode.ACCEPT_UNAVAILABLE, crls=(genoa.crl(),))
    with pytest.raises(CrlInvalid, match="no CRL given is issued by the ARK 'ARK-Milan'"):
        check(milan, make_report(), only_genoa)


def test_a_crl_listing_the_ask_refuses(fake_amd: Any, make_report: MakeReport) -> None:
    fetch = CountingFetcher({MILAN_CRL: fake_amd.crl([ASK_SERIAL])})
    with pytest.raises(Revoked, match=r"ASK 'SEV-Milan' serial 65537 \(0x10001\) is revoked"):
        check(fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE, fetch))
    assert fetch.calls == [MILAN_CRL]


def test_the_vlek_chain_uses_the_vlek_crl(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report(key_info=KeyInfo(SigningKey.VLEK), chip_id=bytes(64))
    url = "https://kdsintf.amd.com/vlek/v1/Milan/crl"
    fetch = CountingFetcher({url: fake_amd.crl([VEK_SERIAL])})
    with pytest.raises(Revoked, match="VLEK 'SEV-VLEK' serial 42"):
        check(fake_amd, report, CrlPolicy(CrlMode.REQUIRE, fetch))
    fetch.bodies[url] = fake_amd.crl([ASK_SERIAL])
    with pytest.raises(Revoked, match="ASVK 'SEV-Milan' serial 65537"):
        check(fake_amd, report, CrlPolicy(CrlMode.REQUIRE, fetch))


def test_unavailable_fails_closed_when_required(fake_amd: Any, make_report: MakeReport) -> None:
    with pytest.raises(CrlUnavailable) as exc:
        check(fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE, CountingFetcher({})))
    assert exc.value.url == MILAN_CRL
    assert "HTTP Error 503" in exc.value.reason
    assert str(exc.value).startswith(f"AMD CRL unavailable: {MILAN_CRL}: ")
    assert isinstance(exc.value, FetchError)
    with pytest.raises(CrlUnavailable, match="no CRL was given and no fetcher"):
        check(fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE))


def test_unavailable_is_reported_when_accepted(fake_amd: Any, make_report: MakeReport) -> None:
    result = check(fake_amd, make_report(), CrlPolicy(CrlMode.ACCEPT_UNAVAILABLE))
    assert result.status == CrlStatus.UNAVAILABLE
    assert result.source == MILAN_CRL
    assert result.note == (
        f"revocation not checked: the AMD CRL {MILAN_CRL} is unavailable (no CRL was given and "
        f"no fetcher to get {MILAN_CRL}); accepted by the caller (crl mode accept-unavailable)"
    )


def test_accepting_unavailable_never_accepts_a_bad_crl(
    fake_amd: Any, make_report: MakeReport
) -> None:
    accept = CrlMode.ACCEPT_UNAVAILABLE
    stale = CountingFetcher({MILAN_CRL: fake_amd.crl()})
    with pytest.raises(CrlInvalid, match="stale"):
        check(
            fake_amd,
            make_report(),
            CrlPolicy(accept, stale),
            now=dt.datetime(2025, 2, 1, tzinfo=dt.UTC),
        )
    revoked = CountingFetcher({MILAN_CRL: fake_amd.crl([VEK_SERIAL])})
    with pytest.raises(Revoked):
        check(fake_amd, make_report(), CrlPolicy(accept, revoked))
    with pytest.raises(ParseError, match=r"not an X\.509 CRL"):
        check(fake_amd, make_report(), CrlPolicy(accept, CountingFetcher({MILAN_CRL: b"<html>"})))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_a_fetched_garbage_body_raises_only_our_errors(
    fake_amd: Any, make_report: MakeReport, body: bytes
) -> None:
    with pytest.raises(AttestationError):
        check(
            fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE, CountingFetcher({MILAN_CRL: body}))
        )


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_damaged_crl_raises_only_our_errors(
    fake_amd: Any, make_report: MakeReport, data: st.DataObject
) -> None:
    good = bytearray(fake_amd.crl([ASK_SERIAL + 1, 7]))
    index = data.draw(st.integers(0, len(good) - 1))
    good[index] ^= data.draw(st.integers(1, 255))
    try:
        result = check(fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE, crls=(bytes(good),)))
    except AttestationError:
        return
    # only the outer, unsigned signatureAlgorithm copy can change without a refusal
    assert result.status == CrlStatus.NOT_REVOKED


# --- through the cache: fetched once, kept until nextUpdate ----------------------------------


def test_the_crl_is_fetched_once_and_cached_until_next_update(
    fake_amd: Any, make_report: MakeReport, tmp_path: Path
) -> None:
    fetch = CountingFetcher({MILAN_CRL: fake_amd.crl()})
    clock = [NOW]
    policy = CrlPolicy(CrlMode.REQUIRE, cached(fetch, tmp_path, clock=lambda: clock[0]))
    for _ in range(3):
        assert check(fake_amd, make_report(), policy).status == CrlStatus.NOT_REVOKED
    assert fetch.calls == [MILAN_CRL]
    # past nextUpdate the cache asks KDS again, and serves the new CRL from then on
    clock[0] = dt.datetime(2025, 1, 9, tzinfo=dt.UTC)
    later = dt.datetime(2025, 1, 9, tzinfo=dt.UTC)
    fetch.bodies[MILAN_CRL] = fake_amd.crl([VEK_SERIAL], this_update=later)
    for _ in range(2):
        with pytest.raises(Revoked):
            check(fake_amd, make_report(), policy, now=later)
    assert fetch.calls == [MILAN_CRL, MILAN_CRL]


def test_a_stale_cached_crl_with_kds_down_is_unavailable_not_trusted(
    fake_amd: Any, make_report: MakeReport, tmp_path: Path
) -> None:
    fetch = CountingFetcher({MILAN_CRL: fake_amd.crl()})
    clock = [NOW]
    fetcher = cached(fetch, tmp_path, clock=lambda: clock[0])
    check(fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE, fetcher))
    del fetch.bodies[MILAN_CRL]
    clock[0] = later = dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
    with pytest.raises(CrlUnavailable, match="HTTP Error 503"):
        check(fake_amd, make_report(), CrlPolicy(CrlMode.REQUIRE, fetcher), now=later)
    result = check(
        fake_amd, make_report(), CrlPolicy(CrlMode.ACCEPT_UNAVAILABLE, fetcher), now=later
    )
    assert result.status == CrlStatus.UNAVAILABLE


# --- AMD's real chains ---------------------------------------------------------------------


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("signer", [SigningKey.VCEK, SigningKey.VLEK])
def test_crl_urls_are_the_distribution_points_of_amds_asks(
    product: Product, signer: SigningKey
) -> None:
    ask, ark = bundled_chain(product, signer)

    def points(cert: x509.Certificate) -> list[str]:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        return [str(n.value) for p in cdp for n in p.full_name or ()]

    assert points(ask) == [crl_url(product, signer)]
    assert points(ark) == [crl_url(product, SigningKey.VCEK)]


def test_a_minted_crl_is_refused_under_amds_real_ark() -> None:
    # The attacker's move: a CRL naming AMD's ARK as issuer, signed with any other key.
    ask, ark = bundled_chain(Product.GENOA, SigningKey.VCEK)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ark.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .sign(forger, hashes.SHA384(), rsa_padding=PSS)
    )
    with pytest.raises(CrlInvalid, match="does not verify under the ARK 'ARK-Genoa'"):
        verify_crl(crl, ark, now=NOW)
    assert ask.serial_number == 131074


# --- through verify_report ---------------------------------------------------------------------


def test_verify_report_refuses_a_revoked_vcek(fake_amd: Any, make_report: MakeReport) -> None:
    report = make_report()
    raw, vek = fake_amd.sign(report), der(fake_amd.vek_for(report))
    common: dict[str, Any] = {
        "vek": vek,
        "chain": fake_amd.chain_pem(),
        "now": NOW,
        "trusted_arks": fake_amd.trusted_arks,
    }
    assert verify_report(raw, **common).revocation is NOT_CHECKED
    good = verify_report(raw, **common, crl=CrlPolicy(CrlMode.REQUIRE, crls=(fake_amd.crl(),)))
    assert good.revocation.status == CrlStatus.NOT_REVOKED
    with pytest.raises(Revoked, match="VCEK 'SEV-VCEK' serial 42"):
        verify_report(
            raw, **common, crl=CrlPolicy(CrlMode.REQUIRE, crls=(fake_amd.crl([VEK_SERIAL]),))
        )


def test_a_genuine_report_with_revocation_off_then_required_offline() -> None:
    # tinfoil-genoa-v3 (tests/vectors/snp/manifest.json): a real Genoa report and VCEK
    raw = (VECTORS / "tinfoil-genoa-v3" / "report.bin").read_bytes()[:1184]
    vek = (VECTORS / "tinfoil-genoa-v3" / "vcek.der").read_bytes()
    now = load_certificates(vek)[0].not_valid_before_utc + dt.timedelta(days=1)
    assert verify_report(raw, vek=vek, now=now).revocation is NOT_CHECKED
    with pytest.raises(CrlUnavailable, match=re.escape(crl_url(Product.GENOA))):
        verify_report(raw, vek=vek, now=now, crl=CrlPolicy(CrlMode.REQUIRE))


# --- through verify_snp_item / verify_evidence -----------------------------------------------

PUBKEY = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
CLAIMS: dict[str, Any] = {
    "pubkey": PUBKEY.hex(),
    "job": "aa" * 32,
    "nonce": "bb" * 32,
    "provider": "cc" * 32,
    "model": {"name": "gemma", "sha256": "dd" * 32},
    "runtime": {"version": "0.1.0", "image": "img"},
}


def item_for(fake: Any, report: Report) -> SnpItem:
    return SnpItem(
        type=EvidenceType.SEV_SNP,
        report=fake.sign(report),
        vek=der(fake.vek_for(report)),
        ask=der(fake.ask),
        ark=der(fake.ark),
    )


def trust_for(fake: Any, crl: CrlPolicy = CRL_OFF) -> Trust:
    return Trust(amd_arks=fake.trusted_arks, crl=crl)


def test_verify_snp_item_lists_a_revoked_vcek(fake_amd: Any, make_report: MakeReport) -> None:
    item = item_for(fake_amd, make_report())
    revoked = CrlPolicy(CrlMode.REQUIRE, crls=(fake_amd.crl([VEK_SERIAL]),))
    with pytest.raises(EvidenceRejected) as exc:
        verify_snp_item(item, now=NOW, trust=trust_for(fake_amd, revoked))
    assert [type(e) for e in exc.value.errors] == [Revoked]
    assert verify_snp_item(item, now=NOW, trust=trust_for(fake_amd)).revocation is NOT_CHECKED


def test_revocation_is_not_tried_on_a_broken_chain(fake_amd: Any, make_report: MakeReport) -> None:
    item = item_for(fake_amd, make_report())
    fetch = CountingFetcher({})
    with pytest.raises(EvidenceRejected) as exc:
        verify_snp_item(
            item,
            now=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),  # every certificate expired
            trust=trust_for(fake_amd, CrlPolicy(CrlMode.REQUIRE, fetch)),
        )
    assert [type(e) for e in exc.value.errors] == [ChainError]
    assert fetch.calls == []
    unsigned = dataclasses.replace(
        item, report=fake_amd.sign(make_report(key_info=KeyInfo(SigningKey.NONE)))
    )
    with pytest.raises(EvidenceRejected):
        verify_snp_item(
            unsigned, now=NOW, trust=trust_for(fake_amd, CrlPolicy(CrlMode.REQUIRE, fetch))
        )
    assert fetch.calls == []


def test_verify_evidence_reports_what_it_did_not_check(
    fake_amd: Any, make_report: MakeReport
) -> None:
    report = make_report(report_data=report_data(PUBKEY, CLAIMS))
    bundle = build_bundle(claims=CLAIMS, evidence=[item_for(fake_amd, report)], initdata=None)
    expected = Expected(job="aa" * 32, nonce="bb" * 32, provider="cc" * 32)

    def run(crl: CrlPolicy) -> tuple[str, ...]:
        return verify_evidence(
            bundle, now=NOW, trust=trust_for(fake_amd, crl), expected=expected
        ).warnings

    assert "revocation not checked: AMD's CRL was not consulted (crl mode off)" in run(CRL_OFF)
    accepted = run(CrlPolicy(CrlMode.ACCEPT_UNAVAILABLE, CountingFetcher({})))
    assert any(
        w.startswith(f"revocation not checked: the AMD CRL {MILAN_CRL} is unavailable")
        for w in accepted
    )
    checked = run(CrlPolicy(CrlMode.REQUIRE, CountingFetcher({MILAN_CRL: fake_amd.crl()})))
    assert not any(w.startswith("revocation") for w in checked)
    with pytest.raises(EvidenceRejected) as exc:
        run(CrlPolicy(CrlMode.REQUIRE, CountingFetcher({})))
    assert [type(e) for e in exc.value.errors] == [CrlUnavailable]
    with pytest.raises(EvidenceRejected) as exc:
        run(CrlPolicy(CrlMode.REQUIRE, CountingFetcher({MILAN_CRL: fake_amd.crl([ASK_SERIAL])})))
    assert [type(e) for e in exc.value.errors] == [Revoked]


def test_simulated_evidence_has_no_crl_to_check(make_report: MakeReport) -> None:
    chain = mint_chain(now=NOW)
    item = SimulatedTee(chain, hashlib.sha384(b"m").digest()).attest(
        container_pubkey=PUBKEY, claims=CLAIMS
    )
    fetch = CountingFetcher({})
    trust = Trust(simulated_roots=(chain.pem("ark"),), crl=CrlPolicy(CrlMode.REQUIRE, fetch))
    verified = verify_snp_item(item, now=NOW + dt.timedelta(days=1), trust=trust)
    assert verified.revocation.status == CrlStatus.NOT_APPLICABLE
    assert verified.revocation.note is None
    assert fetch.calls == []
