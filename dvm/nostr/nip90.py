"""NIP-90 Data Vending Machine codecs, as profiled by cdvm/1 (DESIGN §3.2, §3.3, §3.8).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md

Three messages, each with a ``build_*`` (typed values -> :class:`UnsignedEvent`) and a
``parse_*`` (verified :class:`Event` -> typed value, structural checks only):

* **job request** (kind 5000-5999, signed by the requester U): exactly one ``["p", P]``, exactly
  one ``["tee", kind]``, exactly one cdvm ``["nonce", <64 hex>]`` (two items; the NIP-13 proof of
  work tag ``["nonce", counter, target]`` has three and is left to :mod:`dvm.nostr.nip13`),
  ``["param", name, value]`` with unique names, optional ``["session", S]``, ``["result-to", U]``
  (U = the author only), ``["relays", ...]``, ``["expiration", t]``, ``["output", mime]``,
  ``["bid", msat]`` and public ``i`` references.
  No confidential data: the parser refuses the ``encrypted`` tag, non-empty content (where
  NIP-90 puts encrypted params) and ``i`` tags of input type ``text`` (inline data).
* **job result** (request kind + 1000, signed by the container C): ``["e", job]``,
  ``["p", U]``, ``["encrypted"]``, ``["request", <request JSON>]``, never an ``i`` tag. The
  content is the NIP-44 ciphertext to :attr:`JobRequest.result_key`, opaque here. The embedded
  request is parsed and verified.
* **job feedback** (kind 7000, signed by the provider P): ``["status", status, extra]`` where
  ``extra`` is the machine-readable :class:`ErrorReason` when the status is ``error``,
  ``["e", job]``, ``["p", U]``, optional ``["container", C]`` and ``["destroyed", "true"]``.

Unknown tags are ignored (NIP-01 lets anyone add tags); a known tag that appears twice where one
is meant, or has the wrong shape, is a :class:`CodecError`: ambiguity is where two parsers (the
node's and the container's) would disagree. Wire decisions are recorded in ``docs/protocol.md``.

Why this module is over the ~400-line guide: it is one NIP, three messages whose codecs share
the tag helpers (exactly-one, at-most-one, ``e``/``p``, decimals), and the cdvm/1 profile of the
request (the ``nonce``, ``session`` and ``tee`` tags, :class:`TeeKind`) is part of parsing it:
the node and the container must run the same parser on the same event. What cdvm/1 *decides*
from those tags lives in :mod:`dvm.cdvm` (the GPU flag and the evidence each TEE kind needs in
``dvm.cdvm.tee``; the job check in ``dvm.cdvm.jobcheck``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .errors import CodecError, NostrError
from .event import Event, Tags, UnsignedEvent
from .hex64 import is_hex64
from .keys import PublicKey

__all__ = [
    "FEEDBACK_KIND",
    "JOB_REQUEST_KINDS",
    "JOB_RESULT_KINDS",
    "RESULT_KIND_OFFSET",
    "ErrorReason",
    "FeedbackStatus",
    "InputType",
    "JobFeedback",
    "JobInput",
    "JobRequest",
    "JobResult",
    "TeeKind",
    "build_job_feedback",
    "build_job_request",
    "build_job_result",
    "parse_job_feedback",
    "parse_job_request",
    "parse_job_result",
]

JOB_REQUEST_KINDS = range(5000, 6000)
JOB_RESULT_KINDS = range(6000, 7000)
RESULT_KIND_OFFSET = 1000
FEEDBACK_KIND = 7000

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_DECIMAL = 2**63 - 1


class TeeKind(StrEnum):
    """The TEE kinds cdvm/1 knows. A request may name another; the node then answers
    ``unsupported-tee``, so parsers keep the tag as a string."""

    SEV_SNP = "sev-snp"
    SEV_SNP_NVIDIA_H100 = "sev-snp+nvidia-h100"
    SIMULATED = "simulated"


class InputType(StrEnum):
    """NIP-90 ``i`` tag input types (the NIP says the type MUST be one of these)."""

    URL = "url"
    EVENT = "event"
    JOB = "job"
    TEXT = "text"


class FeedbackStatus(StrEnum):
    """NIP-90 "Job feedback status"."""

    PAYMENT_REQUIRED = "payment-required"
    PROCESSING = "processing"
    ERROR = "error"
    SUCCESS = "success"
    PARTIAL = "partial"


class ErrorReason(StrEnum):
    """Machine-readable reason of an ``error`` feedback (cdvm/1, DESIGN §3.3)."""

    UNSUPPORTED_MODEL = "unsupported-model"
    UNSUPPORTED_TEE = "unsupported-tee"
    CAPACITY = "capacity"
    RATE_LIMITED = "rate-limited"
    BAD_REQUEST = "bad-request"
    LAUNCH_FAILED = "launch-failed"
    TIMEOUT = "timeout"
    #: the requester deleted its request (NIP-09) while the job ran: the container was destroyed
    CANCELLED = "cancelled"


# --- small field checks (messages name the field, never its value) --------------------------


def _pubkey_hex(value: str, what: str) -> str:
    try:
        return PublicKey.from_hex(value).hex()
    except NostrError:
        raise CodecError(f"{what} is not a valid public key") from None


def _event_id(value: str, what: str) -> str:
    if not is_hex64(value):
        raise CodecError(f"{what} must be 64 lowercase hex characters")
    return value


def _decimal(value: str, what: str) -> int:
    if not _DECIMAL.fullmatch(value) or int(value) > _MAX_DECIMAL:
        raise CodecError(f"{what} must be a non-negative decimal integer")
    return int(value)


def _named(tags: Tags, name: str) -> list[tuple[str, ...]]:
    return [t for t in tags if t[0] == name]


def _at_most_one(tags: Tags, name: str, size: int) -> tuple[str, ...] | None:
    found = _named(tags, name)
    if len(found) > 1:
        raise CodecError(f"more than one {name!r} tag")
    if found and len(found[0]) != size:
        raise CodecError(f"{name!r} tag must have {size - 1} value(s)")
    return found[0] if found else None


def _exactly_one(tags: Tags, name: str, size: int) -> tuple[str, ...]:
    tag = _at_most_one(tags, name, size)
    if tag is None:
        raise CodecError(f"missing {name!r} tag")
    return tag


def _amount(tags: Tags) -> int | None:
    """NIP-90 ``["amount", msat, bolt11?]``: the bolt11 is kept in the event, not parsed."""
    found = _named(tags, "amount")
    if len(found) > 1:
        raise CodecError("more than one 'amount' tag")
    if not found:
        return None
    if len(found[0]) not in (2, 3):
        raise CodecError("'amount' tag must be ['amount', msat, bolt11?]")
    return _decimal(found[0][1], "'amount'")


def _single_e(tags: Tags) -> str:
    found = _named(tags, "e")
    if len(found) != 1:
        raise CodecError(f"expected exactly one 'e' tag, found {len(found)}")
    if len(found[0]) < 2:
        raise CodecError("'e' tag has no value")
    return _event_id(found[0][1], "'e' tag")


def _single_p(tags: Tags, what: str) -> str:
    found = _named(tags, "p")
    if len(found) != 1:
        raise CodecError(f"expected exactly one 'p' tag ({what}), found {len(found)}")
    if len(found[0]) < 2:
        raise CodecError("'p' tag has no value")
    return _pubkey_hex(found[0][1], f"'p' tag ({what})")


# --- job request -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobInput:
    """A NIP-90 ``i`` tag. cdvm/1 accepts only public references (not ``text``)."""

    data: str
    input_type: InputType
    relay: str = ""
    marker: str = ""

    def to_tag(self) -> tuple[str, ...]:
        tag: tuple[str, ...] = ("i", self.data, self.input_type.value)
        if self.relay or self.marker:
            tag += (self.relay,)
        if self.marker:
            tag += (self.marker,)
        return tag


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A parsed cdvm/1 job request. ``event`` is the verified original (never rebuilt)."""

    event: Event
    provider: str
    tee: str
    nonce: str
    params: tuple[tuple[str, str], ...]
    session: str | None = None
    result_to: str | None = None  # ["result-to", U]: the result stays readable by U
    relays: tuple[str, ...] = ()
    expiration: int | None = None
    output: str | None = None
    bid_msat: int | None = None
    inputs: tuple[JobInput, ...] = ()

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def kind(self) -> int:
        return self.event.kind

    @property
    def requester(self) -> str:
        """The request's author U (hex)."""
        return self.event.pubkey

    @property
    def reply_to(self) -> str:
        """The key the container talks to: the session key S if given, else U (DESIGN §3.2)."""
        return self.session if self.session is not None else self.event.pubkey

    @property
    def result_key(self) -> str:
        """The key the result is encrypted to: U if ``result-to`` names it, else :attr:`reply_to`.

        By default that is the per-job session key S, which the requester wipes after the job:
        the stored result then stays unreadable even if U leaks later (docs/protocol.md §6).
        """
        return self.result_to if self.result_to is not None else self.reply_to

    @property
    def model(self) -> str | None:
        return self.param("model")

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def _parse_cdvm_nonce(tags: Tags) -> str:
    # Two items: the cdvm freshness nonce. Three items: NIP-13 proof of work (see nip13.py).
    cdvm = [t for t in _named(tags, "nonce") if len(t) != 3]
    if len(cdvm) != 1:
        raise CodecError(f"expected exactly one cdvm 'nonce' tag, found {len(cdvm)}")
    if len(cdvm[0]) != 2 or not is_hex64(cdvm[0][1]):
        raise CodecError("cdvm 'nonce' tag must be ['nonce', <64 lowercase hex>]")
    return cdvm[0][1]


