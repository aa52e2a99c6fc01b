"""cdvm/1 kind-7100 attestation event: claims, canonical JSON, binding, codec, garbage.

The binding itself is :mod:`attestation.binding` (known answer in tests/unit/attestation); here,
that the claims a container builds reach it as the canonical object, through the adapter
:func:`dvm.cdvm.kind7100.report_data`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation import binding
from attestation.binding import BINDING_DOMAIN
from dvm.cdvm.kind7100 import (
    Claims,
    ModelClaim,
    RuntimeClaim,
    build_attestation,
    parse_attestation,
    report_data,
)
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey

CONTAINER = SecretKey(b"\x03" * 32)
USER = SecretKey(b"\x01" * 32)
PROVIDER = SecretKey(b"\x02" * 32)
AUX = bytes(32)
T = 1_700_000_000
JOB = "ab" * 32
EVIDENCE = [{"type": "simulated", "report": "AAAA", "certs": ["-----BEGIN..."]}]


def canonical_claims_json(claims: Claims) -> bytes:
    return binding.canonical_claims_json(claims.to_dict())


def binding_digest(claims: Claims) -> bytes:
    return binding.binding_digest(bytes.fromhex(claims.pubkey), claims.to_dict())


def _claims(**overrides: Any) -> Claims:
    fields: dict[str, Any] = {
        "pubkey": CONTAINER.public_key.hex(),
        "job": JOB,
        "nonce": "cd" * 32,
        "provider": PROVIDER.public_key.hex(),
        "model": ModelClaim("gemma-3-270m", "ef" * 32),
        "runtime": RuntimeClaim("0.1.0", "ghcr.io/x/cdvm@sha256:" + "01" * 32),
    }
    fields.update(overrides)
    return Claims(**fields)


def _event(**overrides: Any) -> Event:
    args: dict[str, Any] = {
        "claims": _claims(),
        "recipient": USER.public_key,
        "tee": "simulated",
        "expiration": T + 300,
        "evidence": EVIDENCE,
        "initdata": b'algorithm = "sha256"\n',
        "created_at": T,
    }
    args.update(overrides)
    return build_attestation(**args).sign(CONTAINER, aux_rand=AUX)


def test_canonical_claims_json_is_sorted_compact_utf8() -> None:
    claims = _claims(model=ModelClaim("modèle-🦙", "ef" * 32))
    expected = (
        '{"job":"' + JOB + '","model":{"name":"modèle-🦙","sha256":"' + "ef" * 32 + '"},'
        '"nonce":"' + "cd" * 32 + '","provider":"' + PROVIDER.public_key.hex() + '",'
        '"pubkey":"' + CONTAINER.public_key.hex() + '","runtime":{"image":"'
        "ghcr.io/x/cdvm@sha256:" + "01" * 32 + '","version":"0.1.0"}}'
    ).encode("utf-8")
    assert canonical_claims_json(claims) == expected


def test_binding_is_hex_of_domain_separated_digest_over_key_and_claims() -> None:
    claims = _claims()
    digest = hashlib.sha256(
        b"cdvm/1 attestation\x00" + CONTAINER.public_key.raw + canonical_claims_json(claims)
    ).digest()
    assert BINDING_DOMAIN == b"cdvm/1 attestation\x00"
    assert binding_digest(claims) == digest
    assert report_data(claims) == digest.hex().encode("ascii")
    assert len(report_data(claims)) == 64
    assert report_data(_claims(nonce="ce" * 32)) != report_data(claims)


def test_claims_without_canonical_json_are_a_codec_error() -> None:
    claims = _claims(model=ModelClaim("\ud800", "ef" * 32))  # a lone surrogate
    with pytest.raises(CodecError, match="cannot be bound"):
        report_data(claims)


def test_round_trip() -> None:
    event = _event()
    assert event.tags == (
        ("e", JOB),
        ("p", USER.public_key.hex()),
        ("provider", PROVIDER.public_key.hex()),
        ("tee", "simulated"),
        ("expiration", str(T + 300)),
    )
    body = json.loads(event.content)
    assert body["v"] == 1
    assert body["initdata"] == base64.b64encode(b'algorithm = "sha256"\n').decode()
    parsed = parse_attestation(Event.from_json(event.to_json()))
    assert parsed.claims == _claims()
    assert parsed.container == CONTAINER.public_key.hex()
    assert (parsed.job_id, parsed.recipient, parsed.provider) == (
        JOB,
        USER.public_key.hex(),
        PROVIDER.public_key.hex(),
    )
    assert (parsed.tee, parsed.expiration) == ("simulated", T + 300)
    assert list(parsed.evidence) == EVIDENCE
    assert parsed.initdata == b'algorithm = "sha256"\n'


def test_null_initdata() -> None:
    parsed = parse_attestation(_event(initdata=None))
    assert parsed.initdata is None
    assert json.loads(parsed.event.content)["initdata"] is None


@settings(max_examples=40, deadline=None)
@given(
    name=st.text(min_size=1, max_size=30),
    version=st.text(min_size=1, max_size=10),
    initdata=st.none() | st.binary(min_size=0, max_size=64),
    evidence=st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["sev-snp", "nvidia-gpu", "simulated"])},
            optional={"report": st.text(max_size=20), "n": st.integers(-5, 5)},
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_round_trips(
    name: str, version: str, initdata: bytes | None, evidence: list[dict[str, Any]]
) -> None:
    claims = _claims(model=ModelClaim(name, "ef" * 32), runtime=RuntimeClaim(version, "img"))
    if initdata == b"":
        initdata = None  # base64 of nothing is "", which we refuse as ambiguous with null
    parsed = parse_attestation(_event(claims=claims, initdata=initdata, evidence=evidence))
    assert parsed.claims == claims
    assert parsed.initdata == initdata
    assert list(parsed.evidence) == evidence
    assert json.loads(canonical_claims_json(claims)) == claims.to_dict()


def _content(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "claims": _claims().to_dict(),
        "evidence": EVIDENCE,
        "initdata": None,
    }
    body.update(overrides)
    return body


def _tags() -> list[list[str]]:
    return [
        ["e", JOB],
        ["p", USER.public_key.hex()],
        ["provider", PROVIDER.public_key.hex()],
        ["tee", "simulated"],
        ["expiration", str(T + 300)],
    ]


def _signed(
    tags: list[list[str]],
    content: dict[str, Any] | str,
    kind: int = 7100,
    key: SecretKey = CONTAINER,
) -> Event:
    text = content if isinstance(content, str) else json.dumps(content)
    return UnsignedEvent(key.public_key.hex(), T, kind, tags, text).sign(key, aux_rand=AUX)


def _claims_with(**changes: Any) -> dict[str, Any]:
    claims = _claims().to_dict()
    claims.update(changes)
    return claims


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("nope", "not JSON"),
        (_content(extra=1), "exactly the keys"),
        ({"v": 1, "claims": {}, "evidence": []}, "exactly the keys"),
        (_content(v=2), "version must be 1"),
        (_content(v=True), "version must be 1"),
        (_content(v=1.0), "version must be 1"),
        (_content(claims=_claims_with(extra="x")), "claims must have exactly the keys"),
        (_content(claims=_claims_with(nonce="CD" * 32)), "claims.nonce must be 64 lowercase"),
        (_content(claims=_claims_with(job=1)), "claims.job must be 64"),
        (_content(claims=_claims_with(pubkey=USER.public_key.hex())), "not the key that signed"),
        (_content(claims=_claims_with(job="ee" * 32)), "differs from the 'e' tag"),
        (_content(claims=_claims_with(provider=USER.public_key.hex())), "'provider' tag"),
        (_content(claims=_claims_with(provider="00" * 32)), "not a valid public key"),
        (_content(claims=_claims_with(model={"name": "m"})), "claims.model must have"),
        (_content(claims=_claims_with(model={"name": "", "sha256": "ef" * 32})), "non-empty"),
        (_content(claims=_claims_with(runtime=[])), "claims.runtime must be a JSON object"),
        (_content(evidence=[]), "must not be empty"),
        (_content(evidence={}), "must be a list"),
        (_content(evidence=["x"]), "JSON object"),
        (_content(evidence=[{"type": "tpm"}]), "unknown or missing 'type'"),
        (_content(evidence=[{"report": "x"}]), "unknown or missing 'type'"),
        (_content(initdata=""), "base64 text or null"),
        (_content(initdata="a b"), "not canonical base64"),
        (_content(initdata="QQ"), "not canonical base64"),
        (_content(initdata="QR=="), "not canonical base64"),
    ],
)
def test_content_refusals(content: dict[str, Any] | str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_attestation(_signed(_tags(), content))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.remove(t[0]), "exactly one 'e' tag with a value, found 0"),
        (lambda t: t.append(["e", JOB]), "exactly one 'e' tag with a value, found 2"),
        (lambda t: t.remove(t[1]), "exactly one 'p' tag"),
        (lambda t: t.__setitem__(1, ["p", "zz"]), "'p' tag must be 64"),
        (lambda t: t.remove(t[2]), "exactly one 'provider' tag"),
        (lambda t: t.__setitem__(3, ["tee", ""]), "'tee' tag must be a non-empty"),
        (lambda t: t.remove(t[4]), "exactly one 'expiration' tag"),
        (lambda t: t.__setitem__(4, ["expiration", "soon"]), "'expiration' must be"),
    ],
)
def test_tag_refusals(mutate: Any, message: str) -> None:
    tags = _tags()
    mutate(tags)
    with pytest.raises(CodecError, match=message):
        parse_attestation(_signed(tags, _content()))


def test_refuses_another_kind() -> None:
    with pytest.raises(CodecError, match="not an attestation"):
        parse_attestation(_signed(_tags(), _content(), kind=7000))


def test_builder_refuses_non_json_evidence() -> None:
    with pytest.raises(CodecError, match="plain JSON"):
        _event(evidence=[{"type": "simulated", "report": b"bytes"}])
    with pytest.raises(CodecError, match="plain JSON"):
        _event(evidence=[{"type": "simulated", "x": float("nan")}])


def test_claims_validate_on_construction() -> None:
    with pytest.raises(CodecError, match=r"claims\.pubkey"):
        _claims(pubkey="xx")
    with pytest.raises(CodecError, match=r"claims\.model\.sha256"):
        ModelClaim("m", "00")
    with pytest.raises(CodecError, match=r"claims\.runtime\.image"):
        RuntimeClaim("1", "")


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.sampled_from([JOB, CONTAINER.public_key.hex(), "simulated"]),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "v",
                    "claims",
                    "evidence",
                    "initdata",
                    "pubkey",
                    "job",
                    "nonce",
                    "provider",
                    "model",
                    "runtime",
                    "name",
                    "sha256",
                    "type",
                    "x",
                ]
            ),
            c,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(body=_JSON)
def test_garbage_raises_only_our_errors(body: Any) -> None:
    with contextlib.suppress(NostrError):  # anything else fails the test
        parse_attestation(_signed(_tags(), json.dumps(body)))


@settings(max_examples=50, deadline=None)
@given(name=st.text(min_size=1, max_size=30), image=st.text(min_size=1, max_size=40))
def test_binding_agrees_with_the_independent_attestation_package(name: str, image: str) -> None:
    # The verifier computes the binding from the claims JSON it received; the container from
    # its Claims object: both must give the same bytes.
    claims = _claims(model=ModelClaim(name, "ef" * 32), runtime=RuntimeClaim("1", image))
    received = json.loads(_event(claims=claims).content)["claims"]
    assert binding.canonical_claims_json(received) == canonical_claims_json(claims)
    assert binding.report_data(CONTAINER.public_key.raw, received) == report_data(claims)
