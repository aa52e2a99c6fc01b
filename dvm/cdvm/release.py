"""What a publisher states about one release: the values of a kind-37100 event (DESIGN §3.5, §5).

The event itself (tags, kind, signing) is :mod:`dvm.cdvm.refs`; this module is its content:
:class:`ReferenceValues` (TEE kind, runtime version, job images, launch measurements per product
/ vCPU count / vCPU type with the SHA-256 of their inputs, the minimum TCB per product, the
models, the recipe and the source commit), :meth:`ReferenceValues.to_content` (sorted keys,
compact, nulls kept) and :func:`parse_release_content`. Schema: ``docs/protocol.md`` §9.

Strict: unknown keys, duplicates, wrong types and out-of-range numbers are refused, because a
value the matcher ignored would be a statement nobody checked. Rules by TEE kind: for ``sev-snp``
and ``sev-snp+nvidia-h100`` at least one image (digest references only,
:func:`dvm.cdvm.pod_contract.check_image_reference`), every measurement names its product, vCPU
count and type and at least the OVMF, kernel and command-line hashes, every product named has a
``min_tcb`` entry, and the source commit is given; for ``simulated`` no image (simulated jobs run
none, so nothing would check it). A ``sev-snp+nvidia-h100`` release has one more key, ``gpu``:
at least one :class:`~dvm.cdvm.release_gpu.GpuReference` (expected GPU measurement blocks per
architecture / driver / VBIOS version, and the RIMs they came from), none twice; other kinds have
no ``gpu`` key (nothing would check it). Every failure raises
:class:`~dvm.nostr.errors.CodecError`. Pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from attestation.errors import AttestationError
from attestation.snp.abi import Product
from attestation.snp.validate import TcbFloor
from dvm.nostr.errors import CodecError, JsonError
from dvm.nostr.hex64 import is_hex64
from dvm.nostr.nip90 import TeeKind
from dvm.nostr.strict_json import parse_json

from .pod_contract import check_image_reference
from .release_gpu import GpuReference, RimRef, check_release_gpu
from .tee import is_gpu_job, runs_in_confidential_containers

__all__ = [
    "MAX_CONTENT_CHARS",
    "REFERENCE_VALUES_VERSION",
    "GpuReference",
    "LaunchInputs",
    "LaunchMeasurement",
    "ModelHash",
    "ReferenceValues",
    "RimRef",
    "SourceRef",
    "parse_release_content",
]

REFERENCE_VALUES_VERSION = 1
_MAX_TEXT = 1024
_MAX_RECIPE = 8192
_MAX_ITEMS = 64
MAX_CONTENT_CHARS = 32768  # well inside a 64 KiB relay event
_MEASUREMENT = re.compile(r"[0-9a-f]{96}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_CONTENT_KEYS = frozenset(
    {"v", "tee", "runtime", "measurements", "min_tcb", "models", "recipe", "source"}
)
_GPU_CONTENT_KEYS = _CONTENT_KEYS | {"gpu"}
_ENTRY_KEYS = frozenset({"measurement", "product", "vcpus", "vcpu_type", "inputs"})
_INPUT_HASHES = ("ovmf_sha256", "kernel_sha256", "initrd_sha256", "cmdline_sha256")
_INPUT_KEYS = frozenset({*_INPUT_HASHES, "guest_features"})
_REQUIRED_INPUTS = ("ovmf_sha256", "kernel_sha256", "cmdline_sha256")
_TCB_KEYS = ("bl", "tee", "snp", "ucode", "fmc")
_PRODUCTS = {p.value: p for p in Product}
_TEES = frozenset(t.value for t in TeeKind)


def _text(value: object, what: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise CodecError(f"{what} must be a non-empty string of at most {limit} characters")
    if any(ord(c) < 0x20 and c not in "\n\t" for c in value):
        raise CodecError(f"{what} must not contain control characters")
    return value


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CodecError(f"{what} must be an integer in [{low}, {high}]")
    return value


def _sha256(value: object, what: str) -> str:
    if not is_hex64(value):
        raise CodecError(f"{what} must be 64 lowercase hex characters")
    return str(value)


def _exact(value: object, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a JSON object")
    if set(value) != keys:
        raise CodecError(f"{what} must have exactly the keys {sorted(keys)}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise CodecError(f"{what} must be a list of at most {_MAX_ITEMS} items")
    return value


def _product(value: object, what: str) -> Product:
    if not isinstance(value, str) or value not in _PRODUCTS:
        raise CodecError(f"{what} must be one of {sorted(_PRODUCTS)}")
    return _PRODUCTS[value]


@dataclass(frozen=True, slots=True)
class LaunchInputs:
    """SHA-256 of each file the launch measurement was computed from (None: not used)."""

    ovmf_sha256: str | None = None
    kernel_sha256: str | None = None
    initrd_sha256: str | None = None
    cmdline_sha256: str | None = None  # of the kernel command line, UTF-8
    guest_features: int | None = None  # the SEV features word given to sev-snp-measure

    def __post_init__(self) -> None:
        for name in _INPUT_HASHES:
            value = getattr(self, name)
            if value is not None:
                _sha256(value, f"inputs.{name}")
        if self.guest_features is not None:
            _int(self.guest_features, "inputs.guest_features", 0, 2**64 - 1)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*_INPUT_HASHES, "guest_features")}

    @classmethod
    def from_dict(cls, value: object) -> LaunchInputs:
        body = _exact(value, _INPUT_KEYS, "inputs")
        hashes = {
            n: None if body[n] is None else _sha256(body[n], f"inputs.{n}") for n in _INPUT_HASHES
        }
        features = body["guest_features"]
        return cls(
            **hashes,
            guest_features=None
            if features is None
            else _int(features, "inputs.guest_features", 0, 2**64 - 1),
        )


@dataclass(frozen=True, slots=True)
class LaunchMeasurement:
    """One launch MEASUREMENT (96 lowercase hex, SHA-384) and what it was computed for."""

    measurement: str
    product: Product | None = None
    vcpus: int | None = None
    vcpu_type: str | None = None
    inputs: LaunchInputs = field(default_factory=LaunchInputs)

    def __post_init__(self) -> None:
        if not isinstance(self.measurement, str) or not _MEASUREMENT.fullmatch(self.measurement):
            raise CodecError("measurement must be 96 lowercase hex characters (SHA-384)")
        if self.product is not None:  # a plain "Genoa" becomes Product.GENOA
            object.__setattr__(self, "product", _product(self.product, "product"))
        if self.vcpus is not None:
            _int(self.vcpus, "vcpus", 1, 4096)
        if self.vcpu_type is not None:
            _text(self.vcpu_type, "vcpu_type", 64)
        if not isinstance(self.inputs, LaunchInputs):
            raise CodecError("inputs must be LaunchInputs")

    @property
    def key(self) -> tuple[str, str | None, int | None, str | None]:
        return (self.measurement, self.product, self.vcpus, self.vcpu_type)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurement": self.measurement,
            "product": None if self.product is None else self.product.value,
            "vcpus": self.vcpus,
            "vcpu_type": self.vcpu_type,
            "inputs": self.inputs.to_dict(),
        }

    @classmethod
    def from_dict(cls, value: object) -> LaunchMeasurement:
        body = _exact(value, _ENTRY_KEYS, "measurements[]")
        measurement = body["measurement"]
        if not isinstance(measurement, str):
            raise CodecError("measurement must be 96 lowercase hex characters (SHA-384)")
        return cls(
            measurement=measurement,
            product=None if body["product"] is None else _product(body["product"], "product"),
            vcpus=None if body["vcpus"] is None else _int(body["vcpus"], "vcpus", 1, 4096),
            vcpu_type=None
            if body["vcpu_type"] is None
            else _text(body["vcpu_type"], "vcpu_type", 64),
            inputs=LaunchInputs.from_dict(body["inputs"]),
        )


@dataclass(frozen=True, slots=True)
class ModelHash:
    """A model file the publisher vouches for: its name and the SHA-256 of its bytes."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        _text(self.name, "models[].name", 256)
        _sha256(self.sha256, "models[].sha256")


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where the measured code comes from: a repository and a commit (git SHA-1 or SHA-256).

    ``commit`` may be None only in a simulated release (a development tree without a commit).
    """

    repository: str
    commit: str | None

    def __post_init__(self) -> None:
        _text(self.repository, "source.repository")
        if self.commit is not None and (
            not isinstance(self.commit, str) or not _COMMIT.fullmatch(self.commit)
        ):
            raise CodecError("source.commit must be 40 or 64 lowercase hex characters or null")


def _tcb_floor_dict(floor: TcbFloor) -> dict[str, int | None]:
    return {name: getattr(floor, name) for name in _TCB_KEYS}


def _tcb_floor(value: object, what: str) -> TcbFloor:
    body = _exact(value, frozenset(_TCB_KEYS), what)
    parts = {
        name: None if body[name] is None else _int(body[name], f"{what}.{name}", 0, 255)
        for name in _TCB_KEYS
    }
    if all(v is None for v in parts.values()):
        raise CodecError(f"{what} must set at least one component")
    return TcbFloor(**parts)


@dataclass(frozen=True, slots=True)
class ReferenceValues:
    """What one publisher states about one release (see the module docstring).

    ``min_tcb`` is a tuple of (product, floor) pairs, one per product at most. ``gpu``: the
    GPU reference measurements of a ``sev-snp+nvidia-h100`` release (empty for other kinds).
    """

    release: str
    tee: str
    runtime_version: str
    images: tuple[str, ...]
    measurements: tuple[LaunchMeasurement, ...]
    min_tcb: tuple[tuple[Product, TcbFloor], ...]
    models: tuple[ModelHash, ...]
    recipe: str
    source: SourceRef
    gpu: tuple[GpuReference, ...] = ()

    def __post_init__(self) -> None:
        _check_values(self)

    def floor_for(self, product: Product) -> TcbFloor | None:
        """The minimum TCB this release states for ``product`` (None: none stated)."""
        return dict(self.min_tcb).get(product)

    def to_content(self) -> str:
        body = {
            "v": REFERENCE_VALUES_VERSION,
            "tee": self.tee,
            "runtime": {"version": self.runtime_version, "images": list(self.images)},
            "measurements": [m.to_dict() for m in self.measurements],
            "min_tcb": {p.value: _tcb_floor_dict(f) for p, f in self.min_tcb},
            "models": [{"name": m.name, "sha256": m.sha256} for m in self.models],
            "recipe": self.recipe,
            "source": {"repository": self.source.repository, "commit": self.source.commit},
        }
        if is_gpu_job(self.tee):
            body["gpu"] = [g.to_dict() for g in self.gpu]
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _check_values(values: ReferenceValues) -> None:
    _text(values.release, "release ('d' tag)", 256)
    if values.tee not in _TEES:
        raise CodecError(f"tee must be one of {sorted(_TEES)}")
    _text(values.runtime_version, "runtime.version", 128)
    _text(values.recipe, "recipe", _MAX_RECIPE)
    if not isinstance(values.source, SourceRef):
        raise CodecError("source must be a SourceRef")
    for what, items in (
        ("runtime.images", values.images),
        ("measurements", values.measurements),
        ("min_tcb", values.min_tcb),
        ("models", values.models),
        ("gpu", values.gpu),
    ):
        if len(items) > _MAX_ITEMS:
            raise CodecError(f"{what} has more than {_MAX_ITEMS} items")
    for image in values.images:
        try:
            check_image_reference(image)
        except AttestationError:
            raise CodecError(
                "runtime.images must be digest references registry.example/name@sha256:<64 hex>"
            ) from None
    if len(set(values.images)) != len(values.images):
        raise CodecError("runtime.images lists an image twice")
    if not values.measurements:
        raise CodecError("measurements must not be empty")
    if len({m.key for m in values.measurements}) != len(values.measurements):
        raise CodecError("measurements lists an entry twice")
    products = [p for p, _ in values.min_tcb]
    if len(set(products)) != len(products):
        raise CodecError("min_tcb names a product twice")
    if len({(m.name, m.sha256) for m in values.models}) != len(values.models):
        raise CodecError("models lists a model twice")
    if runs_in_confidential_containers(values.tee):
        if values.source.commit is None:
            raise CodecError(f"a {values.tee} release must name its source commit")
        if not values.images:
            raise CodecError(f"a {values.tee} release must name its job image(s)")
        for entry in values.measurements:
            if entry.product is None or entry.vcpus is None or entry.vcpu_type is None:
                raise CodecError(
                    f"a {values.tee} measurement must name its product, vCPU count and type"
                )
            missing = [n for n in _REQUIRED_INPUTS if getattr(entry.inputs, n) is None]
            if missing:
                raise CodecError(f"a {values.tee} measurement must state inputs {missing}")
            if entry.product not in products:
                raise CodecError(f"min_tcb must state a floor for {entry.product.value}")
    elif values.images:
        raise CodecError("a simulated release has no job image (nothing would check it)")
    check_release_gpu(values.tee, values.gpu)


def _min_tcb(value: object) -> tuple[tuple[Product, TcbFloor], ...]:
    if not isinstance(value, dict) or len(value) > _MAX_ITEMS:
        raise CodecError("min_tcb must be a JSON object keyed by product")
    return tuple(
        (_product(name, "min_tcb key"), _tcb_floor(floor, f"min_tcb.{name}"))
        for name, floor in value.items()
    )


def _models(value: object) -> tuple[ModelHash, ...]:
    out = []
    for item in _list(value, "models"):
        body = _exact(item, frozenset({"name", "sha256"}), "models[]")
        out.append(
            ModelHash(
                _text(body["name"], "models[].name", 256),
                _sha256(body["sha256"], "models[].sha256"),
            )
        )
    return tuple(out)


def parse_release_content(release: str, tee: str, content: str) -> ReferenceValues:
    """The values of the content JSON of a kind-37100 event whose ``d`` and ``tee`` tags are
    ``release`` and ``tee``; :class:`CodecError` (only) for anything else."""
    release = _text(release, "'d' tag", 256)
    if len(content) > MAX_CONTENT_CHARS:
        raise CodecError(f"reference values content is over {MAX_CONTENT_CHARS} characters")
    try:
        raw = parse_json(content)
    except JsonError as exc:
        raise CodecError(f"reference values content is not JSON ({exc})") from None
    gpu_job = is_gpu_job(tee)
    body = _exact(raw, _GPU_CONTENT_KEYS if gpu_job else _CONTENT_KEYS, "reference values content")
    if type(body["v"]) is not int or body["v"] != REFERENCE_VALUES_VERSION:
        raise CodecError("reference values version must be 1")
    if body["tee"] != tee:
        raise CodecError("content 'tee' differs from the 'tee' tag")
    runtime = _exact(body["runtime"], frozenset({"version", "images"}), "runtime")
    images = _list(runtime["images"], "runtime.images")
    if not all(isinstance(i, str) for i in images):
        raise CodecError("runtime.images must be strings")
    source = _exact(body["source"], frozenset({"repository", "commit"}), "source")
    if source["commit"] is not None and not isinstance(source["commit"], str):
        raise CodecError("source.commit must be 40 or 64 lowercase hex characters or null")
    return ReferenceValues(
        release=release,
        tee=_text(tee, "'tee' tag", 64),
        runtime_version=_text(runtime["version"], "runtime.version", 128),
        images=tuple(images),
        measurements=tuple(
            LaunchMeasurement.from_dict(m) for m in _list(body["measurements"], "measurements")
        ),
        min_tcb=_min_tcb(body["min_tcb"]),
        models=_models(body["models"]),
        recipe=_text(body["recipe"], "recipe", _MAX_RECIPE),
        source=SourceRef(_text(source["repository"], "source.repository"), source["commit"]),
        gpu=tuple(GpuReference.from_dict(g) for g in _list(body["gpu"], "gpu")) if gpu_job else (),
    )