def _parse_params(tags: Tags) -> tuple[tuple[str, str], ...]:
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    for tag in _named(tags, "param"):
        if len(tag) != 3:
            raise CodecError("'param' tag must be ['param', name, value]")
        if not tag[1]:
            raise CodecError("'param' tag has an empty name")
        if tag[1] in seen:
            raise CodecError(f"parameter {tag[1][:32]!r} given twice")
        seen.add(tag[1])
        params.append((tag[1], tag[2]))
    return tuple(params)


def _parse_inputs(tags: Tags) -> tuple[JobInput, ...]:
    inputs: list[JobInput] = []
    for tag in _named(tags, "i"):
        if not 3 <= len(tag) <= 5:
            raise CodecError("'i' tag must be ['i', data, type, relay?, marker?]")
        try:
            input_type = InputType(tag[2])
        except ValueError:
            raise CodecError("'i' tag has an unknown input type") from None
        if input_type is InputType.TEXT:
            raise CodecError("cdvm requests carry no inline 'i' text: send input over the channel")
        relay = tag[3] if len(tag) > 3 else ""
        marker = tag[4] if len(tag) > 4 else ""
        inputs.append(JobInput(tag[1], input_type, relay, marker))
    return tuple(inputs)


def _parse_relays(tags: Tags) -> tuple[str, ...]:
    found = _named(tags, "relays")
    if len(found) > 1:
        raise CodecError("more than one 'relays' tag")
    if not found:
        return ()
    relays = found[0][1:]
    for url in relays:
        if not url.startswith(("wss://", "ws://")):
            raise CodecError("'relays' entries must be ws:// or wss:// URLs")
    return relays


