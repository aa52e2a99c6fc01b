"""One simulated TEE per session for the fake attestation agent (RSA-4096 takes a second)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from attestation.simulated import SimulatedTee, load_or_mint


@pytest.fixture(scope="session")
def agent_tee(tmp_path_factory: pytest.TempPathFactory) -> SimulatedTee:
    chain = load_or_mint(
        tmp_path_factory.mktemp("fake-agent") / "simulated-tee",
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
    )
    return SimulatedTee(chain, hashlib.sha384(b"fake agent runtime").digest())
