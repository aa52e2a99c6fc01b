"""Shared fixtures: one simulated chain minted per test session (RSA-4096 takes a second)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from attestation.simulated.chain import SimulatedChain, load_or_mint

MINTED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def chain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cfg") / "simulated-tee"


@pytest.fixture(scope="session")
def chain(chain_dir: Path) -> SimulatedChain:
    return load_or_mint(chain_dir, now=MINTED_AT)
