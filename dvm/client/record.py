"""What a job's subscription told the requester so far: the pure bookkeeping of the machine.

Spec: DESIGN §3.3-§3.8, ``docs/client.md`` §"The flow". Pure (no I/O, clock or randomness):
:meth:`JobRecord.add` takes one verified relay event and files it, and never raises -- a relay,
a stranger or a garbage event cannot make the client fail. The transitions (when a wait is over,
what is sent) are :mod:`dvm.client.machine`'s; this class only says what is known.

What counts, and what is ignored (counted in :attr:`JobRecord.ignored`, by reason):

- feedback (7000) only if signed by the provider P, well formed and of this job; its first
  ``["container", C]`` names C (a second one is ignored); ``error`` is remembered as the job's
  failure and, like ``success``, as the final feedback;
- attestations (7100) only if signed by C; the machine verifies the first one and closes the
  record to more (:meth:`JobRecord.close_attestations`);
- gift wraps (1059/21059) only through the :class:`~dvm.client.reader.ChannelReader` (C's seal,
  this job, to S, no replay, chunks checked): outputs go to :attr:`JobRecord.answers`, a channel
  error becomes the job's failure;
- the result (request kind + 1000) only if signed by C, of this job, and it decrypts with NIP-44
  under conv(R, C) where R is the key our request named for it
  (:attr:`~dvm.nostr.nip90.JobRequest.result_key`: S by default, U with ``["result-to", U]``;
  docs/protocol.md §6) -- never with the other key, so a result readable by U although the
  request asked for S is ignored; the first one wins.

Events that arrive before P named C are buffered, at most :data:`MAX_EARLY_EVENTS` and
:data:`MAX_EARLY_BYTES` (the UTF-8 size of their JSON) of each kind, and
filed once it has: anyone can publish 7100s and wraps tagged with this job, so neither count
nor size of what is kept may depend on them.
"""

from __future__ import annotations

from collections import Counter

from dvm.cdvm.channel import ChannelMessage, MessageKind
from dvm.cdvm.kind7100 import ATTESTATION_KIND
from dvm.nostr import nip44
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import GIFT_WRAP_KINDS
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    FeedbackStatus,
    JobFeedback,
    parse_job_feedback,
    parse_job_result,
)

from .errors import JobFailed
from .reader import Answers, ChannelReader

__all__ = ["MAX_EARLY_BYTES", "MAX_EARLY_EVENTS", "JobRecord"]

MAX_EARLY_EVENTS = 256  # per kind, buffered before P names C
MAX_EARLY_BYTES = 4 * 1024 * 1024  # per kind, buffered before P names C
_OVERFLOW = (
    f"event beyond the {MAX_EARLY_EVENTS} events or {MAX_EARLY_BYTES} bytes buffered before "
    "the container was named"
)


