"""What the container publishes: the attestation, gift-wrapped channel messages, the result.

Spec: DESIGN §3.4 (kind 7100), §3.6 (channel), §3.8 (result); docs/protocol.md §4, §6;
docs/launch.md §6 (what the result holds).

Contract: pure -- randomness (``random_bytes``) and time (``now``) are parameters, nothing is
sent. Every event is signed by the container key C (gift wraps by fresh one-time keys, as
NIP-59 wants). The result's content is NIP-44 v2 under conv(C, R) where R is the request's
result key (:attr:`~dvm.nostr.nip90.JobRequest.result_key`): the per-job session key S when the
request names one, which the requester wipes after the job, so the copy relays keep is
unreadable by anyone later (forward secrecy for results); U only when the request says
``["result-to", U]`` or names no session key (docs/protocol.md §6). The conversation key is
wiped as soon as the payload is made (best effort: CPython cannot guarantee erasure, the
destroyed VM is the real guarantee).

Gift wraps answer in the kind the requester last used. 1059 wraps are backdated up to two days
like every NIP-17 client does; 21059 wraps are ephemeral (relays forward them only to live
subscribers and refuse stale ones: strfry after 60 s), so they carry the real time. The runtime
publishes each wrap through :func:`dvm.relay.publish_wrap`, which re-sends a 21059 wrap that
every relay refused (khatru's ``mute:`` when nobody listens) as 1059, built again here
(docs/relay.md, "Ephemeral wraps on production relays").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dvm.cdvm.kind7100 import Claims, build_attestation
from dvm.nostr import nip17, nip44, nip59
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import JobRequest, build_job_result

__all__ = ["result_content", "sign_attestation", "sign_result", "wrap_for"]

RandomBytes = Callable[[int], bytes]


def sign_attestation(
    key: SecretKey,
    *,
    claims: Claims,
    recipient: PublicKey,
    tee: str,
    evidence: Sequence[Mapping[str, Any]],
    expiration: int,
    now: int,
    random_bytes: RandomBytes,
) -> Event:
    """The kind-7100 event (no initdata: the local launcher has none; CoCo passes it)."""
    unsigned = build_attestation(
        claims=claims,
        recipient=recipient,
        tee=tee,
        expiration=expiration,
        evidence=evidence,
        initdata=None,
        created_at=now,
    )
    return unsigned.sign(key, aux_rand=random_bytes(32))


def wrap_for(
    rumors: Sequence[UnsignedEvent],
    key: SecretKey,
    peer: PublicKey,
    *,
    kind: int,
    now: int,
    random_bytes: RandomBytes,
) -> list[Event]:
    """Seal and gift-wrap each rumor for ``peer`` only (no copy to ourselves)."""
    backdate_s = nip59.TWO_DAYS_S if kind == nip59.GIFT_WRAP_KIND else 0
    wraps: list[Event] = []
    for rumor in rumors:
        for _, wrapped in nip17.gift_wraps(
            rumor,
            key,
            [peer],
            random_bytes=random_bytes,
            now=now,
            include_sender=False,
            kind=kind,
            max_backdate_s=backdate_s,
        ):
            wraps.append(wrapped)
    return wraps


def result_content(answers: Sequence[str], *, oneshot: bool) -> str:
    """The result plaintext: a one-shot job's answer, or a chat's JSON array of final answers."""
    if oneshot and answers:
        return answers[0]
    return json.dumps(list(answers), ensure_ascii=False, separators=(",", ":"))


def sign_result(
    key: SecretKey,
    request: JobRequest,
    plaintext: str,
    *,
    now: int,
    random_bytes: RandomBytes,
) -> Event:
    """The NIP-90 result (request kind + 1000), encrypted to the request's result key R.

    R is S by default, U with ``["result-to", U]`` (docs/protocol.md §6); the ``p`` tag stays U.
    """
    conversation = nip44.get_conversation_key(key, PublicKey.from_hex(request.result_key))
    try:
        ciphertext = nip44.encrypt(plaintext or " ", conversation, nonce=random_bytes(32))
    finally:
        conversation.wipe()
    unsigned = build_job_result(
        request, author=key.public_key, ciphertext=ciphertext, created_at=now
    )
    return unsigned.sign(key, aux_rand=random_bytes(32))
