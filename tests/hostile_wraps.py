"""Malformed gift wraps, minted in tests with ``cryptography`` and ``dvm.nostr`` (issue 10).

Every wrap here is a *valid, signed* kind-1059/21059 event p-tagged to the victim, so a relay
stores and forwards it; what is wrong is inside: what the wrap's NIP-44 payload decrypts to (the
seal), or what the seal's payload decrypts to (the rumor). Payloads over raw bytes (not UTF-8,
a wrong version byte) are built here with the NIP-44 v2 steps (``nip44.get_message_keys``,
ChaCha20 from ``cryptography``, HMAC-SHA256 from :mod:`hmac`): :func:`dvm.nostr.nip44.encrypt`
rightly refuses to make them.

:func:`malformed_wraps` returns one wrap of each kind, named, for a victim key. ``impersonate``
is the key the forgeries claim to come from (the requester, when the victim is the container;
the container, when the victim is the requester's session key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from dvm.nostr import nip44
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import SEAL_KIND, WRAP_KIND_EPHEMERAL

__all__ = [
    "MALFORMED_KINDS",
    "encrypt_bytes",
    "event_templates",
    "malformed_wraps",
    "wrap_payload",
    "wrap_rumor_text",
    "wrap_seal_text",
]


def encrypt_bytes(
    plaintext: bytes, secret: SecretKey, public: PublicKey, *, version: int = 2
) -> str:
    """A NIP-44 v2 payload over raw ``plaintext`` bytes, with any ``version`` byte."""
    conv = nip44.get_conversation_key(secret, public)
    nonce = secrets.token_bytes(32)
    keys = nip44.get_message_keys(conv, nonce)
    conv.wipe()
    padded_len = nip44.calc_padded_len(len(plaintext))
    padded = len(plaintext).to_bytes(2, "big") + plaintext + bytes(padded_len - len(plaintext))
    cipher = Cipher(algorithms.ChaCha20(keys.chacha_key, bytes(4) + keys.chacha_nonce), None)
    ciphertext = cipher.encryptor().update(padded)
    mac = hmac.new(keys.hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(bytes([version]) + nonce + ciphertext + mac).decode("ascii")


def wrap_payload(content: str, recipient: PublicKey, *, now: int, kind: int) -> Event:
    """A signed gift wrap from a one-time key, p-tagged to ``recipient``, with ``content``."""
    wrapper = SecretKey.generate(secrets.token_bytes)
    return UnsignedEvent(
        wrapper.public_key.hex(), now, kind, (("p", recipient.hex()),), content
    ).sign(wrapper, aux_rand=secrets.token_bytes(32))


def wrap_seal_text(seal_text: bytes, recipient: PublicKey, *, now: int, kind: int) -> Event:
    """A signed gift wrap whose payload decrypts to ``seal_text`` (any bytes)."""
    wrapper = SecretKey.generate(secrets.token_bytes)
    content = encrypt_bytes(seal_text, wrapper, recipient)
    return UnsignedEvent(
        wrapper.public_key.hex(), now, kind, (("p", recipient.hex()),), content
    ).sign(wrapper, aux_rand=secrets.token_bytes(32))


def _seal_dict(sealer: SecretKey, content: str, *, now: int) -> dict[str, object]:
    return (
        UnsignedEvent(sealer.public_key.hex(), now, SEAL_KIND, (), content)
        .sign(sealer, aux_rand=secrets.token_bytes(32))
        .to_dict()
    )


def _seal_text_with(sealer: SecretKey, now: int, **fields: str) -> bytes:
    """A seal's JSON with some fields replaced by raw JSON text (not necessarily valid)."""
    base = _seal_dict(sealer, "x", now=now)
    parts = [
        f"{json.dumps(name)}:{fields.get(name, json.dumps(value))}" for name, value in base.items()
    ]
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


def wrap_rumor_text(
    rumor_text: bytes, sealer: SecretKey, recipient: PublicKey, *, now: int, kind: int
) -> Event:
    """A gift wrap around a valid seal by ``sealer`` whose payload decrypts to ``rumor_text``."""
    seal_content = encrypt_bytes(rumor_text, sealer, recipient)
    seal = json.dumps(_seal_dict(sealer, seal_content, now=now), separators=(",", ":"))
    return wrap_seal_text(seal.encode("utf-8"), recipient, now=now, kind=kind)


def _rumor_text(author: PublicKey, recipient: PublicKey, job: str, now: int, content: str) -> str:
    tags = [["p", recipient.hex()], ["e", job]]
    return (
        '{"pubkey":"'
        + author.hex()
        + f'","created_at":{now},"kind":14,"tags":'
        + json.dumps(tags)
        + ',"content":'
        + content
        + "}"
    )


