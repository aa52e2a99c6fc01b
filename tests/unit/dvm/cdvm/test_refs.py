"""cdvm/1 kind 37100 reference values: codec, known answer, the per-TEE rules, garbage."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.refs import (
    REFERENCE_VALUES_KIND,
    LaunchMeasurement,
    ModelHash,
    build_reference_event,
    parse_reference_event,
)
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey

from .release_values import INPUTS, simulated_values, snp_values

PUBLISHER = SecretKey(b"\x07" * 32)
AUX = bytes(32)
T = 1_700_000_000


def signed(unsigned: UnsignedEvent, key: SecretKey = PUBLISHER) -> Event:
    return unsigned.sign(key, aux_rand=AUX)


def event_with(tags: tuple[tuple[str, ...], ...], content: str) -> Event:
    unsigned = UnsignedEvent(PUBLISHER.public_key.hex(), T, REFERENCE_VALUES_KIND, tags, content)
    return signed(unsigned)


def test_round_trip_sev_snp_and_simulated() -> None:
    for values in (snp_values(), simulated_values()):
        event = signed(build_reference_event(values, publisher=PUBLISHER.public_key, created_at=T))
        assert event.kind == REFERENCE_VALUES_KIND
        assert event.is_addressable
        parsed = parse_reference_event(Event.from_json(event.to_json()))
        assert parsed.values == values
        assert parsed.publisher == PUBLISHER.public_key.hex()
        assert parsed.created_at == T
        assert parsed.address == f"37100:{PUBLISHER.public_key.hex()}:{values.release}"
        assert event.first_tag("d") == ("d", values.release)
        assert event.first_tag("tee") == ("tee", values.tee)


def _content(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(snp_values().to_content())
    body.update(overrides)
    return body


SNP_TAGS = (("d", "sev-snp/0.4.0"), ("tee", "sev-snp"))


@pytest.mark.parametrize(
    ("tags", "body", "message"),
    [
        (SNP_TAGS, _content(v=2), "version"),
        (SNP_TAGS, _content(v=True), "version"),
        (SNP_TAGS, _content(extra=1), "exactly the keys"),
        (SNP_TAGS, _content(tee="simulated"), "differs from the 'tee' tag"),
        ((("tee", "sev-snp"),), _content(), "'d'"),
        ((("d", "a"), ("d", "b"), ("tee", "sev-snp")), _content(), "'d'"),
        ((("d", "a"),), _content(), "'tee'"),
        (SNP_TAGS, _content(runtime={"version": "1", "images": [1]}), "strings"),
        (SNP_TAGS, _content(runtime={"version": "1"}), "exactly the keys"),
        (SNP_TAGS, _content(min_tcb=[]), "keyed by product"),
        (SNP_TAGS, _content(min_tcb={"Genoa": {"bl": 1}}), "exactly the keys"),
        (
            SNP_TAGS,
            _content(min_tcb={"Genoa": dict.fromkeys(("bl", "tee", "snp", "ucode", "fmc"))}),
            "at least one component",
        ),
        (
            SNP_TAGS,
            _content(
                min_tcb={"Genoa": {"bl": 256, "tee": None, "snp": None, "ucode": None, "fmc": None}}
            ),
            r"\[0, 255\]",
        ),
        (SNP_TAGS, _content(min_tcb={"Rome": {}}), "must be one of"),
        (SNP_TAGS, _content(models="x"), "list"),
        (SNP_TAGS, _content(models=[{"name": "m"}]), "exactly the keys"),
        (SNP_TAGS, _content(measurements=[{"measurement": 1}]), "exactly the keys"),
        (SNP_TAGS, _content(source={"repository": "r", "commit": 5}), "source.commit"),
        (SNP_TAGS, "[]", "JSON object"),
        (SNP_TAGS, "{", "not JSON"),
        (SNP_TAGS, "x" * 40000, "over"),
    ],
)
def test_parser_refuses(tags: Any, body: Any, message: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(CodecError, match=message):
        parse_reference_event(event_with(tags, content))


def test_measurement_entry_wire_types() -> None:
    body = _content()
    entry = body["measurements"][0]
    for key, bad in (("measurement", 5), ("product", 5), ("vcpus", "3"), ("vcpu_type", 3)):
        broken = dict(entry, **{key: bad})
        with pytest.raises(CodecError):
            parse_reference_event(event_with(SNP_TAGS, json.dumps(_content(measurements=[broken]))))
    inputs = dict(entry["inputs"], guest_features="1")
    broken = dict(entry, inputs=inputs)
    with pytest.raises(CodecError):
        parse_reference_event(event_with(SNP_TAGS, json.dumps(_content(measurements=[broken]))))


def test_wrong_kind_refused() -> None:
    unsigned = UnsignedEvent(
        PUBLISHER.public_key.hex(), T, 30078, SNP_TAGS, snp_values().to_content()
    )
    with pytest.raises(CodecError, match="not reference values"):
        parse_reference_event(signed(unsigned))


def test_builder_refuses_oversized_content() -> None:
    big = simulated_values(
        recipe="r" * 8000,
        measurements=tuple(LaunchMeasurement(f"{i:02x}" * 48, inputs=INPUTS) for i in range(64)),
        models=tuple(ModelHash("m" * 250 + str(i), "cd" * 32) for i in range(64)),
    )
    with pytest.raises(CodecError, match="over"):
        build_reference_event(big, publisher=PUBLISHER.public_key, created_at=T)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


def _mutated_content() -> st.SearchStrategy[dict[str, Any]]:
    base = json.loads(snp_values().to_content())
    keys = sorted(base)
    return st.builds(lambda key, value: {**base, key: value}, st.sampled_from(keys), _json)


@settings(max_examples=300, deadline=None)
@given(
    tags=st.lists(
        st.lists(
            st.sampled_from(["d", "tee", "alt", "x"]) | st.text(max_size=4), min_size=1, max_size=3
        ),
        max_size=5,
    ),
    content=st.one_of(
        _json.map(json.dumps), st.text(max_size=60), _mutated_content().map(json.dumps)
    ),
)
def test_garbage_raises_only_codec_error(tags: list[list[str]], content: str) -> None:
    try:
        event = event_with(tuple(tuple(t) for t in tags), content)
    except NostrError:
        return  # the event itself is refused before parsing
    with contextlib.suppress(CodecError):
        parse_reference_event(event)


@settings(max_examples=100, deadline=None)
@given(
    release=st.text(
        st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1, max_size=40
    ),
    measurements=st.lists(st.binary(min_size=48, max_size=48), min_size=1, max_size=4, unique=True),
    models=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=10).filter(lambda s: all(ord(c) >= 0x20 for c in s)),
            st.binary(min_size=32, max_size=32),
        ),
        max_size=4,
        unique=True,
    ),
)
def test_round_trip_property(
    release: str, measurements: list[bytes], models: list[tuple[str, bytes]]
) -> None:
    values = simulated_values(
        release=release,
        measurements=tuple(LaunchMeasurement(m.hex()) for m in measurements),
        models=tuple(ModelHash(name, digest.hex()) for name, digest in models),
    )
    event = signed(build_reference_event(values, publisher=PUBLISHER.public_key, created_at=T))
    assert parse_reference_event(Event.from_json(event.to_json())).values == values
