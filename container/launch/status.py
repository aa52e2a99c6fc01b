"""What a job container tells its launcher: status lines on stdout and its exit code.

Spec: docs/launch.md §2 (status lines) and §3 (exit codes). This is the one definition of
both, written by the container (:mod:`container.runtime`) and read by the node
(:mod:`dvm.node.launcher` maps an exit to the final feedback).

Contract: a status line is one JSON object on one line, ``status`` first::

    {"status":"attested","container":"<64 hex>","attestation":"<64 hex>"}
    {"status":"ready"}
    {"status":"delivered","result":"<64 hex>"}
    {"status":"destroying","reason":"<DestroyReason>"}

:func:`build_status_line` writes exactly these (compact separators, no newline) and refuses a
line its kind does not allow; :func:`parse_status_line` reads one line of at most
:data:`MAX_STATUS_LINE_BYTES` and raises :class:`ValueError` for anything else (the launcher
then ignores that line: stdout is the container's, so garbage must never crash the node).
:data:`REASON_EXIT_CODES` pairs each ``destroying`` reason with the exit codes that may follow
it.

Standard library only, on purpose: the node's tests run a stdlib-only fake container that
imports this module alone (tests/unit/dvm/node/fake_runtime).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "MAX_STATUS_LINE_BYTES",
    "REASON_EXIT_CODES",
    "DestroyReason",
    "ExitCode",
    "StatusKind",
    "StatusLine",
    "build_status_line",
    "parse_status_line",
]

#: The longest stdout line a launcher reads as a status line (the longest real one is ~170).
MAX_STATUS_LINE_BYTES = 4096
# Not dvm.nostr.hex64: this module is standard library only (see the docstring).
_HEX64 = re.compile(r"[0-9a-f]{64}")


class StatusKind(StrEnum):
    """The ``status`` of a status line (docs/launch.md §2)."""

    ATTESTED = "attested"  # the kind-7100 event was accepted by a relay
    READY = "ready"  # the model matched its sha256 and loaded
    DELIVERED = "delivered"  # the NIP-90 result was published
    DESTROYING = "destroying"  # keys and scratch are being wiped; the process exits next


class DestroyReason(StrEnum):
    """The ``reason`` of the ``destroying`` status line (docs/launch.md §2)."""

    END = "end"
    ONESHOT = "oneshot"
    ATTESTATION_TIMEOUT = "attestation-timeout"
    IDLE_TIMEOUT = "idle-timeout"
    DEADLINE = "deadline"
    ERROR = "error"


class ExitCode(IntEnum):
    """The container's exit codes (docs/launch.md §3)."""

    OK = 0  # /end, ["cdvm","end"], or the one-shot answer delivered
    FAILURE = 1  # any other failure (the runtime's per-job boundary)
    ATTESTATION_TIMEOUT = 10  # attestation not used within limits.attestation_timeout_s
    IDLE_TIMEOUT = 11  # idle for limits.idle_timeout_s
    DEADLINE = 12  # hard deadline limits.deadline_s reached
    BAD_SPEC = 20  # malformed job spec
    MODEL = 21  # model missing, wrong sha256, or failed to load
    EVIDENCE = 22  # no evidence for our REPORT_DATA
    RELAY = 30  # no relay accepted our events


#: The exit codes that may follow each ``destroying`` reason; every code is listed once.
REASON_EXIT_CODES: Mapping[DestroyReason, frozenset[ExitCode]] = MappingProxyType(
    {
        DestroyReason.END: frozenset({ExitCode.OK}),
        DestroyReason.ONESHOT: frozenset({ExitCode.OK}),
        DestroyReason.ATTESTATION_TIMEOUT: frozenset({ExitCode.ATTESTATION_TIMEOUT}),
        DestroyReason.IDLE_TIMEOUT: frozenset({ExitCode.IDLE_TIMEOUT}),
        DestroyReason.DEADLINE: frozenset({ExitCode.DEADLINE}),
        DestroyReason.ERROR: frozenset(
            {
                ExitCode.FAILURE,
                ExitCode.BAD_SPEC,
                ExitCode.MODEL,
                ExitCode.EVIDENCE,
                ExitCode.RELAY,
            }
        ),
    }
)


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One status line. ``container``/``attestation``/``result`` are 64-hex ids; which fields
    a kind carries is in the module docstring."""

    kind: StatusKind
    container: str | None = None
    attestation: str | None = None
    result: str | None = None
    reason: DestroyReason | None = None


def _fields(line: StatusLine) -> dict[str, str | None]:
    """The fields of ``line``'s kind, in wire order (``status`` first)."""
    match line.kind:
        case StatusKind.ATTESTED:
            return {"container": line.container, "attestation": line.attestation}
        case StatusKind.DELIVERED:
            return {"result": line.result}
        case StatusKind.DESTROYING:
            return {"reason": line.reason.value if line.reason is not None else None}
        case StatusKind.READY:
            return {}


def build_status_line(line: StatusLine) -> str:
    """The wire form of ``line`` (no newline); ValueError if it is not a line of its kind."""
    fields = _fields(line)
    body: dict[str, str] = {"status": line.kind.value}
    for key, value in fields.items():
        if value is None:
            raise ValueError(f"a {line.kind.value} status line needs {key!r}")
        body[key] = value
    text = json.dumps(body, separators=(",", ":"))
    if parse_status_line(text.encode("utf-8")) != line:  # never write what a launcher refuses
        raise ValueError(f"not a valid {line.kind.value} status line")
    return text


def _hex_field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"status line field {key!r} must be 64 lowercase hex")
    return value


def parse_status_line(line: bytes) -> StatusLine:
    """Parse one stdout line of a container, or raise ValueError (the line is then ignored)."""
    if len(line) > MAX_STATUS_LINE_BYTES:
        raise ValueError(f"status line of {len(line)} bytes is too long")
    try:
        body = json.loads(line)
    except (ValueError, RecursionError):
        raise ValueError("status line is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("status line is not a JSON object")  # noqa: TRY004 - one error type for the caller
    try:
        kind = StatusKind(str(body.get("status")))
    except ValueError:
        raise ValueError("status line has an unknown status") from None
    if kind is StatusKind.ATTESTED:
        return StatusLine(
            kind,
            container=_hex_field(body, "container"),
            attestation=_hex_field(body, "attestation"),
        )
    if kind is StatusKind.DELIVERED:
        return StatusLine(kind, result=_hex_field(body, "result"))
    if kind is StatusKind.DESTROYING:
        try:
            return StatusLine(kind, reason=DestroyReason(str(body.get("reason"))))
        except ValueError:
            raise ValueError("destroying status line has an unknown reason") from None
    return StatusLine(kind)
