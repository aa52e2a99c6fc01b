"""Policy over a verified SEV-SNP report: data in (a TOML file or a dataclass), every failure out.

Model: google/go-sev-guest ``validate/`` (policy is data; every check names its field). Field
meanings: AMD 56860 "ATTESTATION_REPORT" and "Guest Policy". Policy file: TOML (``tomllib``),
format in ``docs/attestation-snp.md``.

Contract: :func:`validate` takes a :class:`~attestation.snp.verify.VerifiedReport` (so policy
is never applied to unauthenticated bytes) and returns None or raises one
:class:`~attestation.errors.PolicyViolation` listing every
:class:`~attestation.errors.Failure` (field, value seen, value wanted). :data:`DEFAULT_POLICY`
refuses debug and migration agents; :func:`warnings` says what a policy leaves unchecked.
:func:`load_policy` raises :class:`~attestation.errors.ParseError` for a malformed file,
including unknown keys (a typo must not silently weaken a policy).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from attestation.errors import Failure, ParseError, PolicyViolation

from .abi import FirmwareVersion, Product, SigningKey, TcbVersion
from .verify import VerifiedReport

__all__ = ["DEFAULT_POLICY", "Policy", "TcbFloor", "load_policy", "validate", "warnings"]

_TCB_FIELDS = ("reported", "current", "committed", "launch")
_COMPONENTS = ("fmc", "bl", "tee", "snp", "ucode")


@dataclass(frozen=True, slots=True)
class TcbFloor:
    """Minimum security patch level per component; None leaves a component unchecked.

    ``fmc`` only applies to Turin-layout TCBs; on Milan/Genoa a set ``fmc`` floor fails
    (the report has no FMC to compare, so the floor cannot be shown to hold).
    """

    bl: int | None = None
    tee: int | None = None
    snp: int | None = None
    ucode: int | None = None
    fmc: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """What a verified report must show. ``None`` (or empty) means "not checked"."""

    allow_debug: bool = False
    allow_migrate_ma: bool = False
    allow_smt: bool = True
    signers: frozenset[SigningKey] = frozenset({SigningKey.VCEK, SigningKey.VLEK})
    csp_ids: frozenset[str] | None = None
    vmpl: int | None = None
    max_vmpl: int | None = None
    min_tcb: Mapping[str, TcbFloor] = field(default_factory=dict)
    min_firmware: FirmwareVersion | None = None
    measurements: frozenset[bytes] | None = None
    host_data: bytes | None = None
    report_data: bytes | None = None
    products: frozenset[Product] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.min_tcb) - set(_TCB_FIELDS)
        if unknown:
            raise ParseError(
                f"min_tcb: unknown TCB {sorted(unknown)} (use {', '.join(_TCB_FIELDS)})"
            )


DEFAULT_POLICY = Policy()


def _tcb_failures(name: str, seen: TcbVersion, floor: TcbFloor) -> list[Failure]:
    failures = []
    for component in _COMPONENTS:
        wanted = getattr(floor, component)
        if wanted is None:
            continue
        value = getattr(seen, component)
        if value is None or value < wanted:
            failures.append(Failure(f"{name}_tcb.{component}", str(value), f">= {wanted}"))
    return failures


def _version_key(v: FirmwareVersion) -> tuple[int, int, int]:
    return (v.major, v.minor, v.build)


def validate(verified: VerifiedReport, policy: Policy = DEFAULT_POLICY) -> None:
    """Check ``verified`` against ``policy``; raise one PolicyViolation listing every failure."""
    r = verified.report
    out: list[Failure] = []
    if r.policy.debug and not policy.allow_debug:
        out.append(Failure("policy.debug", "1", "0 (debug lets the host read guest memory)"))
    if r.policy.migrate_ma and not policy.allow_migrate_ma:
        out.append(Failure("policy.migrate_ma", "1", "0 (no migration agent)"))
    if r.platform_info.smt_enabled and not policy.allow_smt:
        out.append(Failure("platform_info.smt_enabled", "1", "0 (SMT off on the host)"))
    if verified.signer not in policy.signers:
        wanted = " or ".join(sorted(policy.signers)) or "nothing"
        out.append(Failure("key_info.signing_key", verified.signer.value, wanted))
    if (
        policy.csp_ids is not None
        and verified.signer == SigningKey.VLEK
        and verified.csp_id not in policy.csp_ids
    ):
        out.append(
            Failure("vlek.csp_id", str(verified.csp_id), " or ".join(sorted(policy.csp_ids)))
        )
    if policy.vmpl is not None and r.vmpl != policy.vmpl:
        out.append(Failure("vmpl", str(r.vmpl), str(policy.vmpl)))
    if policy.max_vmpl is not None and r.vmpl > policy.max_vmpl:
        out.append(Failure("vmpl", str(r.vmpl), f"<= {policy.max_vmpl}"))
    for name in _TCB_FIELDS:
        if name in policy.min_tcb:
            out += _tcb_failures(name, getattr(r, f"{name}_tcb"), policy.min_tcb[name])
    if policy.min_firmware is not None and _version_key(r.current_version) < _version_key(
        policy.min_firmware
    ):
        out.append(Failure("current_version", str(r.current_version), f">= {policy.min_firmware}"))
    if policy.measurements is not None and r.measurement not in policy.measurements:
        wanted = " or ".join(sorted(m.hex() for m in policy.measurements)) or "nothing"
        out.append(Failure("measurement", r.measurement.hex(), wanted))
    if policy.host_data is not None and r.host_data != policy.host_data:
        out.append(Failure("host_data", r.host_data.hex(), policy.host_data.hex()))
    if policy.report_data is not None and r.report_data != policy.report_data:
        out.append(Failure("report_data", r.report_data.hex(), policy.report_data.hex()))
    if policy.products is not None and verified.product not in policy.products:
        wanted = " or ".join(sorted(policy.products)) or "nothing"
        out.append(Failure("product", verified.product.value, wanted))
    if out:
        raise PolicyViolation(out)


def warnings(policy: Policy) -> list[str]:
    """What ``policy`` does not check (each line says the consequence)."""
    notes = []
    if policy.allow_debug:
        notes.append("debug guests allowed: the host can read and change guest memory")
    if policy.allow_migrate_ma:
        notes.append("migration agents allowed: a migration agent can export the guest")
    if policy.measurements is None:
        notes.append(
            "measurement not pinned: any guest image (firmware, kernel, initrd) is accepted"
        )
    if policy.host_data is None:
        notes.append(
            "HOST_DATA not pinned: the launch configuration (e.g. initdata) is not checked"
        )
    if policy.report_data is None:
        notes.append(
            "REPORT_DATA not pinned: freshness and key binding must be checked by the caller"
        )
    if not policy.min_tcb:
        notes.append("no TCB floor: firmware with known vulnerabilities is accepted")
    elif "reported" not in policy.min_tcb:
        notes.append("no floor on REPORTED_TCB (the TCB the VEK certifies)")
    if policy.min_firmware is None:
        notes.append("no minimum firmware version")
    if policy.vmpl is None and policy.max_vmpl is None:
        notes.append("VMPL not constrained: a report from a less privileged VMPL is accepted")
    if policy.products is None:
        notes.append("products not restricted (Milan, Genoa and Turin accepted)")
    if SigningKey.VLEK in policy.signers and policy.csp_ids is None:
        notes.append("VLEK reports accepted from any cloud provider (no cspID allow-list)")
    return notes


# --- TOML ----------------------------------------------------------------------------------


def _hex(value: Any, size: int, name: str) -> bytes:
    if not isinstance(value, str):
        raise ParseError(f"{name}: expected a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ParseError(f"{name}: not hex") from None
    if len(raw) != size:
        raise ParseError(f"{name}: {len(raw)} bytes, expected {size}")
    return raw


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ParseError(f"{name}: expected a non-negative integer")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParseError(f"{name}: expected a list of strings")
    return value


def _floor(value: Any, name: str) -> TcbFloor:
    if not isinstance(value, dict):
        raise ParseError(f"{name}: expected a table")
    unknown = set(value) - set(_COMPONENTS)
    if unknown:
        raise ParseError(f"{name}: unknown keys {sorted(unknown)}")
    return TcbFloor(**{k: _int(v, f"{name}.{k}") for k, v in value.items()})


def _firmware(value: Any) -> FirmwareVersion:
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ParseError("min_firmware: expected 'major.minor.build', e.g. '1.55.29'")
    return FirmwareVersion(*(int(p) for p in parts))


def _enum_set(
    values: list[str], kind: type[SigningKey] | type[Product], name: str
) -> frozenset[Any]:
    try:
        return frozenset(kind(v) for v in values)
    except ValueError:
        raise ParseError(
            f"{name}: one of {[m.value for m in kind]} expected, got {values}"
        ) from None


def load_policy(text: str) -> Policy:
    """Parse a policy document; its settings live under a top-level ``[snp]`` table."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"policy is not TOML: {exc}") from None
    table = doc.get("snp")
    if not isinstance(table, dict):
        raise ParseError("policy needs an [snp] table")
    known = {f.name for f in fields(Policy)}
    unknown = set(table) - known
    if unknown:
        raise ParseError(f"[snp]: unknown keys {sorted(unknown)}")
    kw: dict[str, Any] = {}
    for flag in ("allow_debug", "allow_migrate_ma", "allow_smt"):
        if flag in table:
            if not isinstance(table[flag], bool):
                raise ParseError(f"{flag}: expected true or false")
            kw[flag] = table[flag]
    if "signers" in table:
        kw["signers"] = _enum_set(_strings(table["signers"], "signers"), SigningKey, "signers")
    if "products" in table:
        kw["products"] = _enum_set(_strings(table["products"], "products"), Product, "products")
    if "csp_ids" in table:
        kw["csp_ids"] = frozenset(_strings(table["csp_ids"], "csp_ids"))
    for name in ("vmpl", "max_vmpl"):
        if name in table:
            kw[name] = _int(table[name], name)
    if "min_tcb" in table:
        tcbs = table["min_tcb"]
        if not isinstance(tcbs, dict):
            raise ParseError("min_tcb: expected a table of tables")
        kw["min_tcb"] = {k: _floor(v, f"min_tcb.{k}") for k, v in tcbs.items()}
    if "min_firmware" in table:
        kw["min_firmware"] = _firmware(table["min_firmware"])
    if "measurements" in table:
        kw["measurements"] = frozenset(
            _hex(m, 48, "measurements") for m in _strings(table["measurements"], "measurements")
        )
    if "host_data" in table:
        kw["host_data"] = _hex(table["host_data"], 32, "host_data")
    if "report_data" in table:
        kw["report_data"] = _hex(table["report_data"], 64, "report_data")
    return Policy(**kw)
