"""dvm.cdvm.release: the values of a kind-37100 event, their wire form and the per-TEE rules.

The event around them (tags, signing, parsing from the wire) is tests/unit/dvm/cdvm/test_refs.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from attestation.snp.abi import Product
from attestation.snp.validate import TcbFloor
from dvm.cdvm.refs import build_reference_event, parse_reference_event, reference_address
from dvm.cdvm.release import LaunchInputs, LaunchMeasurement, ModelHash, SourceRef
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey

from .release_values import IMAGE, INPUTS, simulated_values, snp_values

PUBLISHER = SecretKey(b"\x07" * 32)
AUX = bytes(32)
T = 1_700_000_000


def signed(unsigned: UnsignedEvent, key: SecretKey = PUBLISHER) -> Event:
    return unsigned.sign(key, aux_rand=AUX)


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