def _result_to(tags: Tags, author: str) -> str | None:
    # Only the author may be named: the tag keeps the result readable by U, nothing more (a
    # third key would be a new way for the output to leave the requester's hands).
    tag = _at_most_one(tags, "result-to", 2)
    if tag is None:
        return None
    if _pubkey_hex(tag[1], "'result-to' tag") != author:
        raise CodecError("'result-to' must name the request's author")
    return author


def _request_fields(tags: Tags, content: str, author: str) -> dict[str, Any]:
    """The typed fields of a request's tags (the keyword arguments of :class:`JobRequest`)."""
    if _named(tags, "encrypted"):
        raise CodecError("cdvm requests must not carry 'encrypted' params")
    if content:
        raise CodecError("cdvm request content must be empty (no encrypted params)")
    session_tag = _at_most_one(tags, "session", 2)
    expiration_tag = _at_most_one(tags, "expiration", 2)
    output_tag = _at_most_one(tags, "output", 2)
    bid_tag = _at_most_one(tags, "bid", 2)
    tee = _exactly_one(tags, "tee", 2)[1]
    if not tee:
        raise CodecError("'tee' tag is empty")
    return {
        "provider": _single_p(tags, "provider"),
        "tee": tee,
        "nonce": _parse_cdvm_nonce(tags),
        "params": _parse_params(tags),
        "session": _pubkey_hex(session_tag[1], "'session' tag") if session_tag else None,
        "result_to": _result_to(tags, author),
        "relays": _parse_relays(tags),
        "expiration": _decimal(expiration_tag[1], "'expiration'") if expiration_tag else None,
        "output": output_tag[1] if output_tag else None,
        "bid_msat": _decimal(bid_tag[1], "'bid'") if bid_tag else None,
        "inputs": _parse_inputs(tags),
    }


