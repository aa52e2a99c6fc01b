"""Fixtures for the client tests: one simulated TEE per session (RSA-4096 takes a second).

Its ARK is re-issued under a key the tests hold (:mod:`tests.unit.dvm.client.minted_crl`), so
that they can mint AMD-style CRLs for it (``crl``: an offline CRL listing nothing). No test may
reach AMD KDS: the client's default CRL fetcher is replaced by one that fails the test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from attestation.simulated import SimulatedTee, load_or_mint
from attestation.snp.crl import CrlPolicy
from attestation.snp.kds import Fetcher
from dvm.client import verify

from .minted_crl import crl_policy, refuse_fetch, reroot

MINTED_AT = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client-sim") / "simulated-tee"


@pytest.fixture(scope="session")
def sim_rooted(sim_dir: Path) -> tuple[SimulatedTee, rsa.RSAPrivateKey]:
    chain = load_or_mint(sim_dir, now=MINTED_AT)
    tee, ark_key = reroot(SimulatedTee(chain, hashlib.sha384(b"fake runtime").digest()))
    (sim_dir / "ark.pem").write_bytes(tee.chain.pem("ark"))  # the root the tests trust
    return tee, ark_key


@pytest.fixture(scope="session")
def sim_tee(sim_rooted: tuple[SimulatedTee, rsa.RSAPrivateKey]) -> SimulatedTee:
    return sim_rooted[0]


@pytest.fixture(scope="session")
def sim_ark_key(sim_rooted: tuple[SimulatedTee, rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    return sim_rooted[1]


@pytest.fixture(scope="session")
def sim_root(sim_dir: Path, sim_tee: SimulatedTee) -> Path:
    path = sim_dir / "ark.pem"
    assert path.read_bytes() == sim_tee.chain.pem("ark")
    return path


@pytest.fixture(scope="session")
def crl(sim_tee: SimulatedTee, sim_ark_key: rsa.RSAPrivateKey) -> CrlPolicy:
    """An offline, current CRL signed by the test's ARK, listing nothing."""
    return crl_policy(sim_tee, sim_ark_key)


@pytest.fixture(autouse=True)
def _no_kds(monkeypatch: pytest.MonkeyPatch) -> None:
    def fetcher() -> Fetcher:
        return refuse_fetch

    monkeypatch.setattr(verify, "default_crl_fetcher", fetcher)
