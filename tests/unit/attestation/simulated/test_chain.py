"""The simulated chain: AMD-shaped, labelled SIMULATED, minted once, kept with a 0600 key."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from attestation.errors import DeviceError, UntrustedRoot
from attestation.simulated import chain as chain_mod
from attestation.simulated.chain import (
    ARK_CN,
    ASK_CN,
    SIMULATED_PRODUCT,
    SIMULATED_TCB,
    SimulatedChain,
    load_or_mint,
)
from attestation.snp.abi import Product
from attestation.snp.trust import DEFAULT_TRUSTED_ARKS
from attestation.snp.vek import load_certificate, parse_vek_extensions
from attestation.snp.verify import verify_chain

MINTED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _cn(cert: object) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)  # type: ignore[attr-defined]


def _pins(chain: SimulatedChain) -> dict[Product, frozenset[str]]:
    return {SIMULATED_PRODUCT: frozenset({hashlib.sha256(chain.der("ark")).hexdigest()})}


def test_chain_is_amd_shaped(chain: SimulatedChain) -> None:
    ark_key, ask_key = chain.ark.public_key(), chain.ask.public_key()
    assert isinstance(ark_key, rsa.RSAPublicKey)
    assert ark_key.key_size == 4096
    assert isinstance(ask_key, rsa.RSAPublicKey)
    assert ask_key.key_size == 4096
    vcek_key = chain.vcek.public_key()
    assert isinstance(vcek_key, ec.EllipticCurvePublicKey)
    assert vcek_key.curve.name == "secp384r1"
    for cert in (chain.ark, chain.ask, chain.vcek):
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    # The real AMD chain check accepts it once (and only when) its ARK is pinned.
    fingerprint = verify_chain(
        chain.vcek,
        chain.ask,
        chain.ark,
        product=SIMULATED_PRODUCT,
        now=MINTED_AT,
        trusted_arks=_pins(chain),
    )
    assert fingerprint == hashlib.sha256(chain.der("ark")).hexdigest()
    with pytest.raises(UntrustedRoot):
        verify_chain(
            chain.vcek,
            chain.ask,
            chain.ark,
            product=SIMULATED_PRODUCT,
            now=MINTED_AT,
            trusted_arks=DEFAULT_TRUSTED_ARKS,
        )


def test_names_say_simulated(chain: SimulatedChain) -> None:
    assert _cn(chain.ark) == ARK_CN
    assert "SIMULATED" in ARK_CN
    assert _cn(chain.ask) == ASK_CN
    assert "SIMULATED" in ASK_CN
    assert _cn(chain.vcek) == "SEV-VCEK"
    assert "SIMULATED" in chain.vcek.subject.rfc4514_string()


def test_vcek_extensions_parse_as_amd(chain: SimulatedChain) -> None:
    ext = parse_vek_extensions(load_certificate(chain.der("vcek")))
    assert ext.product_name is not None
    assert ext.product_name.startswith(SIMULATED_PRODUCT.value)
    assert ext.struct_version == 0
    assert ext.spl == SIMULATED_TCB.components()
    assert ext.hw_id == chain.chip_id
    assert len(chain.chip_id) == 64


def test_files_and_modes(chain: SimulatedChain, chain_dir: Path) -> None:
    assert sorted(p.name for p in chain_dir.iterdir()) == sorted(chain_mod._FILES)
    assert stat.S_IMODE((chain_dir / "vcek.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(chain_dir.stat().st_mode) == 0o700
    assert (chain_dir / "ark.pem").read_bytes() == chain.pem("ark")
    assert b"PRIVATE KEY" in (chain_dir / "vcek.key").read_bytes()
    assert not list(chain_dir.parent.glob(".simulated-tee-*"))  # no staging left behind


def test_minted_once(chain: SimulatedChain, chain_dir: Path) -> None:
    again = load_or_mint(chain_dir, now=MINTED_AT + dt.timedelta(days=1))
    assert again.der("ark") == chain.der("ark")
    assert again.der("vcek") == chain.der("vcek")
    assert again.vcek_key.private_numbers() == chain.vcek_key.private_numbers()


def test_empty_directory_made_ahead_is_filled(
    tmp_path: Path, chain: SimulatedChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain_mod, "mint_chain", lambda now: chain)  # skip RSA key generation
    target = tmp_path / "tee"
    target.mkdir()
    assert load_or_mint(target, now=MINTED_AT).der("ark") == chain.der("ark")
    assert (target / "vcek.key").exists()


def test_lost_race_keeps_the_first_chain(
    tmp_path: Path, chain: SimulatedChain, chain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "tee"

    def mint_while_another_process_wins(now: dt.datetime) -> SimulatedChain:
        target.mkdir()
        for name in chain_mod._FILES:
            (target / name).write_bytes((chain_dir / name).read_bytes())
        return chain_mod.SimulatedChain(
            chain.ark, chain.ask, chain.vcek, ec.generate_private_key(ec.SECP384R1())
        )

    monkeypatch.setattr(chain_mod, "mint_chain", mint_while_another_process_wins)
    loaded = load_or_mint(target, now=MINTED_AT)
    assert loaded.vcek_key.private_numbers() == chain.vcek_key.private_numbers()
    assert not list(tmp_path.glob(".simulated-tee-*"))


def test_default_directory_is_under_the_users_config() -> None:
    assert Path("~/.config/cdvm/simulated-tee") == chain_mod.DEFAULT_CONFIG_DIR


def test_incomplete_directory_is_a_device_error(tmp_path: Path, chain_dir: Path) -> None:
    target = tmp_path / "tee"
    target.mkdir()
    (target / "vcek.key").write_bytes((chain_dir / "vcek.key").read_bytes())
    with pytest.raises(DeviceError, match="incomplete"):
        load_or_mint(target, now=MINTED_AT)


def test_key_not_matching_the_certificate_is_refused(tmp_path: Path, chain_dir: Path) -> None:
    target = tmp_path / "tee"
    target.mkdir()
    for name in chain_mod._FILES:
        (target / name).write_bytes((chain_dir / name).read_bytes())
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (target / "vcek.key").write_bytes(other)
    with pytest.raises(DeviceError, match="not the key"):
        load_or_mint(target, now=MINTED_AT)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        chain_mod.mint_chain(now=dt.datetime(2026, 1, 1))


def test_validity_starts_at_now(chain: SimulatedChain) -> None:
    for cert in (chain.ark, chain.ask, chain.vcek):
        assert cert.not_valid_before_utc == MINTED_AT
    assert chain.vcek.not_valid_after_utc < chain.ark.not_valid_after_utc
