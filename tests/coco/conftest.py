"""One simulated TEE per session for the fake attestation agent (RSA-4096 takes a second).

Its ARK is re-issued under a key the tests hold (tests/unit/dvm/client/minted_crl.py), so that
``agent_crl`` is a real CRL signed by that ARK: revocation is checked and nothing reaches AMD.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from attestation.simulated import SimulatedTee, load_or_mint
from attestation.snp.crl import CrlPolicy
from tests.unit.dvm.client.minted_crl import crl_policy, reroot


@pytest.fixture(scope="session")
def agent_rooted(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SimulatedTee, rsa.RSAPrivateKey]:
    chain = load_or_mint(
        tmp_path_factory.mktemp("fake-agent") / "simulated-tee",
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
    )
    return reroot(SimulatedTee(chain, hashlib.sha384(b"fake agent runtime").digest()))


@pytest.fixture(scope="session")
def agent_tee(agent_rooted: tuple[SimulatedTee, rsa.RSAPrivateKey]) -> SimulatedTee:
    return agent_rooted[0]


@pytest.fixture(scope="session")
def agent_crl(agent_rooted: tuple[SimulatedTee, rsa.RSAPrivateKey]) -> CrlPolicy:
    """An offline, current CRL for agent_tee's ARK, listing nothing."""
    return crl_policy(*agent_rooted)
