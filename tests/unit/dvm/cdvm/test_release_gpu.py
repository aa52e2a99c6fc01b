"""dvm.cdvm.release_gpu: the ``gpu`` entries of a sev-snp+nvidia-h100 release (kind 37100).

Known answer of the wire form, the round trip through a signed event, the per-TEE rule, strict
parsing (every refusal a CodecError; hypothesis over mutated entries), and an entry built from
NVIDIA's RIM vectors (tests/vectors/gpu) through ``expected_from_rims``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.nvidia.reference import ExpectedGpuMeasurements, expected_from_rims
from attestation.nvidia.rim import parse_rim
from dvm.cdvm.refs import build_reference_event, parse_reference_event
from dvm.cdvm.release import GpuReference, RimRef, parse_release_content
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event
from dvm.nostr.keys import SecretKey

from .release_values import GPU, gpu_values, simulated_values, snp_values

PUBLISHER = SecretKey(b"\x07" * 32)
T = 1_700_000_000
TEE = "sev-snp+nvidia-h100"
VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "gpu" / "nvidia-hopper"


def _content(**gpu_entry: Any) -> str:
    body = json.loads(gpu_values().to_content())
    body["gpu"] = [{**body["gpu"][0], **gpu_entry}]
    return json.dumps(body)


def test_known_answer_gpu_entry() -> None:
    body = json.loads(gpu_values().to_content())
    assert body["gpu"] == [
        {
            "architecture": "GH100",
            "driver_version": "550.90.07",
            "vbios_version": "96.00.9f.00.01",
            "measurements": {"1": ["e1" * 48], "2": ["e2" * 48, "f2" * 48], "10": ["ea" * 48]},
            "rims": [
                {"id": "driver-rim-id", "sha256": "0d" * 32},
                {"id": "vbios-rim-id", "sha256": "0b" * 32},
            ],
        }
    ]
    assert '"gpu":[{"architecture":"GH100","driver_version":"550.90.07",' in (
        gpu_values().to_content()
    )
    # other kinds write no gpu key at all (their wire form is unchanged)
    assert "gpu" not in json.loads(snp_values().to_content())
    assert "gpu" not in json.loads(simulated_values().to_content())


def test_round_trip_through_a_signed_event() -> None:
    values = gpu_values(
        gpu=(
            GPU,
            GpuReference(
                "GH100", "550.90.07", "96.00.9f.00.02", ((3, ("03" * 48,)),), (RimRef("r"),)
            ),
        )
    )
    event = build_reference_event(values, publisher=PUBLISHER.public_key, created_at=T)
    parsed = parse_reference_event(
        Event.from_json(event.sign(PUBLISHER, aux_rand=bytes(32)).to_json())
    )
    assert parsed.values == values
    assert parsed.values.gpu[1].rims == (RimRef("r", None),)


def test_expected_is_what_the_verifier_compares() -> None:
    expected = GPU.expected()
    assert expected == ExpectedGpuMeasurements(
        blocks={1: (b"\xe1" * 48,), 2: (b"\xe2" * 48, b"\xf2" * 48), 10: (b"\xea" * 48,)},
        driver_version="550.90.07",
        vbios_version="96.00.9f.00.01",
        sources=("driver-rim-id", "vbios-rim-id"),
    )
    rims = GPU.rims
    assert GpuReference.from_expected(expected, architecture="GH100", rims=rims) == GPU


def test_an_entry_from_nvidias_rim_vectors() -> None:
    driver_xml = (VECTORS / "Driver_RIM_test_no_gpu.swidtag").read_bytes()
    vbios_xml = (VECTORS / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()
    driver, vbios = parse_rim(driver_xml), parse_rim(vbios_xml)
    rims = tuple(
        RimRef(rim.tag_id, hashlib.sha256(xml).hexdigest())
        for rim, xml in ((driver, driver_xml), (vbios, vbios_xml))
    )
    expected = expected_from_rims(driver, vbios)
    entry = GpuReference.from_expected(expected, architecture=driver.product, rims=rims)
    assert entry.key == ("GH100", "545.00", "96.00.5e.00.01")
    assert len(entry.blocks) == 12 + 21  # the active golden values of both RIMs
    values = gpu_values(gpu=(entry,))
    event = build_reference_event(values, publisher=PUBLISHER.public_key, created_at=T)
    parsed = parse_reference_event(event.sign(PUBLISHER, aux_rand=bytes(32)))
    assert parsed.values.gpu[0].expected() == expected


def test_per_tee_rule() -> None:
    with pytest.raises(CodecError, match="must state its GPU reference measurements"):
        gpu_values(gpu=())
    with pytest.raises(CodecError, match="has no GPU"):
        snp_values(gpu=(GPU,))
    with pytest.raises(CodecError, match="has no GPU"):
        simulated_values(gpu=(GPU,))
    with pytest.raises(CodecError, match="version twice"):
        gpu_values(gpu=(GPU, GPU))
    with pytest.raises(CodecError, match="GpuReference values"):
        gpu_values(gpu=("x",))
    with pytest.raises(CodecError, match="more than 64"):
        gpu_values(
            gpu=tuple(GpuReference("GH100", f"{i}.0", "1", GPU.blocks, GPU.rims) for i in range(65))
        )
    # the wire form must carry the key exactly for the GPU kind
    body = json.loads(gpu_values().to_content())
    del body["gpu"]
    with pytest.raises(CodecError, match="exactly the keys"):
        parse_release_content("r", TEE, json.dumps(body))
    body = json.loads(snp_values().to_content())
    body["gpu"] = []
    with pytest.raises(CodecError, match="exactly the keys"):
        parse_release_content("r", "sev-snp", json.dumps(body))


def test_from_expected_needs_both_versions() -> None:
    with pytest.raises(CodecError, match="driver_version and vbios_version"):
        GpuReference.from_expected(
            ExpectedGpuMeasurements(blocks={1: (b"\x01" * 48,)}, driver_version="1"),
            architecture="GH100",
            rims=(RimRef("r"),),
        )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"architecture": ""}, "architecture"),
        ({"architecture": 7}, "architecture"),
        ({"driver_version": "550.90.07 "}, "driver_version"),
        ({"vbios_version": "96.00.9F.00.01"}, "vbios_version"),  # versions are lowercase
        ({"measurements": []}, "keyed by block index"),
        ({"measurements": {}}, "at least one block"),
        ({"measurements": {"01": ["e1" * 48]}}, "decimal 1..254"),
        ({"measurements": {"0": ["e1" * 48]}}, "decimal 1..254"),
        ({"measurements": {"255": ["e1" * 48]}}, "outside 1..254"),
        ({"measurements": {"1": "e1" * 48}}, "list of hex strings"),  # the canonical form: lists
        ({"measurements": {"1": [1]}}, "list of hex strings"),
        ({"measurements": {"1": []}}, "1-64 values"),
        ({"measurements": {"1": ["E1" * 48]}}, "96 lowercase hex"),
        ({"measurements": {"1": ["e1" * 47]}}, "96 lowercase hex"),
        ({"measurements": {"1": ["e1" * 48, "e1" * 48]}}, "a value twice"),
        ({"measurements": {"1": ["e1" * 48] * 65}}, "1-64 values"),
        ({"rims": []}, "1-8 RIMs"),
        ({"rims": {}}, "1-8 RIMs"),
        ({"rims": [{"id": "r"}]}, "exactly the keys"),
        ({"rims": [{"id": "", "sha256": None}]}, "printable"),
        ({"rims": [{"id": "a\nb", "sha256": None}]}, "printable"),
        ({"rims": [{"id": "r", "sha256": "AB" * 32}]}, "64 lowercase hex"),
        ({"rims": [{"id": f"r{i}", "sha256": None} for i in range(9)]}, "1-8 RIMs"),
        ({"extra": 1}, "exactly the keys"),
    ],
)
def test_parser_refuses(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_release_content("r", TEE, _content(**entry))


def test_parser_refuses_a_non_object_entry() -> None:
    body = json.loads(gpu_values().to_content())
    body["gpu"] = ["x"]
    with pytest.raises(CodecError, match="exactly the keys"):
        parse_release_content("r", TEE, json.dumps(body))


@pytest.mark.parametrize(
    "blocks",
    [
        ((2, ("e1" * 48,)), (1, ("e1" * 48,))),  # unsorted
        ((1, ("e1" * 48,)), (1, ("e2" * 48,))),  # twice
        ((1, "e1" * 48),),  # values not a tuple
        ((1,),),
        (("1", ("e1" * 48,)),),
        [(1, ("e1" * 48,))],  # not a tuple
    ],
)
def test_values_refuse_bad_blocks(blocks: Any) -> None:
    with pytest.raises(CodecError):
        GpuReference("GH100", "1", "1", blocks, (RimRef("r"),))


def test_values_refuse_bad_rims() -> None:
    with pytest.raises(CodecError, match="RimRef values"):
        GpuReference("GH100", "1", "1", GPU.blocks, ("r",))  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="printable"):
        RimRef(7)  # type: ignore[arg-type]


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
_ENTRY = json.loads(gpu_values().to_content())["gpu"][0]
_PATHS = [
    ("architecture",),
    ("driver_version",),
    ("vbios_version",),
    ("measurements",),
    ("measurements", "1"),
    ("measurements", "2"),
    ("rims",),
]


def _mutate(path: tuple[str, ...], value: Any) -> str:
    entry = copy.deepcopy(_ENTRY)
    target = entry
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    body = json.loads(gpu_values().to_content())
    body["gpu"] = [entry]
    return json.dumps(body)


@settings(max_examples=300, deadline=None)
@given(
    content=st.one_of(
        st.builds(_mutate, st.sampled_from(_PATHS), _json),
        _json.map(lambda v: _content().replace('"gpu":[', '"gpu":[' + json.dumps(v) + ",", 1)),
    )
)
def test_garbage_raises_only_codec_error(content: str) -> None:
    with contextlib.suppress(CodecError):
        parse_release_content("r", TEE, content)


@settings(max_examples=100, deadline=None)
@given(
    blocks=st.dictionaries(
        st.integers(1, 254),
        st.lists(st.binary(min_size=48, max_size=48), min_size=1, max_size=3, unique=True),
        min_size=1,
        max_size=8,
    ),
    driver=st.from_regex(r"[0-9][0-9a-z.]{0,10}", fullmatch=True),
)
def test_round_trip_property(blocks: dict[int, list[bytes]], driver: str) -> None:
    expected = ExpectedGpuMeasurements(
        blocks={i: tuple(v) for i, v in blocks.items()},
        driver_version=driver,
        vbios_version="96.00.9f.00.01",
        sources=("d", "v"),
    )
    entry = GpuReference.from_expected(
        expected, architecture="GH100", rims=(RimRef("d"), RimRef("v"))
    )
    values = gpu_values(gpu=(entry,))
    assert parse_release_content(values.release, TEE, values.to_content()) == values
    assert values.gpu[0].expected() == expected
