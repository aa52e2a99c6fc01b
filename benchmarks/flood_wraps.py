"""Malformed gift wraps for the flood benchmark (issue 10, item 7).

Copied, cut down, from ``tests/hostile_wraps.py`` (the parser-hardening tests' builders):
benchmarks import only the project's packages, never ``tests``, as ``bench_e2e.py`` does.
Keep the two in step if a malformation's shape changes there.

Every wrap is a *valid, signed* gift wrap from a one-time key, p-tagged to the victim, so a relay
forwards it and the victim does the real work (wrap signature, NIP-44 ECDH and decryption, JSON
parsing, the seal's Schnorr signature) before it can drop it. The mix, one of each in turn:

* ``seal-lone-surrogate``: the seal's JSON carries ``"\\ud800"`` (the crash of issue 10, item 1);
* ``seal-invalid-utf8``: the wrap decrypts to bytes that are not UTF-8;
* ``seal-bad-signature``: a well-formed seal whose signature does not verify (one Schnorr check);
* ``seal-deep-nesting``: 20,000 nested arrays in the seal (about 40 KB to parse and refuse);
* ``rumor-lone-surrogate``: a valid seal by the attacker around a rumor with a lone surrogate;
* ``rumor-impersonation``: a valid seal by the attacker around a rumor claiming the requester's
  key (two decryptions and one Schnorr check before the drop);
* ``payload-wrong-version``: a NIP-44 payload with version byte 1;
* ``payload-not-base64``: a payload that is not base64 (the cheapest to refuse).

Randomness (one-time keys, NIP-44 nonces, BIP-340 aux) comes from :mod:`secrets`.
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
from dvm.nostr.nip59 import SEAL_KIND

__all__ = ["FLOOD_KINDS", "build_flood"]


def _encrypt_bytes(
    plaintext: bytes, secret: SecretKey, public: PublicKey, *, version: int = 2
) -> str:
    """A NIP-44 v2 payload over raw bytes (``nip44.encrypt`` rightly refuses non-UTF-8 text)."""
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


def _wrap(content: str, wrapper: SecretKey, to: PublicKey, now: int, kind: int) -> Event:
    return UnsignedEvent(wrapper.public_key.hex(), now, kind, (("p", to.hex()),), content).sign(
        wrapper, aux_rand=secrets.token_bytes(32)
    )


def _wrap_bytes(text: bytes, to: PublicKey, now: int, kind: int, *, version: int = 2) -> Event:
    wrapper = SecretKey.generate(secrets.token_bytes)
    return _wrap(_encrypt_bytes(text, wrapper, to, version=version), wrapper, to, now, kind)


def _seal(sealer: SecretKey, content: str, now: int) -> dict[str, object]:
    return (
        UnsignedEvent(sealer.public_key.hex(), now, SEAL_KIND, (), content)
        .sign(sealer, aux_rand=secrets.token_bytes(32))
        .to_dict()
    )


def _seal_text_with(sealer: SecretKey, now: int, **fields: str) -> bytes:
    """A seal's JSON with some fields replaced by raw JSON text (not necessarily valid)."""
    base = _seal(sealer, "x", now)
    parts = [f"{json.dumps(k)}:{fields.get(k, json.dumps(v))}" for k, v in base.items()]
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


def _rumor_in_seal(rumor: str, sealer: SecretKey, to: PublicKey, now: int, kind: int) -> Event:
    seal = _seal(sealer, _encrypt_bytes(rumor.encode(), sealer, to), now)
    return _wrap_bytes(json.dumps(seal, separators=(",", ":")).encode(), to, now, kind)


def _rumor(author: PublicKey, to: PublicKey, job: str, now: int, content: str) -> str:
    tags = json.dumps([["p", to.hex()], ["e", job]])
    return (
        f'{{"pubkey":"{author.hex()}","created_at":{now},"kind":14,"tags":{tags},'
        f'"content":{content}}}'
    )


# (victim, attacker, impersonated requester, job id, now, wrap kind) -> one wrap
Builder = Callable[[PublicKey, SecretKey, PublicKey, str, int, int], Event]


def _bad_signature(to: PublicKey, me: SecretKey, now: int, kind: int) -> Event:
    seal = _seal(me, "x", now)
    sig = str(seal["sig"])
    seal["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    return _wrap_bytes(json.dumps(seal).encode(), to, now, kind)


_BUILDERS: dict[str, Builder] = {
    "seal-lone-surrogate": lambda to, me, _u, _j, now, k: _wrap_bytes(
        _seal_text_with(me, now, content='"\\ud800"'), to, now, k
    ),
    "seal-invalid-utf8": lambda to, _me, _u, _j, now, k: _wrap_bytes(
        b'{"kind":13,"content":"\xff\xfe\xed\xa0\x80"}', to, now, k
    ),
    "seal-bad-signature": lambda to, me, _u, _j, now, k: _bad_signature(to, me, now, k),
    "seal-deep-nesting": lambda to, me, _u, _j, now, k: _wrap_bytes(
        _seal_text_with(me, now, tags="[" * 20000 + "]" * 20000), to, now, k
    ),
    "rumor-lone-surrogate": lambda to, me, _u, job, now, k: _rumor_in_seal(
        _rumor(me.public_key, to, job, now, '"\\ud83d"'), me, to, now, k
    ),
    "rumor-impersonation": lambda to, me, user, job, now, k: _rumor_in_seal(
        _rumor(user, to, job, now, json.dumps("I am not who I say")), me, to, now, k
    ),
    "payload-wrong-version": lambda to, me, _u, _j, now, k: _wrap_bytes(
        _seal_text_with(me, now), to, now, k, version=1
    ),
    "payload-not-base64": lambda to, _me, _u, _j, now, k: _wrap(
        "\u00e9" * 200 + "#?iv=", SecretKey.generate(secrets.token_bytes), to, now, k
    ),
}
FLOOD_KINDS = tuple(_BUILDERS)


def build_flood(
    count: int,
    victim: PublicKey,
    *,
    attacker: SecretKey,
    impersonate: PublicKey,
    job: str,
    now: int,
    kind: int,
) -> list[Event]:
    """``count`` distinct malformed wraps to ``victim``, cycling through :data:`FLOOD_KINDS`."""
    builders = list(_BUILDERS.values())
    return [
        builders[i % len(builders)](victim, attacker, impersonate, job, now, kind)
        for i in range(count)
    ]