class JobRecord:
    """The events of job ``job_id`` so far (see the module docstring).

    ``provider`` is P, ``result_kind`` the request kind + 1000, ``identity`` U and ``session`` S
    (the keys are used, never wiped: they are the caller's).
    """

    def __init__(
        self, *, provider: PublicKey, result_kind: int, identity: SecretKey, session: SecretKey
    ) -> None:
        self.job_id = ""
        self.container: PublicKey | None = None
        self.answers = Answers()
        self.final: JobFeedback | None = None  # P's last success or error feedback
        self.result: tuple[str, str] | None = None  # (event id, plaintext)
        self._provider = provider.hex()
        self._result_kind = result_kind
        self._identity = identity
        self._session = session
        self._attestations: list[Event] = []
        self._attestations_open = True
        self._early_wraps: list[Event] = []
        self._early_results: list[Event] = []
        # bytes held in each buffer, by the buffer's id (an emptied buffer counts from 0 again)
        self._held_bytes: dict[int, int] = {}
        self._reader: ChannelReader | None = None
        self._error_feedback: JobFeedback | None = None
        self._channel_error: ChannelMessage | None = None
        self._ignored: Counter[str] = Counter()

    @property
    def ignored(self) -> dict[str, int]:
        """Events ignored so far, by reason (the channel reader's drops as ``wrap: ...``)."""
        counts = dict(self._ignored)
        if self._reader is not None:
            counts |= {f"wrap: {k}": v for k, v in self._reader.dropped.items()}
        return counts

    @property
    def failure(self) -> JobFailed | None:
        """P's ``error`` feedback (first) or C's channel error, as the error a wait raises."""
        if self._error_feedback is not None:
            fb = self._error_feedback
            return JobFailed(self.job_id, str(fb.reason), fb.content[:200])
        if self._channel_error is not None:
            msg = self._channel_error
            return JobFailed(self.job_id, f"container: {msg.reason}", msg.content[:200])
        return None

    def attestation(self) -> Event | None:
        """The first attestation signed by C, once P named C."""
        if self.container is None or not self._attestations:
            return None
        return self._attestations[0]

    def close_attestations(self) -> None:
        """One attestation is being verified: any later one is ignored."""
        self._attestations_open = False
        self._attestations.clear()

    def add(self, event: Event, *, now: int | None = None) -> str | None:
        """File ``event``; the ``container launched`` progress detail when it named C.

        ``now`` expires gift wraps whose seal carries an expiration (see ChannelReader.add)."""
        kind = event.kind
        if kind == FEEDBACK_KIND:
            return self._on_feedback(event)
        if kind == ATTESTATION_KIND:
            self._on_attestation(event)
        elif kind in GIFT_WRAP_KINDS:
            self._on_wrap(event, now)
        elif kind == self._result_kind:
            self._on_result(event)
        else:
            self._ignore(f"event of kind {kind}")
        return None

    def _ignore(self, reason: str) -> None:
        self._ignored[reason] += 1

    def _on_feedback(self, event: Event) -> str | None:
        if event.pubkey != self._provider:
            self._ignore("feedback not signed by the provider")
            return None
        try:
            fb = parse_job_feedback(event)
            named = PublicKey.from_hex(fb.container) if fb.container is not None else None
        except NostrError:
            self._ignore("malformed feedback")
            return None
        if fb.request_id != self.job_id:
            self._ignore("feedback for another job")
            return None
        launched = None
        if named is not None and self.container is None:
            self._launched(named)
            launched = f"container {named.hex()} (provider feedback {fb.status.value!r})"
        elif named is not None and named != self.container:
            self._ignore("feedback naming a second container")
        if fb.status is FeedbackStatus.ERROR:
            self._error_feedback = fb
            self.final = fb
        elif fb.status is FeedbackStatus.SUCCESS:
            self.final = fb
        return launched

    def _launched(self, container: PublicKey) -> None:
        self.container = container
        self._reader = ChannelReader(self._session, container, self.job_id)
        attestations, self._attestations = self._attestations, []
        wraps, self._early_wraps = self._early_wraps, []
        results, self._early_results = self._early_results, []
        for attestation in attestations:
            self._on_attestation(attestation)
        for wrap in wraps:
            self._on_wrap(wrap)
        for result in results:
            self._on_result(result)

    def _buffer(self, early: list[Event], event: Event) -> None:
        held = self._held_bytes.get(id(early), 0) if early else 0
        size = len(event.to_json().encode("utf-8"))
        if len(early) >= MAX_EARLY_EVENTS or held + size > MAX_EARLY_BYTES:
            self._ignore(_OVERFLOW)
        else:
            early.append(event)
            self._held_bytes[id(early)] = held + size

    def _on_attestation(self, event: Event) -> None:
        if not self._attestations_open:
            self._ignore("attestation after the one verified")
        elif self.container is not None and event.pubkey != self.container.hex():
            self._ignore("attestation not signed by the container")
        else:
            self._buffer(self._attestations, event)

    def _on_wrap(self, event: Event, now: int | None = None) -> None:
        if self._reader is None:
            self._buffer(self._early_wraps, event)
            return
        message = self._reader.add(event, now=now)
        if message is None:
            return
        if message.kind is MessageKind.OUTPUT:
            self.answers.add(message)
        elif message.kind is MessageKind.ERROR:
            self._channel_error = message

    def _on_result(self, event: Event) -> None:
        container = self.container
        if container is None:
            self._buffer(self._early_results, event)
            return
        if event.pubkey != container.hex():
            self._ignore("result not signed by the container")
            return
        if self.result is not None:
            self._ignore("second result")
            return
        try:
            result = parse_job_result(event)
        except NostrError:
            self._ignore("malformed result")
            return
        if result.request_id != self.job_id:
            self._ignore("result for another job")
            return
        # The embedded request is ours (its id is this job's), so its result key is what we
        # asked for: S, or U when the request says ["result-to", U].
        wanted = result.request.result_key
        key = self._session if wanted == self._session.public_key.hex() else self._identity
        conv = nip44.get_conversation_key(key, container)
        try:
            text = nip44.decrypt(event.content, conv)
        except NostrError:
            self._ignore("result that does not decrypt")
            return
        finally:
            conv.wipe()  # best effort: CPython cannot guarantee erasure
        self.result = (event.id, text)
