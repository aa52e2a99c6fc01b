"""dvm.client.pins: every value pinned or refused, by flag or by K trusted publishers, TCB floors.

The references are real signed kind-37100 events (dvm.cdvm.refs) from keys minted here; the GPU
reports are a fake H100's (tests/unit/dvm/client/fake_gpu.py, minted here) through the real
verifier.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.snp.abi import Product, TcbVersion
from attestation.snp.validate import TcbFloor
from dvm.cdvm.refs import (
    GpuReference,
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    PublishedReference,
    ReferenceValues,
    RimRef,
    SourceRef,
    build_reference_event,
    parse_reference_event,
)
from dvm.client.errors import OptionsError
from dvm.client.pins import (
    FLAGS,
    Observed,
    PinKind,
    Pins,
    latest_references,
    match_pins,
    required_values,
)
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub

from .fake_gpu import DRIVER, VBIOS, mint_gpu

ALICE, BOB, CAROL = (SecretKey(bytes([i]) * 32) for i in (0x11, 0x12, 0x13))
MEAS = "aa" * 48
OTHER_MEAS = "bb" * 48
MODEL = "cd" * 32
IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
TCB = TcbVersion(bl=10, tee=0, snp=23, ucode=84)
INPUTS = LaunchInputs("01" * 32, "02" * 32, None, "04" * 32, 1)
SOURCE = SourceRef("https://example.org/cdvm.git", "5" * 40)
GPU_TEE = "sev-snp+nvidia-h100"
A, B, C, D = (bytes([b]) * 48 for b in (0xA1, 0xB2, 0xC3, 0xD4))
GPU_ENTRY = GpuReference(
    "GH100",
    DRIVER,
    VBIOS,
    ((1, (A.hex(),)), (2, (B.hex(), C.hex()))),
    (RimRef("driver-rim"), RimRef("vbios-rim")),
)
FAKE_GPU = mint_gpu()
GPU_NONCE = b"\x42" * 32
GPU_OK = FAKE_GPU.verified(GPU_NONCE, {1: A, 2: C, 3: D})  # block 3 is not compared
GPU_BAD = FAKE_GPU.verified(GPU_NONCE, {2: D, 3: D})  # block 1 absent, block 2 differs
GPUS_SEEN = f"1 GPU(s): driver {DRIVER}, VBIOS {VBIOS}"


def npub(key: SecretKey) -> str:
    return encode_npub(key.public_key)


def hexkey(key: SecretKey) -> str:
    return key.public_key.hex()


def reference(
    key: SecretKey,
    *,
    tee: str = "simulated",
    measurement: str = MEAS,
    product: Product | None = None,
    model: str = MODEL,
    image: str = IMAGE,
    floor: TcbFloor | None = None,
    release: str = "r1",
    created_at: int = 1000,
    gpu: tuple[GpuReference, ...] = (GPU_ENTRY,),
) -> PublishedReference:
    snp = tee != "simulated"
    entry_product = product or (Product.GENOA if snp else None)
    min_tcb: tuple[tuple[Product, TcbFloor], ...] = ()
    if floor is not None and entry_product is not None:
        min_tcb = ((entry_product, floor),)
    elif snp:
        min_tcb = ((entry_product, TcbFloor(snp=1)),)  # type: ignore[assignment]
    values = ReferenceValues(
        release=release,
        tee=tee,
        runtime_version="0.4.0",
        images=(image,) if snp else (),
        measurements=(
            LaunchMeasurement(measurement, entry_product, 3, "EPYC-Genoa", INPUTS)
            if snp
            else LaunchMeasurement(measurement, product),
        ),
        min_tcb=min_tcb,
        models=(ModelHash("m", model),),
        recipe="recompute",
        source=SOURCE,
        gpu=gpu if tee == GPU_TEE else (),
    )
    unsigned = build_reference_event(values, publisher=key.public_key, created_at=created_at)
    return parse_reference_event(unsigned.sign(key, aux_rand=bytes(32)))


def observed(tee: str = "simulated", **kw: Any) -> Observed:
    fields: dict[str, Any] = {
        "tee": tee,
        "measurement": MEAS,
        "product": Product.GENOA,
        "reported_tcb": TCB,
        "model_sha256": MODEL,
        "image": IMAGE if tee != "simulated" else None,
        "gpus": (GPU_OK,) if tee == GPU_TEE else (),
    }
    fields.update(kw)
    return Observed(**fields)


def trusting(*refs: PublishedReference, keys: tuple[SecretKey, ...] = (), **kw: Any) -> Pins:
    trusted = {hexkey(k) for k in keys} or {r.publisher for r in refs}
    return Pins(references=refs, trusted_publishers=frozenset(trusted), **kw)


def test_required_values_per_tee() -> None:
    assert required_values("simulated") == (PinKind.MEASUREMENT, PinKind.MODEL)
    assert required_values("sev-snp") == (PinKind.MEASUREMENT, PinKind.IMAGE, PinKind.MODEL)
    assert required_values(GPU_TEE) == (*required_values("sev-snp"), PinKind.GPU)


@pytest.mark.parametrize("tee", ["simulated", "sev-snp", "sev-snp+nvidia-h100"])
def test_no_pins_refuse_every_value_with_the_remedy(tee: str) -> None:
    report = match_pins(Pins(), observed(tee))
    assert not report.tcb_floor_checked
    assert [v.pinned for v in report.values] == [False] * len(required_values(tee))
    assert len(report.reasons) == len(required_values(tee))
    measurement, *_ = report.reasons
    assert measurement.startswith(f"measurement {MEAS} is not pinned: you trust no reference")
    assert f"--measurement {MEAS}" in measurement
    assert "cdvm trust add NPUB" in measurement
    assert "--accept-unpinned measurement" in measurement
    assert any(f"--model-sha256 {MODEL}" in r for r in report.reasons)
    if tee != "simulated":
        assert any(f"--trust-image {IMAGE}" in r for r in report.reasons)
    if tee == GPU_TEE:
        assert report.reasons[-1].startswith(f"GPU measurements ({GPUS_SEEN}) are not pinned")
        assert "--gpu-measurements FILE" in report.reasons[-1]
        assert "--accept-unpinned gpu" in report.reasons[-1]
    assert report.checks == ()


@pytest.mark.parametrize("tee", ["simulated", "sev-snp"])
def test_explicit_flags_pin_each_value(tee: str) -> None:
    pins = Pins(
        measurements=frozenset({MEAS, OTHER_MEAS}),
        model_sha256s=frozenset({MODEL}),
        images=frozenset({IMAGE}),
    )
    report = match_pins(pins, observed(tee))
    assert report.reasons == ()
    assert all(v.pinned and v.by_flag and not v.publishers for v in report.values)
    assert f"measurement is pinned with --measurement: {MEAS}" in report.checks
    assert f"model sha256 is pinned with --model-sha256: {MODEL}" in report.checks
    if tee == "sev-snp":
        assert f"image is pinned with --trust-image: {IMAGE}" in report.checks
        assert any("only the policy's min_tcb" in n for n in report.notes)
    else:
        assert report.notes == ()


@pytest.mark.parametrize("kind", [PinKind.MEASUREMENT, PinKind.IMAGE, PinKind.MODEL])
def test_each_explicit_pin_is_needed(kind: PinKind) -> None:
    every = {"measurements": {MEAS}, "images": {IMAGE}, "model_sha256s": {MODEL}}
    field = {PinKind.MEASUREMENT: "measurements", PinKind.IMAGE: "images"}.get(
        kind, "model_sha256s"
    )
    every[field] = {"00" * 48 if kind is PinKind.MEASUREMENT else "00" * 32}
    if kind is PinKind.IMAGE:
        every[field] = {IMAGE.replace("ab", "cd")}
    report = match_pins(Pins(**{k: frozenset(v) for k, v in every.items()}), observed("sev-snp"))
    assert len(report.reasons) == 1
    assert report.reasons[0].startswith(
        {"measurement": "measurement ", "image": "image ", "model": "model sha256 "}[kind.value]
    )
    assert FLAGS[kind] in report.reasons[0]


@pytest.mark.parametrize("tee", ["simulated", "sev-snp", "sev-snp+nvidia-h100"])
def test_a_trusted_publisher_pins_every_value_and_is_named(tee: str) -> None:
    ref = reference(ALICE, tee=tee)
    report = match_pins(trusting(ref), observed(tee))
    assert report.reasons == ()
    for pin in report.values:
        assert pin.pinned
        assert not pin.by_flag
        assert pin.publishers == (hexkey(ALICE),)
        assert pin.releases == ("r1",)
    assert (
        f"measurement matches reference values published by {npub(ALICE)} (release r1): {MEAS}"
        in report.checks
    )
    assert any(
        c.startswith(f"model sha256 matches reference values published by {npub(ALICE)}")
        for c in report.checks
    )
    if tee != "simulated":
        assert any(c.startswith("image matches reference values") for c in report.checks)
        assert any("meets the minimum Genoa TCB stated by" in c for c in report.checks)
    if tee == GPU_TEE:
        assert (
            f"GPU measurements match reference values published by {npub(ALICE)} (release r1): "
            f"{GPUS_SEEN}" in report.checks
        )


def test_flag_and_publisher_together() -> None:
    ref = reference(ALICE)
    report = match_pins(trusting(ref, measurements=frozenset({MEAS})), observed())
    pin = report.pin(PinKind.MEASUREMENT)
    assert pin is not None
    assert pin.by_flag
    assert pin.publishers == (hexkey(ALICE),)
    assert (
        f"measurement is pinned with --measurement and matches reference values published by "
        f"{npub(ALICE)} (release r1): {MEAS}" in report.checks
    )
    assert report.pin(PinKind.IMAGE) is None  # simulated jobs run no image


def test_an_untrusted_publisher_is_ignored() -> None:
    ref = reference(ALICE)
    report = match_pins(trusting(ref, keys=(BOB,)), observed())
    assert len(report.reasons) == 2
    assert "none of your 1 trusted publisher(s) published reference values" in report.reasons[0]
    # and with no trusted key at all
    report = match_pins(Pins(references=(ref,)), observed())
    assert "you trust no reference-value publisher" in report.reasons[0]


def test_a_reference_that_disagrees_refuses_that_value_only() -> None:
    ref = reference(ALICE, measurement=OTHER_MEAS)
    report = match_pins(trusting(ref), observed())
    assert len(report.reasons) == 1
    assert report.reasons[0].startswith(f"measurement {MEAS} is not pinned")
    assert (
        "the reference values of 1 trusted publisher(s) for this TEE name other"
        in report.reasons[0]
    )
    model = report.pin(PinKind.MODEL)
    assert model is not None
    assert model.pinned


def test_a_reference_for_another_tee_does_not_vouch() -> None:
    ref = reference(ALICE, tee="sev-snp")
    report = match_pins(trusting(ref), observed("simulated"))
    assert len(report.reasons) == 2
    report = match_pins(trusting(ref), observed(GPU_TEE))
    assert len(report.reasons) == 4


def test_a_measurement_for_another_product_does_not_vouch() -> None:
    ref = reference(ALICE, tee="sev-snp", product=Product.MILAN)
    report = match_pins(trusting(ref), observed("sev-snp"))
    assert [r.split(" ", 1)[0] for r in report.reasons] == ["measurement"]
    # a simulated entry without a product vouches for any product
    ref = reference(ALICE)
    assert match_pins(trusting(ref), observed(product=Product.TURIN)).reasons == ()


@pytest.mark.parametrize(
    ("k", "vouching", "ok"),
    [(1, 1, True), (2, 1, False), (2, 2, True), (3, 2, False), (2, 3, True), (3, 3, True)],
)
def test_require_publishers_threshold(k: int, vouching: int, ok: bool) -> None:
    refs = [reference(key) for key in (ALICE, BOB, CAROL)[:vouching]]
    report = match_pins(trusting(*refs, require_publishers=k), observed())
    assert (report.reasons == ()) is ok
    if not ok:
        assert f"{vouching} trusted publisher(s) vouch for it" in report.reasons[0]
        assert f"{k} required (--require-publishers)" in report.reasons[0]
        assert npub(ALICE) in report.reasons[0]


def test_threshold_counts_publishers_not_events() -> None:
    two_releases = (reference(ALICE, release="a"), reference(ALICE, release="b"))
    report = match_pins(trusting(*two_releases, require_publishers=2), observed())
    assert len(report.reasons) == 2
    assert report.values[0].releases == ("a", "b")


def test_a_flag_pins_even_below_the_threshold() -> None:
    pins = trusting(reference(ALICE), require_publishers=2, measurements=frozenset({MEAS}))
    report = match_pins(pins, observed())
    assert [r.split(" ", 1)[0] for r in report.reasons] == ["model"]


@pytest.mark.parametrize(
    ("floor", "ok"),
    [
        (TcbFloor(bl=10, tee=0, snp=23, ucode=84), True),
        (TcbFloor(snp=22), True),
        (TcbFloor(snp=24), False),
        (TcbFloor(ucode=85), False),
        (TcbFloor(bl=11, ucode=200), False),
        (TcbFloor(fmc=1), False),  # Genoa has no FMC: the floor cannot be shown to hold
    ],
)
def test_tcb_must_meet_the_reference_minimum(floor: TcbFloor, ok: bool) -> None:
    ref = reference(ALICE, tee="sev-snp", floor=floor)
    report = match_pins(trusting(ref), observed("sev-snp"))
    assert report.tcb_floor_checked
    assert (report.reasons == ()) is ok
    if not ok:
        assert report.reasons[0].startswith("reported TCB (bl=10 tee=0 snp=23 ucode=84) is below")
        assert npub(ALICE) in report.reasons[0]


def test_every_vouching_floor_applies_the_strictest_wins() -> None:
    lax = reference(ALICE, tee="sev-snp", floor=TcbFloor(snp=1))
    strict = reference(BOB, tee="sev-snp", floor=TcbFloor(snp=99))
    report = match_pins(trusting(lax, strict), observed("sev-snp"))
    assert len(report.reasons) == 1
    assert npub(BOB) in report.reasons[0]
    # a floor from a reference that does not vouch for the measurement does not apply
    other = reference(BOB, tee="sev-snp", floor=TcbFloor(snp=99), measurement=OTHER_MEAS)
    assert match_pins(trusting(lax, other), observed("sev-snp")).reasons == ()


def test_simulated_reference_floor_is_checked_too() -> None:
    ref = reference(ALICE, product=Product.GENOA, floor=TcbFloor(snp=50))
    report = match_pins(trusting(ref), observed())
    assert any("below the minimum Genoa TCB" in r for r in report.reasons)


def _kind_of(reason: str) -> str:
    return "gpu" if reason.startswith("GPU measurements") else reason.split(" ", 1)[0]


@pytest.mark.parametrize(
    "accepted", [set(c) for n in range(5) for c in itertools.combinations(list(PinKind), n)]
)
def test_accept_unpinned_turns_a_refusal_into_a_loud_note(accepted: set[PinKind]) -> None:
    report = match_pins(Pins(accept_unpinned=frozenset(accepted)), observed(GPU_TEE))
    refused = {_kind_of(r) for r in report.reasons}
    assert refused == {k.value for k in PinKind} - {k.value for k in accepted}
    assert len([n for n in report.notes if n.startswith("UNPINNED")]) == len(accepted)
    for pin in report.values:
        assert pin.accepted_unpinned is (pin.kind in accepted)
        assert not pin.pinned


def test_latest_references_keeps_the_newest_per_address() -> None:
    old = reference(ALICE, measurement=OTHER_MEAS, created_at=1000)
    new = reference(ALICE, created_at=2000)
    other_release = reference(ALICE, release="r2", created_at=500)
    bob = reference(BOB, created_at=10)
    kept = latest_references([new, old, other_release, bob])
    assert {(r.publisher, r.values.release, r.created_at) for r in kept} == {
        (hexkey(ALICE), "r1", 2000),
        (hexkey(ALICE), "r2", 500),
        (hexkey(BOB), "r1", 10),
    }
    assert latest_references([old, new]) == latest_references([new, old])
    # equal created_at: the lowest id wins (NIP-01)
    a = reference(ALICE, created_at=3000)
    b = reference(ALICE, measurement=OTHER_MEAS, created_at=3000)
    winner = min((a, b), key=lambda r: r.event.id)
    assert latest_references([a, b]) == (winner,) == latest_references([b, a])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"measurements": frozenset({"AA" * 48})}, "--measurement"),
        ({"measurements": frozenset({"aa" * 32})}, "--measurement"),
        ({"model_sha256s": frozenset({"xyz"})}, "--model-sha256"),
        ({"images": frozenset({"registry.example/x:latest"})}, "--trust-image"),
        ({"trusted_publishers": frozenset({"00" * 32})}, "not a key"),
        ({"require_publishers": 0}, "--require-publishers"),
        ({"require_publishers": True}, "--require-publishers"),
        ({"accept_unpinned": frozenset({"everything"})}, "--accept-unpinned"),
    ],
)
def test_bad_pins_are_options_errors(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        Pins(**kw)


def test_observed_is_a_plain_value() -> None:
    assert dataclasses.replace(observed(), image="x").image == "x"


# --- property: match_pins against a direct oracle, over every mix of references and pins ------

OTHER_MODEL = "ce" * 32
OTHER_IMAGE = "registry.example/cdvm/job@sha256:" + "ef" * 32
_POOL = [
    reference(
        key,
        tee=tee,
        measurement=meas,
        model=model,
        image=image,
        release=f"{tee}-{meas[:2]}-{model[:2]}-{image[-2:]}",
        floor=TcbFloor(snp=1),
    )
    for key in (ALICE, BOB, CAROL)
    for tee in ("simulated", "sev-snp")
    for meas in (MEAS, OTHER_MEAS)
    for model in (MODEL, OTHER_MODEL)
    for image in (IMAGE, OTHER_IMAGE)
]
_KEYS = [hexkey(k) for k in (ALICE, BOB, CAROL)]


def _oracle(pins: Pins, seen: Observed) -> set[PinKind]:
    """The kinds that must be refused, computed directly from the rules."""
    refused = set()
    for kind in required_values(seen.tee):
        value = {
            PinKind.MEASUREMENT: seen.measurement,
            PinKind.IMAGE: seen.image,
            PinKind.MODEL: seen.model_sha256,
        }[kind]
        stated = {
            PinKind.MEASUREMENT: lambda r: {m.measurement for m in r.values.measurements},
            PinKind.IMAGE: lambda r: set(r.values.images),
            PinKind.MODEL: lambda r: {m.sha256 for m in r.values.models},
        }[kind]
        flags = {
            PinKind.MEASUREMENT: pins.measurements,
            PinKind.IMAGE: pins.images,
            PinKind.MODEL: pins.model_sha256s,
        }[kind]
        vouchers = {
            r.publisher
            for r in pins.references
            if r.publisher in pins.trusted_publishers
            and r.values.tee == seen.tee
            and value in stated(r)
        }
        pinned = value in flags or len(vouchers) >= pins.require_publishers
        if not pinned and kind not in pins.accept_unpinned:
            refused.add(kind)
    return refused


@settings(max_examples=400, deadline=None)
@given(
    refs=st.lists(st.sampled_from(_POOL), max_size=8, unique_by=lambda r: r.event.id),
    trusted=st.sets(st.sampled_from(_KEYS)),
    k=st.integers(1, 3),
    tee=st.sampled_from(["simulated", "sev-snp"]),
    flags=st.sets(st.sampled_from(list(PinKind))),
    accept=st.sets(st.sampled_from(list(PinKind))),
)
def test_match_pins_agrees_with_the_rules(
    refs: list[PublishedReference],
    trusted: set[str],
    k: int,
    tee: str,
    flags: set[PinKind],
    accept: set[PinKind],
) -> None:
    pins = Pins(
        measurements=frozenset({MEAS}) if PinKind.MEASUREMENT in flags else frozenset(),
        images=frozenset({IMAGE}) if PinKind.IMAGE in flags else frozenset(),
        model_sha256s=frozenset({MODEL}) if PinKind.MODEL in flags else frozenset(),
        references=tuple(refs),
        trusted_publishers=frozenset(trusted),
        require_publishers=k,
        accept_unpinned=frozenset(accept),
    )
    seen = observed(tee)
    report = match_pins(pins, seen)
    refused = _oracle(pins, seen)
    assert {PinKind(r.split(" ", 1)[0]) for r in report.reasons} == refused
    assert len(report.reasons) == len(refused)  # every floor here is met
    for pin in report.values:
        assert set(pin.publishers) <= trusted
        assert pin.pinned is (pin.kind not in refused and not pin.accepted_unpinned)


# --- GPU measurements (sev-snp+nvidia-h100) ---------------------------------------------------

EVERY_OTHER: dict[str, Any] = {
    "measurements": frozenset({MEAS}),
    "images": frozenset({IMAGE}),
    "model_sha256s": frozenset({MODEL}),
}


def test_gpu_measurements_pinned_by_flag() -> None:
    pins = Pins(**EVERY_OTHER, gpu_measurements=(GPU_ENTRY.expected(),))
    report = match_pins(pins, observed(GPU_TEE))
    assert report.reasons == ()
    pin = report.pin(PinKind.GPU)
    assert pin is not None
    assert (pin.by_flag, pin.publishers, pin.value) == (True, (), GPUS_SEEN)
    assert f"GPU measurements are pinned with --gpu-measurements: {GPUS_SEEN}" in report.checks
    # any one of several expectations will do, per GPU
    other = dataclasses.replace(GPU_ENTRY.expected(), driver_version="545.00")
    assert (
        match_pins(
            dataclasses.replace(pins, gpu_measurements=(other, GPU_ENTRY.expected())),
            observed(GPU_TEE),
        ).reasons
        == ()
    )


def test_gpu_flag_mismatch_is_refused_block_by_block() -> None:
    pins = Pins(**EVERY_OTHER, gpu_measurements=(GPU_ENTRY.expected(),))
    report = match_pins(pins, observed(GPU_TEE, gpus=(GPU_BAD,)))
    assert len(report.reasons) == 1
    reason = report.reasons[0]
    assert reason.startswith(
        f"GPU measurements ({GPUS_SEEN}) are not pinned: you trust no reference-value publisher; "
        "GPU 0 against --gpu-measurements (driver-rim, vbios-rim): measurement block 1: saw "
        f"absent, wanted {A.hex()[:16]}…; measurement block 2: saw {D.hex()[:16]}…, wanted "
        f"{B.hex()[:16]}… or {C.hex()[:16]}…. Pin them with --gpu-measurements FILE"
    )
    assert "cdvm trust add NPUB" in reason
    assert "--accept-unpinned gpu" in reason
    assert "block 3" not in reason  # a block no expectation names is not compared
    # the versions are compared too
    old = dataclasses.replace(GPU_ENTRY.expected(), vbios_version="96.00.5e.00.01")
    reason = match_pins(Pins(**EVERY_OTHER, gpu_measurements=(old,)), observed(GPU_TEE)).reasons[0]
    assert f"vbios_version: saw {VBIOS}, wanted 96.00.5e.00.01" in reason


def test_gpu_measurements_pinned_by_a_publisher() -> None:
    report = match_pins(trusting(reference(ALICE, tee=GPU_TEE)), observed(GPU_TEE))
    assert report.reasons == ()
    pin = report.pin(PinKind.GPU)
    assert pin is not None
    assert (pin.by_flag, pin.publishers, pin.releases) == (False, (hexkey(ALICE),), ("r1",))


def test_a_publisher_whose_blocks_differ_is_named_with_the_blocks() -> None:
    ref = reference(ALICE, tee=GPU_TEE)
    report = match_pins(trusting(ref), observed(GPU_TEE, gpus=(GPU_BAD,)))
    assert [_kind_of(r) for r in report.reasons] == ["gpu"]
    reason = report.reasons[0]
    assert "the reference values of 1 trusted publisher(s) for this TEE name other GPU " in reason
    assert (
        f"GPU 0 against {npub(ALICE)} (release r1, GH100): measurement block 1: saw absent"
        in reason
    )
    assert "measurement block 2: saw" in reason


def test_a_publisher_without_these_versions_says_so() -> None:
    entry = dataclasses.replace(GPU_ENTRY, driver_version="545.00")
    report = match_pins(trusting(reference(ALICE, tee=GPU_TEE, gpu=(entry,))), observed(GPU_TEE))
    assert [_kind_of(r) for r in report.reasons] == ["gpu"]
    assert (
        f"GPU 0: {npub(ALICE)} (release r1) states no GPU measurements for driver {DRIVER}, "
        f"VBIOS {VBIOS}" in report.reasons[0]
    )


@pytest.mark.parametrize(("k", "vouching", "ok"), [(1, 1, True), (2, 1, False), (2, 2, True)])
def test_gpu_threshold_counts_publishers(k: int, vouching: int, ok: bool) -> None:
    refs = [reference(key, tee=GPU_TEE) for key in (ALICE, BOB)[:vouching]]
    disagreeing = reference(
        CAROL, tee=GPU_TEE, gpu=(dataclasses.replace(GPU_ENTRY, blocks=((1, (D.hex(),)),)),)
    )
    pins = dataclasses.replace(trusting(*refs, disagreeing, require_publishers=k), **EVERY_OTHER)
    report = match_pins(pins, observed(GPU_TEE))
    assert (report.reasons == ()) is ok
    pin = report.pin(PinKind.GPU)
    assert pin is not None
    assert len(pin.publishers) == vouching
    if not ok:
        assert f"{vouching} trusted publisher(s) vouch for it" in report.reasons[0]
        assert npub(CAROL) in report.reasons[0]  # the one whose blocks differ is listed


def test_every_gpu_must_match() -> None:
    pins = Pins(**EVERY_OTHER, gpu_measurements=(GPU_ENTRY.expected(),))
    report = match_pins(pins, observed(GPU_TEE, gpus=(GPU_OK, GPU_BAD)))
    assert [_kind_of(r) for r in report.reasons] == ["gpu"]
    assert "2 GPU(s)" in report.reasons[0]
    assert "GPU 1 against --gpu-measurements" in report.reasons[0]
    assert "GPU 0 against" not in report.reasons[0]
    nothing = match_pins(pins, observed(GPU_TEE, gpus=()))
    assert "(no GPU report) are not pinned" in nothing.reasons[0]
    assert "the evidence carries no GPU report" in nothing.reasons[0]


def test_gpu_accepted_unpinned_loudly() -> None:
    pins = Pins(**EVERY_OTHER, accept_unpinned=frozenset({PinKind.GPU}))
    report = match_pins(pins, observed(GPU_TEE, gpus=(GPU_BAD,)))
    assert report.reasons == ()
    assert (
        f"UNPINNED GPU measurements accepted (--accept-unpinned gpu): nothing you chose vouches "
        f"for {GPUS_SEEN}" in report.notes
    )


def test_non_gpu_jobs_have_no_gpu_pin() -> None:
    pins = Pins(**EVERY_OTHER, gpu_measurements=(GPU_ENTRY.expected(),))
    report = match_pins(pins, observed("sev-snp", gpus=(GPU_BAD,)))
    assert report.reasons == ()
    assert report.pin(PinKind.GPU) is None


def test_gpu_flag_values_are_checked() -> None:
    with pytest.raises(OptionsError, match="--gpu-measurements"):
        Pins(gpu_measurements=({"1": "x"},))  # type: ignore[arg-type]


# --- property: the GPU pin against a direct oracle ----------------------------------------------

_GPU_VARIANTS = {
    "good": GPU_ENTRY,
    "other-blocks": dataclasses.replace(GPU_ENTRY, blocks=((1, (D.hex(),)),)),
    "other-driver": dataclasses.replace(GPU_ENTRY, driver_version="545.00"),
}
_GPU_POOL = [
    reference(key, tee=GPU_TEE, gpu=(entry,), release=f"gpu-{name}")
    for key in (ALICE, BOB, CAROL)
    for name, entry in _GPU_VARIANTS.items()
]
_FLAGS = {
    "none": (),
    "good": (GPU_ENTRY.expected(),),
    "bad": (_GPU_VARIANTS["other-blocks"].expected(),),
}
_SEEN = {"ok": (GPU_OK,), "bad": (GPU_BAD,), "mixed": (GPU_OK, GPU_BAD), "none": ()}


@settings(max_examples=300, deadline=None)
@given(
    refs=st.lists(st.sampled_from(_GPU_POOL), max_size=6, unique_by=lambda r: r.event.id),
    trusted=st.sets(st.sampled_from(_KEYS)),
    k=st.integers(1, 3),
    flag=st.sampled_from(sorted(_FLAGS)),
    seen=st.sampled_from(sorted(_SEEN)),
    accept=st.booleans(),
)
def test_gpu_pin_agrees_with_the_rules(
    refs: list[PublishedReference], trusted: set[str], k: int, flag: str, seen: str, accept: bool
) -> None:
    pins = Pins(
        **EVERY_OTHER,
        gpu_measurements=_FLAGS[flag],
        references=tuple(refs),
        trusted_publishers=frozenset(trusted),
        require_publishers=k,
        accept_unpinned=frozenset({PinKind.GPU}) if accept else frozenset(),
    )
    report = match_pins(pins, observed(GPU_TEE, gpus=_SEEN[seen]))
    # only GPU_OK matches GPU_ENTRY; GPU_BAD matches nothing; every GPU must match
    all_ok = seen == "ok"
    vouching = {
        r.publisher for r in refs if r.publisher in trusted and r.values.release == "gpu-good"
    }
    pinned = all_ok and (flag == "good" or len(vouching) >= k)
    pin = report.pin(PinKind.GPU)
    assert pin is not None
    assert pin.pinned is pinned
    assert set(pin.publishers) == (vouching if all_ok else set())
    refused = [r for r in report.reasons if _kind_of(r) == "gpu"]
    assert len(refused) == (0 if pinned or accept else 1)
    assert [_kind_of(r) for r in report.reasons] == ["gpu"] * len(refused)  # others pinned
    if refused and seen != "none" and flag == "bad":
        assert "against --gpu-measurements" in refused[0]
        assert "measurement block 1" in refused[0]
