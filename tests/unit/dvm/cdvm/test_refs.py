"""cdvm/1 kind 37100 reference values: codec, known answer, the per-TEE rules, garbage."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.snp.abi import Product
from attestation.snp.validate import TcbFloor
from dvm.cdvm.refs import (
    REFERENCE_VALUES_KIND,
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    ReferenceValues,
    SourceRef,
    build_reference_event,
    parse_reference_event,
    reference_address,
)
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey

PUBLISHER = SecretKey(b"\x07" * 32)
AUX = bytes(32)
T = 1_700_000_000
IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
INPUTS = LaunchInputs(
    ovmf_sha256="01" * 32,
    kernel_sha256="02" * 32,
    initrd_sha256="03" * 32,
    cmdline_sha256="04" * 32,
    guest_features=1,
)
SOURCE = SourceRef("https://github.com/example/confidential-dvm", "5" * 40)


def snp_values(**overrides: Any) -> ReferenceValues:
    fields: dict[str, Any] = {
        "release": "sev-snp/0.4.0",
        "tee": "sev-snp",
        "runtime_version": "0.4.0",
        "images": (IMAGE,),
        "measurements": (
            LaunchMeasurement("aa" * 48, Product.GENOA, 3, "EPYC-Genoa", INPUTS),
            LaunchMeasurement("bb" * 48, Product.MILAN, 3, "EPYC-Milan", INPUTS),
        ),
        "min_tcb": (
            (Product.GENOA, TcbFloor(bl=7, tee=0, snp=14, ucode=72)),
            (Product.MILAN, TcbFloor(bl=3, tee=0, snp=20, ucode=209)),
        ),
        "models": (ModelHash("gemma3-270m", "cd" * 32),),
        "recipe": "cdvm attest measure --ovmf OVMF.fd --kernel vmlinuz ... (docs/deploy.md §5)",
        "source": SOURCE,
    }
    fields.update(overrides)
    return ReferenceValues(**fields)


def simulated_values(**overrides: Any) -> ReferenceValues:
    fields: dict[str, Any] = {
        "release": "simulated/0.4.0",
        "tee": "simulated",
        "runtime_version": "0.4.0",
        "images": (),
        "measurements": (LaunchMeasurement("cc" * 48),),
        "min_tcb": (),
        "models": (ModelHash("identity", "dd" * 32),),
        "recipe": "cdvm attest measure --simulated --root CHECKOUT",
        "source": SOURCE,
    }
    fields.update(overrides)
    return ReferenceValues(**fields)


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


def test_known_answer_content() -> None:
    """The wire form, byte for byte: sorted keys, compact separators, nulls kept."""
    values = simulated_values()
    expected = (
        '{"measurements":[{"inputs":{"cmdline_sha256":null,"guest_features":null,'
        '"initrd_sha256":null,"kernel_sha256":null,"ovmf_sha256":null},'
        '"measurement":"' + "cc" * 48 + '","product":null,"vcpu_type":null,"vcpus":null}],'
        '"min_tcb":{},"models":[{"name":"identity","sha256":"' + "dd" * 32 + '"}],'
        '"recipe":"cdvm attest measure --simulated --root CHECKOUT",'
        '"runtime":{"images":[],"version":"0.4.0"},'
        '"source":{"commit":"' + "5" * 40 + '","repository":'
        '"https://github.com/example/confidential-dvm"},"tee":"simulated","v":1}'
    )
    assert values.to_content() == expected
    unsigned = build_reference_event(values, publisher=PUBLISHER.public_key, created_at=T)
    assert unsigned.tags == (
        ("d", "simulated/0.4.0"),
        ("tee", "simulated"),
        ("alt", "cdvm reference values: simulated release simulated/0.4.0"),
    )


def test_floor_for_and_address() -> None:
    values = snp_values()
    assert values.floor_for(Product.GENOA) == TcbFloor(bl=7, tee=0, snp=14, ucode=72)
    assert values.floor_for(Product.TURIN) is None
    assert reference_address("ab" * 32, "r") == "37100:" + "ab" * 32 + ":r"


def test_product_given_as_text_is_normalised() -> None:
    entry = LaunchMeasurement("aa" * 48, "Genoa", 3, "EPYC-Genoa", INPUTS)  # type: ignore[arg-type]
    assert entry.product is Product.GENOA


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": ()}, "must name its job image"),
        ({"images": ("registry.example/cdvm/job:latest",)}, "digest references"),
        ({"images": (IMAGE, IMAGE)}, "twice"),
        (
            {"measurements": (LaunchMeasurement("aa" * 48, None, 3, "EPYC-Genoa", INPUTS),)},
            "product, vCPU count and type",
        ),
        (
            {"measurements": (LaunchMeasurement("aa" * 48, Product.GENOA, None, "x", INPUTS),)},
            "product, vCPU count and type",
        ),
        (
            {
                "measurements": (
                    LaunchMeasurement(
                        "aa" * 48,
                        Product.GENOA,
                        3,
                        "EPYC-Genoa",
                        dataclasses.replace(INPUTS, kernel_sha256=None),
                    ),
                )
            },
            "must state inputs ['kernel_sha256']",
        ),
        ({"min_tcb": ((Product.GENOA, TcbFloor(bl=7)),)}, "floor for Milan"),
        (
            {
                "min_tcb": (
                    (Product.GENOA, TcbFloor(bl=7)),
                    (Product.GENOA, TcbFloor(bl=8)),
                    (Product.MILAN, TcbFloor(bl=1)),
                )
            },
            "product twice",
        ),
        ({"measurements": ()}, "must not be empty"),
        (
            {"models": (ModelHash("m", "cd" * 32), ModelHash("m", "cd" * 32))},
            "a model twice",
        ),
        ({"tee": "tdx"}, "tee must be one of"),
        ({"source": SourceRef("https://example.org/x", None)}, "must name its source commit"),
        ({"release": ""}, "release"),
        ({"release": "a\x00b"}, "control characters"),
        ({"recipe": ""}, "recipe"),
        ({"runtime_version": "x" * 200}, "runtime.version"),
    ],
)
def test_sev_snp_rules(change: dict[str, Any], message: str) -> None:
    with pytest.raises(CodecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        snp_values(**change)


def test_simulated_rules() -> None:
    uncommitted = simulated_values(source=SourceRef("a development tree", None))
    event = signed(build_reference_event(uncommitted, publisher=PUBLISHER.public_key, created_at=T))
    assert parse_reference_event(event).values.source.commit is None
    with pytest.raises(CodecError, match="no job image"):
        simulated_values(images=(IMAGE,))
    twice = (LaunchMeasurement("cc" * 48), LaunchMeasurement("cc" * 48))
    with pytest.raises(CodecError, match="entry twice"):
        simulated_values(measurements=twice)
    # a simulated release may still state a floor; it is checked like any other
    assert simulated_values(min_tcb=((Product.GENOA, TcbFloor(snp=1)),)).floor_for(Product.GENOA)


@pytest.mark.parametrize(
    "build",
    [
        lambda: LaunchMeasurement("AA" * 48),
        lambda: LaunchMeasurement("aa" * 47),
        lambda: LaunchMeasurement("aa" * 48, vcpus=0),
        lambda: LaunchMeasurement("aa" * 48, vcpus=True),  # a bool is not a count
        lambda: LaunchMeasurement("aa" * 48, product="Bergamo"),  # type: ignore[arg-type]
        lambda: LaunchMeasurement("aa" * 48, vcpu_type=""),
        lambda: LaunchMeasurement("aa" * 48, inputs=None),  # type: ignore[arg-type]
        lambda: LaunchInputs(ovmf_sha256="xyz"),
        lambda: LaunchInputs(guest_features=-1),
        lambda: ModelHash("", "cd" * 32),
        lambda: ModelHash("m", "CD" * 32),
        lambda: SourceRef("repo", "5" * 39),
        lambda: SourceRef("", "5" * 40),
        lambda: simulated_values(source="x"),
        lambda: simulated_values(models=tuple(ModelHash(f"m{i}", "cd" * 32) for i in range(65))),
    ],
)
def test_values_refuse_bad_fields(build: Any) -> None:
    with pytest.raises(CodecError):
        build()


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
