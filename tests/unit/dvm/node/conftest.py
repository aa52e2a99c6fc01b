"""Shared fixtures of the node's unit tests: a valid config document, keys, signed requests."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from attestation.simulated import SimulatedChain, load_or_mint
from dvm.node.config import NodeConfig, parse_config
from dvm.nostr.event import Event
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import build_job_request
from tests.unit.dvm.node import fake_runtime

NOW = 1_700_000_000


def key(seed: int) -> SecretKey:
    return SecretKey(hashlib.sha256(f"node-test-key-{seed}".encode()).digest())


@pytest.fixture
def provider_key() -> SecretKey:
    return key(1)


@pytest.fixture
def requester_key() -> SecretKey:
    return key(2)


def config_document(tmp_path: Path) -> dict[str, Any]:
    """A complete valid TOML document (as a dict) with a real model file and key file."""
    model = tmp_path / "model.bin"
    model.write_bytes(b"not really a model, but hashed like one")
    key_file = tmp_path / "provider.nsec"
    key_file.write_text(key(1).reveal_hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    return {
        "node": {
            "key_file": str(key_file),
            "data_dir": str(tmp_path / "data"),
            "relays": ["ws://127.0.0.1:1"],
        },
        "tee": {"kinds": ["simulated"], "simulated_dir": str(tmp_path / "tee")},
        "limits": {"max_concurrent_jobs": 2},
        "models": [
            {
                "name": "tiny",
                "runner": "onnx",
                "path": str(model),
                "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            }
        ],
    }


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    return config_document(tmp_path)


@pytest.fixture
def config(document: dict[str, Any], tmp_path: Path) -> NodeConfig:
    return parse_config(document, base_dir=tmp_path)


RequestMaker = Callable[..., Event]


def make_request(
    requester: SecretKey,
    provider: SecretKey,
    *,
    tee: str = "simulated",
    params: Sequence[tuple[str, str]] = (("model", "tiny"),),
    created_at: int = NOW,
    expiration: int | None = None,
    extra_tags: Sequence[Sequence[str]] = (),
    nonce: bytes = b"\x07" * 32,
    kind: int = 5050,
) -> Event:
    unsigned = build_job_request(
        requester=requester.public_key,
        provider=provider.public_key,
        tee=tee,
        nonce=nonce,
        created_at=created_at,
        kind=kind,
        params=params,
        expiration=expiration,
        extra_tags=extra_tags,
    )
    return unsigned.sign(requester, aux_rand=bytes(32))


# The fake container's runtime root: its __main__ plus the launch contract it imports.
FAKE_RUNTIME = fake_runtime.FAKE_RUNTIME


@pytest.fixture(scope="session")
def simulated_chain(tmp_path_factory: pytest.TempPathFactory) -> SimulatedChain:
    """One minted simulated-TEE chain for the whole session (minting RSA-4096 takes seconds)."""
    return load_or_mint(tmp_path_factory.mktemp("tee") / "chain", now=dt.datetime.now(dt.UTC))
