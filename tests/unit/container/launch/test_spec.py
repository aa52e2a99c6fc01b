"""The job spec (docs/launch.md §1): what the launcher builds is what the container parses."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from container.launch import (
    MAX_SPEC_BYTES,
    EvidenceSource,
    JobSpec,
    Limits,
    ModelSpec,
    RunnerKind,
    SpecError,
    build_job_spec,
    parse_job_spec,
)
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import build_job_request


def _key(seed: int) -> SecretKey:
    return SecretKey(hashlib.sha256(f"spec-test-key-{seed}".encode()).digest())


REQUESTER, PROVIDER = _key(1), _key(2)
REQUEST = build_job_request(
    requester=REQUESTER.public_key,
    provider=PROVIDER.public_key,
    tee="simulated",
    nonce=b"\x07" * 32,
    created_at=1_700_000_000,
    params=[("model", "tiny")],
).sign(REQUESTER, aux_rand=bytes(32))
SPEC = JobSpec(
    request=REQUEST,
    provider=PROVIDER.public_key.hex(),
    relays=("ws://127.0.0.1:1",),
    tee="simulated",
    evidence_source=EvidenceSource.SIMULATED_FD,
    evidence_fd=3,
    model=ModelSpec("tiny", RunnerKind.ONNX, "/models/tiny", "ab" * 32, {"max_tokens": 8}),
    runtime_version="0.1.0",
    runtime_image="local-bubblewrap:sha384:00",
    limits=Limits(
        attestation_timeout_s=10,
        idle_timeout_s=20,
        deadline_s=30,
        max_input_bytes=1000,
        max_output_tokens=16,
    ),
)


def _body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(build_job_spec(SPEC))
    return body


def test_build_then_parse_round_trips() -> None:
    assert parse_job_spec(build_job_spec(SPEC)) == SPEC


def test_missing_limits_are_the_defaults() -> None:
    body = _body()
    del body["limits"]
    assert parse_job_spec(json.dumps(body).encode()).limits == Limits()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(extra=1), "unknown keys"),
        (lambda b: b["model"].update(quantization="q4"), "unknown keys"),
        (lambda b: b["limits"].update(gpus=1), "unknown keys"),
        (lambda b: b.update(v=2), "version"),
        (lambda b: b.pop("relays"), "missing"),
        (lambda b: b["model"].update(runner="torch"), "unknown runner"),
        (lambda b: b["model"].update(sha256="AB" * 32), "sha256"),
        (lambda b: b["evidence"].update(source="tpm"), "evidence source"),
        (lambda b: b["evidence"].update(fd=2), "fd >= 3"),
        (lambda b: b["limits"].update(deadline_s=0), "positive"),
        (lambda b: b["limits"].update(max_input_bytes=True), "positive"),
        (lambda b: b["request"].update(content="tampered"), "request"),
    ],
)
def test_bad_specs_are_refused(change: Any, message: str) -> None:
    body = _body()
    change(body)
    with pytest.raises(SpecError, match=message):
        parse_job_spec(json.dumps(body).encode())


def test_an_oversized_spec_is_refused_before_parsing() -> None:
    with pytest.raises(SpecError, match="bytes"):
        parse_job_spec(b" " * (MAX_SPEC_BYTES + 1))


@given(st.binary(max_size=400))
def test_garbage_raises_only_spec_error(raw: bytes) -> None:
    with contextlib.suppress(SpecError):
        parse_job_spec(raw)


def test_relay_sockets_are_absent_by_default_and_round_trip_when_set() -> None:
    assert "relay_sockets" not in _body()  # the spec's bytes are unchanged without them
    assert SPEC.relay_sockets == {}
    with_sockets = dataclasses.replace(
        SPEC, relay_sockets={"ws://127.0.0.1:1": "/run/cdvm-relays/0.sock"}
    )
    body = json.loads(build_job_spec(with_sockets))
    assert body["relay_sockets"] == {"ws://127.0.0.1:1": "/run/cdvm-relays/0.sock"}
    assert parse_job_spec(build_job_spec(with_sockets)) == with_sockets


@pytest.mark.parametrize(
    ("sockets", "message"),
    [
        (["/run/cdvm-relays/0.sock"], "JSON object"),
        (None, "JSON object"),
        ({}, "exactly the relays"),
        ({"ws://other:1": "/s"}, "exactly the relays"),
        ({"ws://127.0.0.1:1": "/s", "ws://other:1": "/t"}, "exactly the relays"),
        ({"ws://127.0.0.1:1": "relative.sock"}, "absolute"),
        ({"ws://127.0.0.1:1": 3}, "absolute"),
        ({"ws://127.0.0.1:1": "/a\0b"}, "absolute"),
    ],
)
def test_bad_relay_sockets_are_refused(sockets: object, message: str) -> None:
    body = _body()
    body["relay_sockets"] = sockets
    with pytest.raises(SpecError, match=message):
        parse_job_spec(json.dumps(body).encode())