def build_job_request(
    *,
    requester: PublicKey,
    provider: PublicKey,
    tee: str,
    nonce: bytes,
    created_at: int,
    kind: int = 5050,
    params: Sequence[tuple[str, str]] = (),
    session: PublicKey | None = None,
    result_to_requester: bool = False,
    relays: Sequence[str] = (),
    expiration: int | None = None,
    output: str | None = None,
    bid_msat: int | None = None,
    inputs: Sequence[JobInput] = (),
    extra_tags: Sequence[Sequence[str]] = (),
) -> UnsignedEvent:
    """A job request for ``requester`` to sign. ``nonce`` is 32 fresh random bytes.

    ``result_to_requester`` adds ``["result-to", U]``: the result is then encrypted to U rather
    than to the session key (docs/protocol.md §6).

    The tags are checked by the same code as :func:`parse_job_request`, so whatever this builds
    parses back to the same values.
    """
    if kind not in JOB_REQUEST_KINDS:
        raise CodecError(f"job request kind {kind} is outside 5000-5999")
    if len(nonce) != 32:
        raise CodecError("the request nonce must be 32 bytes")
    tags: list[tuple[str, ...]] = [("p", provider.hex()), ("tee", tee), ("nonce", nonce.hex())]
    tags += [("param", name, value) for name, value in params]
    if session is not None:
        tags.append(("session", session.hex()))
    if result_to_requester:
        tags.append(("result-to", requester.hex()))
    if relays:
        tags.append(("relays", *relays))
    if expiration is not None:
        tags.append(("expiration", str(expiration)))
    if output is not None:
        tags.append(("output", output))
    if bid_msat is not None:
        tags.append(("bid", str(bid_msat)))
    tags += [item.to_tag() for item in inputs]
    tags += [tuple(t) for t in extra_tags]
    unsigned = UnsignedEvent(requester.hex(), created_at, kind, tuple(tags), "")
    _request_fields(unsigned.tags, unsigned.content, unsigned.pubkey)
    return unsigned


def parse_job_request(event: Event) -> JobRequest:
    """Parse a verified kind 5000-5999 event as a cdvm/1 job request, or raise CodecError."""
    if event.kind not in JOB_REQUEST_KINDS:
        raise CodecError(f"kind {event.kind} is not a job request (5000-5999)")
    return JobRequest(event=event, **_request_fields(event.tags, event.content, event.pubkey))


# --- job result ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobResult:
    """A parsed cdvm/1 job result; ``content`` is the NIP-44 ciphertext, still encrypted."""

    event: Event
    request: JobRequest
    requester: str
    amount_msat: int | None = None

    @property
    def request_id(self) -> str:
        return self.request.id

    @property
    def content(self) -> str:
        return self.event.content


def build_job_result(
    request: JobRequest,
    *,
    author: PublicKey,
    ciphertext: str,
    created_at: int,
    amount_msat: int | None = None,
) -> UnsignedEvent:
    """The result of ``request``, to be signed by ``author`` (the container key C).

    ``ciphertext`` is the NIP-44 v2 payload of the output, encrypted by the caller to
    :attr:`JobRequest.result_key` (S by default, U with ``result-to``; docs/protocol.md §6;
    NIP-90 names NIP-04 here, cdvm/1 uses NIP-44 on purpose).
    """
    if not ciphertext:
        raise CodecError("a cdvm result carries the encrypted output: content is empty")
    tags: list[tuple[str, ...]] = [
        ("request", request.event.to_json()),
        ("e", request.id),
        ("p", request.requester),
        ("encrypted",),
    ]
    if amount_msat is not None:
        tags.append(("amount", str(amount_msat)))
    kind = request.kind + RESULT_KIND_OFFSET
    return UnsignedEvent(author.hex(), created_at, kind, tuple(tags), ciphertext)


def parse_job_result(event: Event) -> JobResult:
    """Parse a verified result; its ``request`` tag must be the verified request it names."""
    if event.kind not in JOB_RESULT_KINDS:
        raise CodecError(f"kind {event.kind} is not a job result (6000-6999)")
    if _named(event.tags, "i"):
        raise CodecError("a cdvm result must not repeat its input in clear 'i' tags")
    if _at_most_one(event.tags, "encrypted", 1) is None:
        raise CodecError("a cdvm result must carry the 'encrypted' tag")
    if not event.content:
        raise CodecError("result content is empty")
    job_id = _single_e(event.tags)
    requester = _single_p(event.tags, "requester")
    request_json = _exactly_one(event.tags, "request", 2)[1]
    try:
        request = parse_job_request(Event.from_json(request_json))
    except NostrError as exc:
        raise CodecError(f"the embedded request does not parse: {exc}") from None
    if request.id != job_id:
        raise CodecError("the embedded request is not the job named by the 'e' tag")
    if request.kind + RESULT_KIND_OFFSET != event.kind:
        raise CodecError(f"result kind {event.kind} does not answer request kind {request.kind}")
    if request.requester != requester:
        raise CodecError("the 'p' tag is not the author of the request")
    return JobResult(
        event=event, request=request, requester=requester, amount_msat=_amount(event.tags)
    )


