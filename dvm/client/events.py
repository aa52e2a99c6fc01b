"""The vocabulary of the requester machine: states, timers, events in, actions out.

Contract: plain frozen values, no behaviour (the transitions are :mod:`dvm.client.machine`; the
shell that performs the actions is :mod:`dvm.client.session`). An *event* is something the shell
observed or was asked: a relay event (:class:`Received`), the outcome of an action it performed
(:class:`Published`, :class:`PublishRefused`, :class:`RumorsSent`, :class:`VerificationPassed`,
:class:`VerificationRefused`), a fired timer, or a call of the user (:class:`Start`,
:class:`SendInput`, :class:`SendEnd`, :class:`AwaitOutcome`). Clock and randomness come in the
events (``now``, ``nonce``, ``aux_rand``, ``budget_bytes``), never from inside the machine.

An *action* is something the machine asks the shell to do, in order. Four actions are
**milestones** (:data:`Milestone`) that end the user's call: :class:`Ready` (``start`` returns
the verification), :class:`Answered` (``send`` returns the answer), :class:`Finished`
(``finish`` returns the outcome) and :class:`Fail` (the call raises ``error``, one of
:mod:`dvm.client.errors`). A milestone is always the last action of a list, and no action that
asks the shell for a follow-up event (publish, send, verify) shares its list.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip90 import JobRequest

from .errors import AttestationRefused, ClientError
from .options import Step
from .outcome import JobOutcome
from .verify import Verification

__all__ = [
    "Action",
    "Answered",
    "AwaitOutcome",
    "CancelTimer",
    "Fail",
    "Finished",
    "MachineEvent",
    "Milestone",
    "Publish",
    "PublishRefused",
    "Published",
    "Purpose",
    "Ready",
    "Received",
    "Report",
    "RumorsSent",
    "SendEnd",
    "SendInput",
    "SendRumors",
    "Start",
    "StartTimer",
    "State",
    "Subscribe",
    "SubscriptionEnded",
    "Timer",
    "TimerFired",
    "VerificationPassed",
    "VerificationRefused",
    "Verify",
]


class State(StrEnum):
    """Where a job stands (docs/client.md draws the diagram)."""

    CREATED = "created"
    PUBLISHING = "publishing"  # subscribed; the request is being published
    AWAITING_ATTESTATION = "awaiting-attestation"  # P's container key C and C's kind 7100
    VERIFYING = "verifying"  # the shell verifies C's attestation
    READY = "ready"  # verified, nothing in flight (the only state that sends an input)
    SENDING = "sending"  # an input's gift wraps are being published
    AWAITING_ANSWER = "awaiting-answer"
    ENDING = "ending"  # the end message is being published
    FINISHING = "finishing"  # waiting for P's final feedback (success + destroyed, or error)
    AWAITING_RESULT = "awaiting-result"  # a short grace for the NIP-90 result
    DONE = "done"  # the outcome was handed out
    FAILED = "failed"  # refused, timed out or failed before verification: nothing more to do


class Timer(StrEnum):
    """The waits a job bounds; the value is the ``step`` a :class:`ClientTimeout` names."""

    ATTESTATION = "attestation"  # request published -> C's attestation (Timeouts.attestation_s)
    ANSWER = "answer"  # input sent -> its whole answer (Timeouts.answer_s)
    DESTRUCTION = "destruction"  # end -> P's final feedback (Timeouts.destroyed_s)
    RESULT = "result"  # final feedback -> the result, when it has not arrived yet (a grace)


class Purpose(StrEnum):
    """What a :class:`SendRumors` carries (the machine's follow-up differs)."""

    INPUT = "input"
    END = "end"


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Build, sign and publish the request. ``nonce`` and ``aux_rand`` are 32 fresh bytes each."""

    now: int
    nonce: bytes
    aux_rand: bytes


@dataclass(frozen=True, slots=True)
class Published:
    """The request was accepted by ``accepted_by``."""

    accepted_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PublishRefused:
    """No relay accepted the request or a channel message; ``reason`` says why (no secrets)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Received:
    """An event from the job's subscription (signature already verified by the relay layer).

    ``now`` (unix seconds, when it was read) expires gift wraps whose seal carries a NIP-40
    expiration (NIP-17 disappearing messages); None checks no expiry."""

    event: Event
    now: int | None = None


@dataclass(frozen=True, slots=True)
class VerificationPassed:
    verification: Verification


@dataclass(frozen=True, slots=True)
class VerificationRefused:
    error: AttestationRefused


@dataclass(frozen=True, slots=True)
class SendInput:
    """The user sends ``text``; ``budget_bytes`` is the chunk budget the relays allow."""

    text: str
    now: int
    budget_bytes: int


@dataclass(frozen=True, slots=True)
class RumorsSent:
    """Every gift wrap of the last :class:`SendRumors` was accepted by a relay."""


@dataclass(frozen=True, slots=True)
class SendEnd:
    """Send ``["cdvm", "end"]`` (a no-op once the job has ended)."""

    now: int


@dataclass(frozen=True, slots=True)
class AwaitOutcome:
    """The user waits for the result and P's final feedback."""


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class SubscriptionEnded:
    """Every relay closed the job's subscription: no more events will come."""


MachineEvent = (
    Start
    | Published
    | PublishRefused
    | Received
    | VerificationPassed
    | VerificationRefused
    | SendInput
    | RumorsSent
    | SendEnd
    | AwaitOutcome
    | TimerFired
    | SubscriptionEnded
)


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Open the job's subscription (and wait for its EOSE) before anything is published."""

    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish the signed request; answer :class:`Published` or :class:`PublishRefused`."""

    event: Event


@dataclass(frozen=True, slots=True)
class Verify:
    """Verify C's attestation (:func:`dvm.client.verify.verify_attestation` with the options'
    policy, trust and trusted images, and ``now``); answer :class:`VerificationPassed` or
    :class:`VerificationRefused`."""

    attestation: Event
    request: JobRequest
    container: str


@dataclass(frozen=True, slots=True)
class SendRumors:
    """Seal each rumor with the session key, gift-wrap it to ``recipient`` (the options' wrap
    kind) and publish it; answer :class:`RumorsSent` or :class:`PublishRefused`."""

    rumors: tuple[UnsignedEvent, ...]
    recipient: PublicKey
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Fire :class:`TimerFired` ``timer`` after ``timeout_s`` unless cancelled first."""

    timer: Timer
    timeout_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Report:
    """Tell the progress listener that ``step`` completed (a one-line, secret-free detail)."""

    step: Step
    detail: str


@dataclass(frozen=True, slots=True)
class Ready:
    verification: Verification


@dataclass(frozen=True, slots=True)
class Answered:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    outcome: JobOutcome


@dataclass(frozen=True, slots=True)
class Fail:
    error: ClientError


Milestone = Ready | Answered | Finished | Fail

Action = (
    Subscribe
    | Publish
    | Verify
    | SendRumors
    | StartTimer
    | CancelTimer
    | Report
    | Ready
    | Answered
    | Finished
    | Fail
)
