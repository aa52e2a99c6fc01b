"""The requester's pins: is each value the evidence shows one the requester chose? (DESIGN §3.5)

Fail closed. A verified report proves *which* guest ran; it is worth something only if the
requester compares it with values it chose. For every TEE kind -- hardware and simulated alike --
these values must each be **pinned** before anything is sent:

- the launch ``measurement`` (every kind);
- the job ``image`` digest (``sev-snp`` and ``sev-snp+nvidia-h100``: Confidential Containers jobs
  run an image; a simulated job runs none);
- the ``model`` file's sha256 (every kind);
- the ``gpu`` measurement blocks (``sev-snp+nvidia-h100``: every GPU report must match expected
  blocks and driver/VBIOS versions, which is also how the GPU's confidential-computing mode is
  established; :mod:`dvm.client.gpu_pins`).

A value is pinned when the requester named it explicitly (:class:`Pins` ``measurements``,
``images``, ``model_sha256s``, ``gpu_measurements``: the CLI's ``--measurement``,
``--trust-image``, ``--model-sha256``, ``--gpu-measurements``) or when at least
``require_publishers`` distinct **trusted** publishers vouch for it in reference values
(:mod:`dvm.cdvm.refs`, kind 37100) for this TEE kind; a measurement entry that names a product
vouches only for reports of that product; a publisher vouches for the GPU measurements when every
GPU report matches one of its ``gpu`` entries (blocks and versions). References from keys not in
``trusted_publishers`` are ignored, whoever put them in :class:`Pins`. The threshold counts
publishers per value: two publishers must each state *this* measurement (or image, or model).

The TCB must meet the minimum of **every** trusted reference that vouched for the measurement
(for the report's product; the reported TCB, the one the VCEK certifies): the strictest floor
wins, so a publisher cannot be outvoted into a lower one. A measurement pinned by flag alone
brings no floor (a note says so: the policy's ``min_tcb`` is the place for one).

A value nobody pinned refuses the job, with the exact remedy (the flag with the value to pin
after recomputing it, and ``cdvm trust add``; for GPU measurements also every block that differs
from each expectation that was compared), unless the requester named its kind in
``accept_unpinned`` (the CLI's loud ``--accept-unpinned``): then it is accepted and a warning
says ``UNPINNED``.

Pure: :func:`match_pins` takes the pins and what the verified evidence shows
(:class:`Observed`) and returns a :class:`PinReport` -- per value, who pinned it (the flag, the
vouching publishers), every refusal reason, the summary lines and the notes. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from attestation.errors import AttestationError
from attestation.nvidia.reference import ExpectedGpuMeasurements
from attestation.nvidia.verify import VerifiedGpuReport
from attestation.snp.abi import Product, TcbVersion
from attestation.snp.validate import TcbFloor
from dvm.cdvm.pod_contract import check_image_reference
from dvm.cdvm.refs import PublishedReference
from dvm.cdvm.tee import is_gpu_job, runs_in_confidential_containers
from dvm.nostr.errors import NostrError
from dvm.nostr.hex64 import is_hex64
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip19 import encode_npub

from .errors import OptionsError
from .gpu_pins import match_gpus

__all__ = [
    "FLAGS",
    "Observed",
    "PinKind",
    "PinReport",
    "Pins",
    "ValuePin",
    "latest_references",
    "match_pins",
    "required_values",
]

_MEASUREMENT = re.compile(r"[0-9a-f]{96}")
_TCB_COMPONENTS = ("fmc", "bl", "tee", "snp", "ucode")


class PinKind(StrEnum):
    """The values a requester must pin (the words ``--accept-unpinned`` takes)."""

    MEASUREMENT = "measurement"
    IMAGE = "image"
    MODEL = "model"
    GPU = "gpu"


#: The flag that pins each kind of value explicitly.
FLAGS = {
    PinKind.MEASUREMENT: "--measurement",
    PinKind.IMAGE: "--trust-image",
    PinKind.MODEL: "--model-sha256",
    PinKind.GPU: "--gpu-measurements",
}
_LABEL = {
    PinKind.MEASUREMENT: "measurement",
    PinKind.IMAGE: "image",
    PinKind.MODEL: "model sha256",
    PinKind.GPU: "GPU measurements",
}
_HOW = {
    PinKind.MEASUREMENT: "after recomputing it yourself (cdvm attest measure)",
    PinKind.IMAGE: "after checking the image's build (container/README.md)",
    PinKind.MODEL: "after hashing the model file you expect (sha256sum)",
    PinKind.GPU: (
        "FILE (the expected blocks as JSON, from driver and VBIOS RIMs you authenticated: "
        "docs/attestation-nvidia.md)"
    ),
}


def required_values(tee: str) -> tuple[PinKind, ...]:
    """The values a job of TEE kind ``tee`` must have pinned."""
    if is_gpu_job(tee):
        return (PinKind.MEASUREMENT, PinKind.IMAGE, PinKind.MODEL, PinKind.GPU)
    if runs_in_confidential_containers(tee):
        return (PinKind.MEASUREMENT, PinKind.IMAGE, PinKind.MODEL)
    return (PinKind.MEASUREMENT, PinKind.MODEL)


def _npub(publisher: str) -> str:
    return encode_npub(PublicKey.from_hex(publisher))


@dataclass(frozen=True, slots=True)
class Pins:
    """What the requester chose (see the module docstring). Empty pins refuse every job."""

    measurements: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    model_sha256s: frozenset[str] = frozenset()
    gpu_measurements: tuple[ExpectedGpuMeasurements, ...] = ()
    references: tuple[PublishedReference, ...] = ()
    trusted_publishers: frozenset[str] = frozenset()
    require_publishers: int = 1
    accept_unpinned: frozenset[PinKind] = frozenset()

    def __post_init__(self) -> None:
        for value in self.measurements:
            if not isinstance(value, str) or not _MEASUREMENT.fullmatch(value):
                raise OptionsError(
                    f"--measurement {str(value)[:100]!r} is not 96 lowercase hex characters"
                )
        for image in self.images:
            try:
                check_image_reference(image)
            except AttestationError:
                raise OptionsError(
                    f"--trust-image {str(image)[:120]!r} is not a digest reference "
                    "registry.example/name@sha256:<64 hex> (tags are refused: a tag can be moved)"
                ) from None
        for value in self.model_sha256s:
            if not is_hex64(value):
                raise OptionsError(
                    f"--model-sha256 {str(value)[:70]!r} is not 64 lowercase hex characters"
                )
        if not all(isinstance(e, ExpectedGpuMeasurements) for e in self.gpu_measurements):
            raise OptionsError("--gpu-measurements must be expected GPU measurements")
        for publisher in self.trusted_publishers:
            try:
                PublicKey.from_hex(publisher)
            except (NostrError, TypeError):
                raise OptionsError(
                    f"trusted publisher {str(publisher)[:70]!r} is not a key"
                ) from None
        if type(self.require_publishers) is not int or self.require_publishers < 1:
            raise OptionsError("--require-publishers must be a positive integer")
        for kind in self.accept_unpinned:
            if kind not in set(PinKind):
                raise OptionsError(f"--accept-unpinned takes {', '.join(PinKind)}, not {kind!r}")


@dataclass(frozen=True, slots=True)
class Observed:
    """What the verified evidence shows: the values to compare with the pins.

    ``image`` is None for a TEE kind that runs no image (simulated); ``gpus`` are the verified
    GPU reports (``sev-snp+nvidia-h100``).
    """

    tee: str
    measurement: str
    product: Product
    reported_tcb: TcbVersion
    model_sha256: str
    image: str | None
    gpus: tuple[VerifiedGpuReport, ...] = ()


@dataclass(frozen=True, slots=True)
class ValuePin:
    """How one value fared: pinned by the flag and/or by trusted publishers (hex, sorted)."""

    kind: PinKind
    value: str
    by_flag: bool
    publishers: tuple[str, ...]
    releases: tuple[str, ...]
    pinned: bool
    accepted_unpinned: bool = False


@dataclass(frozen=True, slots=True)
class PinReport:
    """The result of :func:`match_pins`. ``reasons`` non-empty: refuse, send nothing."""

    values: tuple[ValuePin, ...]
    reasons: tuple[str, ...]
    checks: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    #: a trusted reference's minimum TCB was compared with the reported TCB
    tcb_floor_checked: bool = False

    def pin(self, kind: PinKind) -> ValuePin | None:
        return next((v for v in self.values if v.kind is kind), None)


def latest_references(refs: Iterable[PublishedReference]) -> tuple[PublishedReference, ...]:
    """The newest event per address (publisher, release), as relays keep addressable events.

    NIP-01: of two versions with the same ``created_at``, the one with the lowest id wins.
    """
    best: dict[tuple[str, str], PublishedReference] = {}
    for ref in refs:
        key = (ref.publisher, ref.values.release)
        held = best.get(key)
        if held is None or (ref.created_at, _neg(ref.event.id)) > (
            held.created_at,
            _neg(held.event.id),
        ):
            best[key] = ref
    return tuple(sorted(best.values(), key=lambda r: (r.publisher, r.values.release)))


def _neg(event_id: str) -> tuple[int, ...]:
    return tuple(-b for b in bytes.fromhex(event_id))


def _vouches(ref: PublishedReference, kind: PinKind, observed: Observed) -> bool:
    values = ref.values
    if kind is PinKind.MEASUREMENT:
        return any(
            m.measurement == observed.measurement and m.product in (None, observed.product)
            for m in values.measurements
        )
    if kind is PinKind.IMAGE:
        return observed.image in values.images
    return any(m.sha256 == observed.model_sha256 for m in values.models)


def _value(kind: PinKind, observed: Observed) -> str:
    if kind is PinKind.MEASUREMENT:
        return observed.measurement
    if kind is PinKind.IMAGE:
        return observed.image or ""
    return observed.model_sha256


def _explicit(kind: PinKind, pins: Pins) -> frozenset[str]:
    return {
        PinKind.MEASUREMENT: pins.measurements,
        PinKind.IMAGE: pins.images,
        PinKind.MODEL: pins.model_sha256s,
    }[kind]


def _tcb_text(tcb: TcbVersion | TcbFloor) -> str:
    parts = [f"{n}={getattr(tcb, n)}" for n in _TCB_COMPONENTS if getattr(tcb, n) is not None]
    return " ".join(parts)


def _tcb_shortfalls(seen: TcbVersion, floor: TcbFloor) -> list[str]:
    out = []
    for name in _TCB_COMPONENTS:
        wanted = getattr(floor, name)
        if wanted is None:
            continue
        value = getattr(seen, name)
        if value is None or value < wanted:
            out.append(f"{name} {value} < {wanted}")
    return out


def _refusal(
    kind: PinKind,
    value: str,
    pins: Pins,
    publishers: tuple[str, ...],
    others: int,
    *,
    mismatches: tuple[str, ...] = (),
) -> str:
    label, flag = _LABEL[kind], FLAGS[kind]
    if publishers:
        found = (
            f"{len(publishers)} trusted publisher(s) vouch for it "
            f"({', '.join(_npub(p) for p in publishers)}), {pins.require_publishers} required "
            "(--require-publishers)"
        )
    elif others:
        found = (
            f"the reference values of {others} trusted publisher(s) for this TEE name other "
            + (label if kind is PinKind.GPU else f"{label} values")
        )
    elif pins.trusted_publishers:
        found = (
            f"none of your {len(pins.trusted_publishers)} trusted publisher(s) published "
            "reference values for this TEE kind on the job's relays"
        )
    else:
        found = "you trust no reference-value publisher"
    if kind is PinKind.GPU:
        differ = "".join(f"; {line}" for line in mismatches)
        return (
            f"{label} ({value}) are not pinned: {found}{differ}. Pin them with {flag} "
            f"{_HOW[kind]}, or trust a publisher that vouches for them: cdvm trust add NPUB "
            f"(to accept them unpinned, at your own risk: --accept-unpinned {kind.value})"
        )
    return (
        f"{label} {value} is not pinned: {found}. Pin it with {flag} {value} {_HOW[kind]}, "
        f"or trust a publisher that vouches for it: cdvm trust add NPUB "
        f"(to accept it unpinned, at your own risk: --accept-unpinned {kind.value})"
    )


def _check_line(pin: ValuePin) -> str:
    label = _LABEL[pin.kind]
    plural = pin.kind is PinKind.GPU
    parts = []
    if pin.by_flag:
        parts.append(f"{'are' if plural else 'is'} pinned with {FLAGS[pin.kind]}")
    if pin.publishers:
        npubs = ", ".join(_npub(p) for p in pin.publishers)
        releases = ", ".join(pin.releases)
        parts.append(
            f"{'match' if plural else 'matches'} reference values published by {npubs} "
            f"(release {releases})"
        )
    return f"{label} {' and '.join(parts)}: {pin.value}"


def match_pins(pins: Pins, observed: Observed) -> PinReport:
    """Compare ``observed`` with ``pins``; see the module docstring for the rules."""
    usable = [
        r
        for r in pins.references
        if r.publisher in pins.trusted_publishers and r.values.tee == observed.tee
    ]
    values: list[ValuePin] = []
    reasons: list[str] = []
    checks: list[str] = []
    notes: list[str] = []
    for kind in required_values(observed.tee):
        mismatches: tuple[str, ...] = ()
        if kind is PinKind.GPU:
            gpu = match_gpus(observed.gpus, pins.gpu_measurements, usable)
            value, by_flag, mismatches = gpu.value, gpu.by_flag, gpu.mismatches
            publishers, releases = gpu.publishers, gpu.releases
        else:
            value = _value(kind, observed)
            vouching = [r for r in usable if _vouches(r, kind, observed)]
            publishers = tuple(sorted({r.publisher for r in vouching}))
            releases = tuple(sorted({r.values.release for r in vouching}))
            by_flag = value in _explicit(kind, pins)
        pinned = by_flag or len(publishers) >= pins.require_publishers
        accepted = not pinned and kind in pins.accept_unpinned
        pin = ValuePin(kind, value, by_flag, publishers, releases, pinned, accepted)
        values.append(pin)
        if pinned:
            checks.append(_check_line(pin))
        elif accepted:
            notes.append(
                f"UNPINNED {_LABEL[kind]} accepted (--accept-unpinned {kind.value}): nothing you "
                f"chose vouches for {value}"
            )
        else:
            others = len({r.publisher for r in usable}) - len(publishers)
            reasons.append(_refusal(kind, value, pins, publishers, others, mismatches=mismatches))
    floors = [
        (r, floor)
        for r in usable
        if _vouches(r, PinKind.MEASUREMENT, observed)
        and (floor := r.values.floor_for(observed.product)) is not None
    ]
    for ref, floor in floors:
        short = _tcb_shortfalls(observed.reported_tcb, floor)
        who = f"{_npub(ref.publisher)} (release {ref.values.release})"
        if short:
            reasons.append(
                f"reported TCB ({_tcb_text(observed.reported_tcb)}) is below the minimum "
                f"{observed.product.value} TCB ({_tcb_text(floor)}) stated by {who}: "
                + ", ".join(short)
            )
        else:
            checks.append(
                f"reported TCB ({_tcb_text(observed.reported_tcb)}) meets the minimum "
                f"{observed.product.value} TCB stated by {who}"
            )
    if not floors and runs_in_confidential_containers(observed.tee):
        notes.append(
            "no reference values state a minimum TCB for this measurement: only the policy's "
            "min_tcb (--policy) applies"
        )
    return PinReport(tuple(values), tuple(reasons), tuple(checks), tuple(notes), bool(floors))
