"""The vocabulary of the job state machine: states, timers, events and actions.

Contract: plain frozen values, no behaviour (the transitions are :mod:`container.machine`).
Events carry ids, reasons and flags only, never the requester's input or the model's output,
so the machine never holds plaintext. The status kinds, destroy reasons and exit codes the
actions carry are the launch contract's (:mod:`container.launch`, docs/launch.md §2-§3).

``plain`` (on the channel events and the send actions) marks a standard NIP-17 peer: its
message carried no ``["e", job]`` and no ``cdvm`` tag (:func:`dvm.cdvm.channel.parse_channel_rumor`
with ``allow_plain``). Such a peer gets one readable kind-14 message per answer, never a
partial, an empty message or a ``cdvm`` tag (docs/standard-clients.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dvm.cdvm.channel import ChannelError

from .launch import DestroyReason, ExitCode, StatusKind

__all__ = [
    "Action",
    "AttestationPublished",
    "CancelRun",
    "CancelTimer",
    "Destroy",
    "EmitStatus",
    "EndReceived",
    "Event",
    "EvidenceFailed",
    "EvidenceObtained",
    "Failed",
    "GetEvidence",
    "InputReceived",
    "InputRefused",
    "KeyMade",
    "LoadModel",
    "MakeKey",
    "ModelFailed",
    "ModelReady",
    "OutputBatch",
    "PublishAttestation",
    "PublishFailed",
    "PublishResult",
    "ResultPublished",
    "RunFailed",
    "RunModel",
    "SendEnded",
    "SendError",
    "SendOutput",
    "SendReady",
    "SpecParsed",
    "SpecRejected",
    "StartTimer",
    "State",
    "Subscribe",
    "Subscribed",
    "Timer",
    "TimerFired",
]


class State(StrEnum):
    CREATED = "created"
    KEYED = "keyed"
    ATTESTED = "attested"
    AWAITING_INPUT = "awaiting-input"
    RUNNING = "running"
    DELIVERED = "delivered"
    DESTROYED = "destroyed"


class Timer(StrEnum):
    ATTESTATION = "attestation"  # attestation published but not used (limits.attestation_timeout_s)
    IDLE = "idle"  # channel in use, nothing running (limits.idle_timeout_s)
    DEADLINE = "deadline"  # hard deadline from the start (limits.deadline_s)


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpecParsed:
    oneshot: bool


@dataclass(frozen=True, slots=True)
class SpecRejected:
    pass


@dataclass(frozen=True, slots=True)
class KeyMade:
    pass


@dataclass(frozen=True, slots=True)
class EvidenceObtained:
    pass


@dataclass(frozen=True, slots=True)
class EvidenceFailed:
    pass


@dataclass(frozen=True, slots=True)
class Subscribed:
    pass


@dataclass(frozen=True, slots=True)
class AttestationPublished:
    pass


@dataclass(frozen=True, slots=True)
class PublishFailed:
    """No relay accepted the attestation or the result (exit 30)."""


@dataclass(frozen=True, slots=True)
class ModelReady:
    pass


@dataclass(frozen=True, slots=True)
class ModelFailed:
    """The model file is missing, fails its sha256, or does not load (exit 21)."""


@dataclass(frozen=True, slots=True)
class InputReceived:
    input_id: str
    plain: bool = False  # a standard NIP-17 client wrote it


@dataclass(frozen=True, slots=True)
class InputRefused:
    """An authenticated message of the requester that cannot be an input (too large, bad chunk)."""

    reason: ChannelError
    plain: bool = False


@dataclass(frozen=True, slots=True)
class EndReceived:
    plain: bool = False


@dataclass(frozen=True, slots=True)
class OutputBatch:
    """The running model produced a batch of output for ``input_id`` (``final``: the last)."""

    input_id: str
    final: bool


@dataclass(frozen=True, slots=True)
class RunFailed:
    input_id: str
    reason: ChannelError


@dataclass(frozen=True, slots=True)
class ResultPublished:
    pass


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Failed:
    """Any other failure caught at the runtime's per-job boundary (exit 1)."""


Event = (
    SpecParsed
    | SpecRejected
    | KeyMade
    | EvidenceObtained
    | EvidenceFailed
    | Subscribed
    | AttestationPublished
    | PublishFailed
    | ModelReady
    | ModelFailed
    | InputReceived
    | InputRefused
    | EndReceived
    | OutputBatch
    | RunFailed
    | ResultPublished
    | TimerFired
    | Failed
)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class MakeKey:
    pass


@dataclass(frozen=True, slots=True)
class LoadModel:
    pass


@dataclass(frozen=True, slots=True)
class GetEvidence:
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    pass


@dataclass(frozen=True, slots=True)
class PublishAttestation:
    pass


@dataclass(frozen=True, slots=True)
class EmitStatus:
    """Write a status line; ``destroying`` is never asked for this way (it goes with
    :class:`Destroy`)."""

    status: StatusKind


@dataclass(frozen=True, slots=True)
class SendReady:
    pass


@dataclass(frozen=True, slots=True)
class RunModel:
    input_id: str


@dataclass(frozen=True, slots=True)
class CancelRun:
    input_id: str


@dataclass(frozen=True, slots=True)
class SendOutput:
    """Send output ``seq`` of ``input_id``. ``plain``: the whole answer as one readable
    message (a standard NIP-17 peer; only ever ``final``, ``seq`` 0)."""

    input_id: str
    seq: int
    final: bool
    plain: bool = False


@dataclass(frozen=True, slots=True)
class SendError:
    reason: ChannelError
    plain: bool = False  # a readable message without cdvm tags


@dataclass(frozen=True, slots=True)
class SendEnded:
    """Tell a standard NIP-17 peer, in a last readable message, that the session ended."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    pass


@dataclass(frozen=True, slots=True)
class Destroy:
    reason: DestroyReason
    exit_code: ExitCode


Action = (
    StartTimer
    | CancelTimer
    | MakeKey
    | LoadModel
    | GetEvidence
    | Subscribe
    | PublishAttestation
    | EmitStatus
    | SendReady
    | RunModel
    | CancelRun
    | SendOutput
    | SendError
    | SendEnded
    | PublishResult
    | Destroy
)
