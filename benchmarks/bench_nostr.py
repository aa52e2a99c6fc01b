"""Benchmark of the pure Nostr core against nostr-sdk (rust-nostr), side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_nostr.py`` (about a minute; ``--quick`` for a smoke run).

Rows (ours | theirs | ours/theirs):

* events signed/s: ``UnsignedEvent(...).sign`` | ``EventBuilder(...).finalize(keys)``
  (nostr-sdk 0.45's name for signing with keys).
* events verified/s: ``Event.from_json`` (parses, checks the id and the BIP-340 signature) |
  ``Event.from_json(...).verify()``.
* NIP-44 encrypt+decrypt MB/s at 1 KiB, 32 KiB and 1 MiB: plaintext bytes divided by the time
  of one encrypt plus one decrypt. Ours uses a cached conversation key; the binding has no
  cached-key API, so its ``nip44_encrypt``/``nip44_decrypt`` include one ECDH + HKDF-extract per
  call. nostr-sdk refuses to encrypt more than 65408 bytes, so its 1 MiB cell is n/a.
* floor (32 KiB): ChaCha20 + HMAC-SHA256 through ``cryptography`` and base64 through
  ``binascii``, nothing else: what any Python NIP-44 could reach.
* gift wraps wrap+unwrap/s: ``dvm.nostr.nip59.wrap`` + ``unwrap`` | ``nip59_make_gift_wrap``
  + ``UnwrappedGift.from_gift_wrap``; kind 1059, a fresh one-time wrapper key per wrap on both
  sides, seal signature verified on unwrap on both sides.

Each cell is the median of three timed runs. No assertion depends on a timing; this prints.
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import hmac
import importlib
import importlib.metadata
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import nostr_sdk
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from dvm.nostr import nip44
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey

KIB = 1024
MIB = 1024 * 1024
NOSTR_SDK_MAX_PLAINTEXT_BYTES = 65408
CONTENT = "benchmark note: " + "the quick brown fox jumps over the lazy dog " * 2


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    unit: str
    ours: float | None
    theirs: float | None
    note: str = ""


def _rate(operation: Callable[[], object], *, run_time_s: float) -> float:
    """Operations per second: median of three runs of at least ``run_time_s / 3`` each."""
    operation()  # warm up caches and lazy imports
    rates = []
    for _ in range(3):
        count = 0
        started = time.perf_counter()
        deadline = started + run_time_s / 3
        while True:
            operation()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(count / (now - started))
    return statistics.median(rates)


def _secret(label: bytes) -> SecretKey:
    return SecretKey(hashlib.sha256(label).digest())


def _their_keys(secret: SecretKey) -> nostr_sdk.Keys:
    return nostr_sdk.Keys(nostr_sdk.SecretKey.parse(secret.reveal_hex()))


def bench_sign(run_time_s: float) -> Row:
    secret = _secret(b"signer")
    pubkey = secret.public_key.hex()
    aux_rand = os.urandom(32)
    created_at = int(time.time())
    keys = _their_keys(secret)

    def ours() -> Event:
        return UnsignedEvent(pubkey, created_at, 1, (), CONTENT).sign(secret, aux_rand=aux_rand)

    def theirs() -> object:
        return nostr_sdk.EventBuilder(nostr_sdk.Kind(1), CONTENT).finalize(keys)

    return Row(
        "events signed",
        "ev/s",
        _rate(ours, run_time_s=run_time_s),
        _rate(theirs, run_time_s=run_time_s),
    )


def bench_verify(run_time_s: float) -> Row:
    secret = _secret(b"signer")
    event_json = (
        UnsignedEvent(secret.public_key.hex(), int(time.time()), 1, (("t", "bench"),), CONTENT)
        .sign(secret, aux_rand=os.urandom(32))
        .to_json()
    )

    def ours() -> Event:
        return Event.from_json(event_json)

    def theirs() -> bool:
        verified: bool = nostr_sdk.Event.from_json(event_json).verify()
        return verified

    assert theirs(), "nostr-sdk refused our event"
    return Row(
        "events verified",
        "ev/s",
        _rate(ours, run_time_s=run_time_s),
        _rate(theirs, run_time_s=run_time_s),
    )


def bench_nip44(size_bytes: int, run_time_s: float) -> Row:
    alice, bob = _secret(b"alice"), _secret(b"bob")
    key = nip44.get_conversation_key(alice, bob.public_key)
    nonce = os.urandom(32)
    plaintext = "x" * size_bytes
    payload = nip44.encrypt(plaintext, key, nonce=nonce)
    limit = max(nip44.DEFAULT_MAX_PAYLOAD_CHARS, len(payload))

    def ours() -> str:
        nip44.encrypt(plaintext, key, nonce=nonce)
        return nip44.decrypt(payload, key, max_payload_chars=limit)

    ours_mb_s = _rate(ours, run_time_s=run_time_s) * size_bytes / 1e6
    label = (
        f"NIP-44 enc+dec {size_bytes // KIB} KiB" if size_bytes < MIB else "NIP-44 enc+dec 1 MiB"
    )
    if size_bytes > NOSTR_SDK_MAX_PLAINTEXT_BYTES:
        return Row(label, "MB/s", ours_mb_s, None, "nostr-sdk caps plaintext at 65408 B")
    their_alice_sk = nostr_sdk.SecretKey.parse(alice.reveal_hex())
    their_bob_sk = nostr_sdk.SecretKey.parse(bob.reveal_hex())
    their_alice_pk = nostr_sdk.PublicKey.parse(alice.public_key.hex())
    their_bob_pk = nostr_sdk.PublicKey.parse(bob.public_key.hex())
    v2 = nostr_sdk.Nip44Version.V2
    their_payload = nostr_sdk.nip44_encrypt(their_alice_sk, their_bob_pk, plaintext, v2)

    def theirs() -> str:
        nostr_sdk.nip44_encrypt(their_alice_sk, their_bob_pk, plaintext, v2)
        decrypted: str = nostr_sdk.nip44_decrypt(their_bob_sk, their_alice_pk, their_payload)
        return decrypted

    theirs_mb_s = _rate(theirs, run_time_s=run_time_s) * size_bytes / 1e6
    return Row(label, "MB/s", ours_mb_s, theirs_mb_s, "theirs: ECDH per call (no cached key)")


def bench_floor(run_time_s: float) -> Row:
    """ChaCha20 + HMAC-SHA256 + base64 over 32 KiB, both directions, with no NIP-44 logic."""
    chacha_key, chacha_nonce, hmac_key = os.urandom(32), os.urandom(12), os.urandom(32)
    data = os.urandom(32 * KIB)
    full_nonce = b"\x00\x00\x00\x00" + chacha_nonce

    def mac(message: bytes) -> bytes:
        h = crypto_hmac.HMAC(hmac_key, hashes.SHA256())
        h.update(message)
        return h.finalize()

    def seal(plain: bytes) -> bytes:
        ct = (
            Cipher(algorithms.ChaCha20(chacha_key, full_nonce), mode=None).encryptor().update(plain)
        )
        return binascii.b2a_base64(ct + mac(ct), newline=False)

    sealed = seal(data)

    def round_trip() -> bytes:
        seal(data)
        raw = binascii.a2b_base64(sealed, strict_mode=True)
        ct, tag = raw[:-32], raw[-32:]
        if not hmac.compare_digest(mac(ct), tag):
            raise RuntimeError("floor MAC mismatch")
        return Cipher(algorithms.ChaCha20(chacha_key, full_nonce), mode=None).decryptor().update(ct)

    floor_mb_s = _rate(round_trip, run_time_s=run_time_s) * len(data) / 1e6
    return Row(
        "floor: ChaCha20+HMAC+b64 32 KiB", "MB/s", floor_mb_s, None, "cryptography + binascii alone"
    )


def _ours_gift_wrap(sender: SecretKey, recipient: SecretKey, run_time_s: float) -> float | None:
    """Our NIP-59 wrap+unwrap/s, or None while ``dvm.nostr.nip59`` does not exist."""
    try:
        nip59 = importlib.import_module("dvm.nostr.nip59")
    except ModuleNotFoundError:
        return None
    now = int(time.time())
    rumor = UnsignedEvent(sender.public_key.hex(), now, 14, (), CONTENT)
    recipient_pk = recipient.public_key

    def round_trip() -> object:
        # Like nostr-sdk, a fresh one-time wrapper key per wrap (its cost is part of wrapping).
        wrapped = nip59.wrap(
            rumor,
            sender,
            recipient_pk,
            wrapper=SecretKey.generate(os.urandom),
            seal_created_at=now - 3600,
            wrap_created_at=now - 7200,
            seal_nonce=os.urandom(32),
            wrap_nonce=os.urandom(32),
            seal_aux_rand=os.urandom(32),
            wrap_aux_rand=os.urandom(32),
        )
        return nip59.unwrap(wrapped, recipient, expected_sender=sender.public_key)

    return _rate(round_trip, run_time_s=run_time_s)


def bench_gift_wrap(run_time_s: float) -> Row:
    sender, recipient = _secret(b"sender"), _secret(b"recipient")
    their_sender, their_recipient = _their_keys(sender), _their_keys(recipient)
    their_recipient_pk = their_recipient.public_key()
    rumor = nostr_sdk.EventBuilder(nostr_sdk.Kind(14), CONTENT).finalize_unsigned(
        their_sender.public_key()
    )

    def theirs() -> object:
        wrapped = nostr_sdk.nip59_make_gift_wrap(their_sender, their_recipient_pk, rumor)
        return nostr_sdk.UnwrappedGift.from_gift_wrap(their_recipient, wrapped)

    ours = _ours_gift_wrap(sender, recipient, run_time_s)
    note = "kind 1059, fresh wrapper key each" if ours is not None else "dvm.nostr.nip59 missing"
    return Row("gift wraps wrap+unwrap", "op/s", ours, _rate(theirs, run_time_s=run_time_s), note)


def _cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render(rows: list[Row]) -> str:
    header = f"{'benchmark':<34} {'unit':<5} {'ours':>10} {'nostr-sdk':>10} {'ratio':>7}  note"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row.ours / row.theirs:.2f}x" if row.ours is not None and row.theirs else "n/a"
        lines.append(
            f"{row.name:<34} {row.unit:<5} {_cell(row.ours):>10} {_cell(row.theirs):>10} "
            f"{ratio:>7}  {row.note}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    run_time_s = 0.3 if args.quick else 3.0
    started = time.perf_counter()
    rows = [
        bench_sign(run_time_s),
        bench_verify(run_time_s),
        bench_nip44(1 * KIB, run_time_s),
        bench_nip44(32 * KIB, run_time_s),
        bench_nip44(1 * MIB, run_time_s),
        bench_floor(run_time_s),
        bench_gift_wrap(run_time_s),
    ]
    print(render(rows))
    print(
        f"\nnostr-sdk {importlib.metadata.version('nostr-sdk')}, "
        f"total {time.perf_counter() - started:.0f} s; ratio = ours / nostr-sdk"
    )


if __name__ == "__main__":
    main()
