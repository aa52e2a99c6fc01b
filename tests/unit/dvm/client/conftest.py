"""Fixtures for the client tests: one simulated TEE per session (RSA-4096 takes a second)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from attestation.simulated import SimulatedTee, load_or_mint

MINTED_AT = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client-sim") / "simulated-tee"


@pytest.fixture(scope="session")
def sim_tee(sim_dir: Path) -> SimulatedTee:
    chain = load_or_mint(sim_dir, now=MINTED_AT)
    return SimulatedTee(chain, hashlib.sha384(b"fake runtime").digest())


@pytest.fixture(scope="session")
def sim_root(sim_dir: Path, sim_tee: SimulatedTee) -> Path:
    path = sim_dir / "ark.pem"
    assert path.exists(), "load_or_mint writes ark.pem"
    return path