# --- job feedback ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobFeedback:
    """A parsed kind-7000 feedback. ``reason`` is set exactly when ``status`` is ``error``."""

    event: Event
    request_id: str
    requester: str
    status: FeedbackStatus
    reason: ErrorReason | None = None
    extra: str = ""
    container: str | None = None
    destroyed: bool = False
    amount_msat: int | None = None

    @property
    def provider(self) -> str:
        return self.event.pubkey

    @property
    def content(self) -> str:
        return self.event.content


def _feedback_fields(tags: Tags) -> dict[str, Any]:
    """The typed fields of a feedback's tags (the keyword arguments of :class:`JobFeedback`)."""
    status_tags = _named(tags, "status")
    if len(status_tags) != 1:
        raise CodecError(f"expected exactly one 'status' tag, found {len(status_tags)}")
    status_tag = status_tags[0]
    if not 2 <= len(status_tag) <= 3:
        raise CodecError("'status' tag must be ['status', status, extra?]")
    try:
        status = FeedbackStatus(status_tag[1])
    except ValueError:
        raise CodecError("unknown feedback status") from None
    extra = status_tag[2] if len(status_tag) == 3 else ""
    reason: ErrorReason | None = None
    if status is FeedbackStatus.ERROR:
        try:
            reason = ErrorReason(extra)
        except ValueError:
            raise CodecError("an 'error' status must name a known reason") from None
    container_tag = _at_most_one(tags, "container", 2)
    destroyed_tag = _at_most_one(tags, "destroyed", 2)
    if destroyed_tag is not None:
        if destroyed_tag[1] != "true":
            raise CodecError("'destroyed' tag must be ['destroyed', 'true']")
        if status not in (FeedbackStatus.SUCCESS, FeedbackStatus.ERROR):
            raise CodecError("'destroyed' only ends a job: status must be success or error")
    return {
        "request_id": _single_e(tags),
        "requester": _single_p(tags, "requester"),
        "status": status,
        "reason": reason,
        "extra": extra,
        "container": _pubkey_hex(container_tag[1], "'container' tag") if container_tag else None,
        "destroyed": destroyed_tag is not None,
        "amount_msat": _amount(tags),
    }


def build_job_feedback(
    *,
    author: PublicKey,
    request_id: str,
    requester: PublicKey,
    status: FeedbackStatus,
    created_at: int,
    reason: ErrorReason | None = None,
    extra: str = "",
    container: PublicKey | None = None,
    destroyed: bool = False,
    amount_msat: int | None = None,
    content: str = "",
) -> UnsignedEvent:
    """Feedback from the provider ``author``. ``error`` needs a ``reason`` (and only it does);
    other statuses may carry human-readable ``extra``; ``content`` is free human text."""
    if (status is FeedbackStatus.ERROR) != (reason is not None):
        raise CodecError("a reason goes with, and only with, the 'error' status")
    if reason is not None and extra:
        raise CodecError("an 'error' status carries its reason in place of extra text")
    status_tag: tuple[str, ...] = ("status", status.value)
    if reason is not None:
        status_tag += (reason.value,)
    elif extra:
        status_tag += (extra,)
    tags: list[tuple[str, ...]] = [status_tag, ("e", request_id), ("p", requester.hex())]
    if container is not None:
        tags.append(("container", container.hex()))
    if amount_msat is not None:
        tags.append(("amount", str(amount_msat)))
    if destroyed:
        tags.append(("destroyed", "true"))
    unsigned = UnsignedEvent(author.hex(), created_at, FEEDBACK_KIND, tuple(tags), content)
    _feedback_fields(unsigned.tags)
    return unsigned


def parse_job_feedback(event: Event) -> JobFeedback:
    """Parse a verified kind-7000 event as cdvm/1 feedback, or raise CodecError."""
    if event.kind != FEEDBACK_KIND:
        raise CodecError(f"kind {event.kind} is not job feedback (7000)")
    return JobFeedback(event=event, **_feedback_fields(event.tags))
