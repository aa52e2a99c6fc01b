"""dvm.client.verify: revocation is required for hardware jobs unless the caller chose otherwise.

The evidence is test_verify_snp's sev-snp-shaped bundle; the chain's ARK is re-issued under a key
the test holds (conftest ``sim_rooted``), so the CRLs here are minted and signed by that ARK
(tests/unit/dvm/client/minted_crl.py) and the check is the real one
(:func:`attestation.snp.crl.check_revocation`). Nothing reaches AMD KDS: the default fetcher is
replaced (conftest ``_no_kds``) or a fetcher is injected.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from attestation.errors import FetchError
from attestation.simulated import SimulatedTee
from attestation.snp.abi import Product
from attestation.snp.crl import CRL_OFF, CrlMode, CrlPolicy
from attestation.snp.kds import crl_url
from attestation.snp.validate import DEFAULT_POLICY
from attestation.verification import Trust
from dvm.client import AttestationRefused, JobOptions, Verification, verify_attestation
from dvm.client import verify as client_verify
from dvm.client.verify import default_crl_policy

from .minted_crl import mint_crl, refuse_fetch
from .test_verify_snp import IMAGE, PROVIDER, Launch, _attest, _pins, _request, _trust

GENOA_CRL = crl_url(Product.GENOA)


@pytest.fixture
def trust(sim_tee: SimulatedTee) -> Trust:
    return _trust(sim_tee.chain.der("ark"), CRL_OFF)  # the crl argument is what counts


def _verify(sim_tee: SimulatedTee, trust: Trust, crl: CrlPolicy | None) -> Verification:
    request = _request()
    event, container = _attest(sim_tee, request, Launch())
    return verify_attestation(
        event,
        request=request,
        container=container,
        policy=DEFAULT_POLICY,
        trust=trust,
        now=datetime.now(UTC),
        trusted_images=(IMAGE,),
        pins=_pins(sim_tee),
        crl=crl,
    )


def _refused(sim_tee: SimulatedTee, trust: Trust, crl: CrlPolicy | None) -> tuple[str, ...]:
    with pytest.raises(AttestationRefused) as caught:
        _verify(sim_tee, trust, crl)
    return caught.value.reasons


def _unreachable(url: str) -> bytes:
    raise FetchError(f"cannot reach {url}: connection refused")


@pytest.mark.parametrize("tee", ["sev-snp", "sev-snp+nvidia-h100", "some-future-tee"])
def test_the_default_for_hardware_kinds_requires_a_fetched_crl(tee: str) -> None:
    policy = default_crl_policy(tee)
    assert policy.mode is CrlMode.REQUIRE
    assert policy.fetch is refuse_fetch  # the default fetcher, replaced by conftest's _no_kds
    assert policy.crls == ()


def test_the_default_for_simulated_jobs_is_off() -> None:
    assert default_crl_policy("simulated") == CRL_OFF


def test_job_options_leave_revocation_to_the_tee_default() -> None:
    opts = JobOptions(provider=PROVIDER, relays=("ws://127.0.0.1:1",), model="m")
    assert opts.crl is None


def test_a_current_crl_listing_nothing_passes_and_is_named(
    sim_tee: SimulatedTee, sim_ark_key: rsa.RSAPrivateKey, trust: Trust, crl: CrlPolicy
) -> None:
    verification = _verify(sim_tee, trust, crl)
    (line,) = [c for c in verification.checks if c.startswith("revocation:")]
    assert line.startswith("revocation: ASK and VCEK not listed on AMD's CRL (offline CRL, ")
    assert not [w for w in verification.warnings if "revocation" in w]


@pytest.mark.parametrize("which", ["vcek", "ask"])
@pytest.mark.parametrize("fetched", [False, True], ids=["offline", "fetched"])
def test_a_revoked_key_is_refused_with_what_to_do(
    sim_tee: SimulatedTee,
    sim_ark_key: rsa.RSAPrivateKey,
    trust: Trust,
    which: str,
    fetched: bool,
) -> None:
    serial = getattr(sim_tee.chain, which).serial_number
    body = mint_crl(sim_tee, sim_ark_key, [12345, serial])
    served: list[str] = []

    def kds(url: str) -> bytes:
        served.append(url)
        return body

    policy = (
        CrlPolicy(CrlMode.REQUIRE, kds) if fetched else CrlPolicy(CrlMode.REQUIRE, crls=(body,))
    )
    reasons = _refused(sim_tee, trust, policy)
    assert served == ([GENOA_CRL] if fetched else [])
    role = which.upper()
    assert any(r.startswith(f"Revoked: {role} ") and f"serial {serial} " in r for r in reasons), (
        reasons
    )
    assert any(r.startswith("revocation: AMD revoked a key") for r in reasons)


def test_another_serial_on_the_crl_is_not_a_revocation(
    sim_tee: SimulatedTee, sim_ark_key: rsa.RSAPrivateKey, trust: Trust
) -> None:
    body = mint_crl(sim_tee, sim_ark_key, [12345])
    verification = _verify(sim_tee, trust, CrlPolicy(CrlMode.REQUIRE, crls=(body,)))
    assert any(c.startswith("revocation: ASK and VCEK not listed") for c in verification.checks)


def test_by_default_an_unavailable_crl_refuses_the_job(
    sim_tee: SimulatedTee, trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def unreachable(url: str) -> bytes:
        asked.append(url)
        return _unreachable(url)

    monkeypatch.setattr(client_verify, "default_crl_fetcher", lambda: unreachable)
    reasons = _refused(sim_tee, trust, None)  # crl=None: the client's default
    assert asked == [GENOA_CRL]
    assert any(
        r.startswith(f"CrlUnavailable: AMD CRL unavailable: {GENOA_CRL}: cannot reach")
        for r in reasons
    ), reasons
    (remedy,) = [r for r in reasons if r.startswith("revocation:")]
    assert "--crl FILE" in remedy
    assert "--crl-accept-unavailable" in remedy


def test_an_unavailable_crl_accepted_explicitly_is_reported_unchecked(
    sim_tee: SimulatedTee, trust: Trust
) -> None:
    policy = CrlPolicy(CrlMode.ACCEPT_UNAVAILABLE, _unreachable)
    verification = _verify(sim_tee, trust, policy)
    assert not [c for c in verification.checks if c.startswith("revocation:")]
    (note,) = [w for w in verification.warnings if w.startswith("revocation not checked")]
    assert f"the AMD CRL {GENOA_CRL} is unavailable (cannot reach" in note
    assert "accept-unavailable" in note


def test_a_stale_crl_is_refused(
    sim_tee: SimulatedTee, sim_ark_key: rsa.RSAPrivateKey, trust: Trust
) -> None:
    past = datetime.now(UTC) - dt.timedelta(days=30)
    body = mint_crl(sim_tee, sim_ark_key, now=past)
    reasons = _refused(sim_tee, trust, CrlPolicy(CrlMode.REQUIRE, crls=(body,)))
    assert any(r.startswith("CrlInvalid: ") for r in reasons), reasons
    assert any(r.startswith("revocation: the CRL is not AMD's current one") for r in reasons)


def test_a_crl_signed_by_another_key_is_refused(sim_tee: SimulatedTee, trust: Trust) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = mint_crl(sim_tee, stranger)  # the ARK's name, someone else's signature
    reasons = _refused(sim_tee, trust, CrlPolicy(CrlMode.REQUIRE, crls=(body,)))
    assert any(r.startswith("CrlInvalid: ") for r in reasons), reasons


def test_simulated_jobs_never_fetch_by_default(sim_tee: SimulatedTee) -> None:
    request = _request(tee="simulated")
    event, container = _attest(
        sim_tee, request, Launch(image="local", host_image=IMAGE, no_initdata=True, simulated=True)
    )
    verification = verify_attestation(
        event,
        request=request,
        container=container,
        policy=DEFAULT_POLICY,
        trust=Trust(simulated_roots=(sim_tee.chain.pem("ark"),)),
        now=datetime.now(UTC),
        pins=_pins(sim_tee),
    )  # the default fetcher fails the test if called
    assert verification.simulated
    assert not [line for line in verification.checks if "revocation" in line]
    assert not [line for line in verification.warnings if "revocation" in line]