def event_templates(
    author: SecretKey, recipient: PublicKey, job: str, *, now: int
) -> tuple[dict[str, object], dict[str, object]]:
    """A real seal and a real kind-14 rumor, as dicts (for ``hostile_event``)."""
    rumor = json.loads(_rumor_text(author.public_key, recipient, job, now, json.dumps("hello")))
    return _seal_dict(author, "x", now=now), rumor


Builder = Callable[[PublicKey, SecretKey, PublicKey, str, int, int], Event]


def _build_all() -> dict[str, Builder]:
    def seal_surrogate(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        return wrap_seal_text(_seal_text_with(me, now, content='"\\ud800"'), to, now=now, kind=k)

    def seal_surrogate_tag(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, tags='[["p","\\udfff"]]')
        return wrap_seal_text(text, to, now=now, kind=k)

    def rumor_surrogate(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        rumor = _rumor_text(me.public_key, to, job, now, '"\\ud83d"')
        return wrap_rumor_text(rumor.encode(), me, to, now=now, kind=k)

    def seal_not_utf8(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        return wrap_seal_text(b'{"kind":13,"content":"\xff\xfe\xed\xa0\x80"}', to, now=now, kind=k)

    def rumor_not_utf8(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        rumor = _rumor_text(me.public_key, to, job, now, '"ok"').encode() + b"\xc3"
        return wrap_rumor_text(rumor, me, to, now=now, kind=k)

    def seal_deep(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, tags="[" * 20000 + "]" * 20000)
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_huge_int(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, created_at="9" * 5000)
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_float_overflow(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, created_at="1e400")
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_nan(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, kind="NaN", created_at="Infinity")
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_wrong_types(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, tags='"p"', content="5", kind='"13"')
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_duplicate_keys(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now).replace(b'"kind":13', b'"kind":13,"kind":14')
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_bad_signature(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        seal = _seal_dict(me, "x", now=now)
        sig = str(seal["sig"])
        seal["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
        return wrap_seal_text(json.dumps(seal).encode(), to, now=now, kind=k)

    def seal_oversized_field(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        text = _seal_text_with(me, now, pubkey=json.dumps("a" * 60_000))
        return wrap_seal_text(text, to, now=now, kind=k)

    def seal_not_json(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        return wrap_seal_text(_seal_text_with(me, now)[:-7], to, now=now, kind=k)

    def impersonation(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        rumor = _rumor_text(claimed, to, job, now, json.dumps("I am not who I say"))
        return wrap_rumor_text(rumor.encode(), me, to, now=now, kind=k)

    def truncated_base64(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        payload = encrypt_bytes(_seal_text_with(me, now), me, to)
        return wrap_payload(payload[: len(payload) // 2 + 1], to, now=now, kind=k)

    def version_byte(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        wrapper = SecretKey.generate(secrets.token_bytes)
        payload = encrypt_bytes(_seal_text_with(me, now), wrapper, to, version=1)
        return UnsignedEvent(wrapper.public_key.hex(), now, k, (("p", to.hex()),), payload).sign(
            wrapper, aux_rand=secrets.token_bytes(32)
        )

    def not_base64(
        to: PublicKey, me: SecretKey, claimed: PublicKey, job: str, now: int, k: int
    ) -> Event:
        return wrap_payload("\u00e9" * 200 + "#?iv=", to, now=now, kind=k)

    return {
        "seal-lone-surrogate-content": seal_surrogate,
        "seal-lone-surrogate-tag": seal_surrogate_tag,
        "rumor-lone-surrogate": rumor_surrogate,
        "seal-invalid-utf8": seal_not_utf8,
        "rumor-invalid-utf8": rumor_not_utf8,
        "seal-deep-nesting": seal_deep,
        "seal-huge-integer": seal_huge_int,
        "seal-float-overflow": seal_float_overflow,
        "seal-nan-infinity": seal_nan,
        "seal-wrong-types": seal_wrong_types,
        "seal-duplicate-keys": seal_duplicate_keys,
        "seal-bad-signature": seal_bad_signature,
        "seal-oversized-field": seal_oversized_field,
        "seal-truncated-json": seal_not_json,
        "rumor-pubkey-not-seal-pubkey": impersonation,
        "payload-truncated-base64": truncated_base64,
        "payload-wrong-version-byte": version_byte,
        "payload-not-base64": not_base64,
    }


_BUILDERS = _build_all()
MALFORMED_KINDS = tuple(_BUILDERS)


def malformed_wraps(
    victim: PublicKey,
    *,
    attacker: SecretKey,
    impersonate: PublicKey,
    job: str,
    now: int,
    kind: int = WRAP_KIND_EPHEMERAL,
) -> dict[str, Event]:
    """One malformed wrap of each kind in :data:`MALFORMED_KINDS`, addressed to ``victim``."""
    return {
        name: build(victim, attacker, impersonate, job, now, kind)
        for name, build in _BUILDERS.items()
    }
