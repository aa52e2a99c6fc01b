"""dvm.client.record: what a job's subscription brought, filed without ever raising.

The machine's tests (test_machine.py) drive every path of the record through the machine; these
check the record's own contract directly: which failure wins, and garbage never raises.
"""

from __future__ import annotations

import secrets

from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.channel import ChannelError, build_error
from dvm.cdvm.kind7100 import ATTESTATION_KIND
from dvm.client.record import MAX_EARLY_BYTES, MAX_EARLY_EVENTS, JobRecord
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip59 import gift_wrap, seal
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus, build_job_feedback

NOW = 1_760_000_000
JOB = "ab" * 32
P, U, S, C = (SecretKey.from_hex(f"{i:02x}" * 32) for i in (1, 2, 3, 4))


def _record() -> JobRecord:
    record = JobRecord(provider=P.public_key, result_kind=6050, identity=U, session=S)
    record.job_id = JOB
    return record


def _feedback(status: FeedbackStatus, *, container: bool = False) -> Event:
    return build_job_feedback(
        author=P.public_key,
        request_id=JOB,
        requester=U.public_key,
        status=status,
        created_at=NOW,
        reason=ErrorReason.TIMEOUT if status is FeedbackStatus.ERROR else None,
        container=C.public_key if container else None,
    ).sign(P, aux_rand=bytes(32))


def _channel_error() -> Event:
    rumor = build_error(
        C.public_key, S.public_key, JOB, ChannelError.TIMEOUT, "late", created_at=NOW
    )
    [(_, wrap)] = gift_wraps(
        rumor, C, [S.public_key], random_bytes=secrets.token_bytes, now=NOW, include_sender=False
    )
    return wrap


def test_the_providers_error_wins_over_the_containers() -> None:
    record = _record()
    assert record.failure is None
    assert record.add(_feedback(FeedbackStatus.PROCESSING, container=True)) is not None
    record.add(_channel_error())
    failure = record.failure
    assert failure is not None
    assert failure.reason == "container: timeout"
    assert failure.detail == "late"
    record.add(_feedback(FeedbackStatus.ERROR))
    failure = record.failure
    assert failure is not None
    assert failure.reason == "timeout"
    assert record.final is not None
    assert record.final.status is FeedbackStatus.ERROR


def test_the_container_is_named_once() -> None:
    record = _record()
    assert record.add(_feedback(FeedbackStatus.PROCESSING, container=True)) == (
        f"container {C.public_key.hex()} (provider feedback 'processing')"
    )
    assert record.add(_feedback(FeedbackStatus.PROCESSING, container=True)) is None
    assert record.container == C.public_key
    assert record.ignored == {}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([7000, 7100, 1059, 21059, 6050, 1]),
    st.text(max_size=200),
    st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=3), max_size=4),
    st.booleans(),
)
def test_garbage_events_never_raise(
    kind: int, content: str, tags: list[list[str]], named: bool
) -> None:
    record = _record()
    if named:
        record.add(_feedback(FeedbackStatus.PROCESSING, container=True))
    for signer in (P, C):
        event = UnsignedEvent(
            signer.public_key.hex(), NOW, kind, tuple(tuple(t) for t in tags), content
        ).sign(signer, aux_rand=bytes(32))
        record.add(event)  # filed or ignored, never raised
    assert record.failure is None or record.failure.job_id == JOB


def test_early_attestations_are_bounded_by_bytes_too() -> None:
    """Large 7100s from anyone, before P names C: at most MAX_EARLY_BYTES of them are kept."""
    record = _record()
    per_event = 100_000
    held = 0
    kept = 0
    for n in range(3 * MAX_EARLY_BYTES // per_event):
        signer = SecretKey.from_hex(f"{n + 16:064x}")
        big = UnsignedEvent(
            signer.public_key.hex(), NOW, ATTESTATION_KIND, (("e", JOB),), "x" * per_event
        ).sign(signer, aux_rand=bytes(32))
        record.add(big)
        size = len(big.to_json().encode("utf-8"))
        if held + size <= MAX_EARLY_BYTES:
            held += size
            kept += 1
    assert 0 < kept < MAX_EARLY_EVENTS  # the byte bound, not the count, stopped it
    [(reason, dropped)] = record.ignored.items()
    assert "bytes buffered before the container was named" in reason
    assert dropped == 3 * MAX_EARLY_BYTES // per_event - kept


def _expiring_channel_error(expiration: int) -> Event:
    rumor = build_error(
        C.public_key, S.public_key, JOB, ChannelError.TIMEOUT, "late", created_at=NOW
    )
    sealed = seal(
        rumor,
        C,
        S.public_key,
        created_at=NOW,
        nonce=secrets.token_bytes(32),
        aux_rand=secrets.token_bytes(32),
        expiration=expiration,
    )
    return gift_wrap(
        sealed,
        S.public_key,
        wrapper=SecretKey.generate(secrets.token_bytes),
        created_at=NOW,
        nonce=secrets.token_bytes(32),
        aux_rand=secrets.token_bytes(32),
        kind=21059,
    )


def test_a_wrap_whose_seal_expired_when_it_was_read_is_dropped() -> None:
    # NIP-17 disappearing messages: the machine passes the time each event was read.
    expired = _record()
    expired.add(_feedback(FeedbackStatus.PROCESSING, container=True))
    expired.add(_expiring_channel_error(NOW + 60), now=NOW + 60)
    assert expired.failure is None
    live = _record()
    live.add(_feedback(FeedbackStatus.PROCESSING, container=True))
    live.add(_expiring_channel_error(NOW + 60), now=NOW + 59)
    failure = live.failure
    assert failure is not None
    assert failure.reason == "container: timeout"
