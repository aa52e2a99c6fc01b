"""NIP-44 version 2: versioned encrypted payloads.

NIP-44: https://github.com/nostr-protocol/nips/blob/master/44.md (current text, which includes
the extended length prefix of nips PR #1907 for plaintexts of 65536 bytes and more).

Contract:

* ``get_conversation_key(secret, public)`` = HKDF-extract(SHA-256, salt=``b"nip44-v2"``,
  IKM = the unhashed 32-byte x of the ECDH point, from :func:`dvm.nostr.keys.ecdh_x`).
  ``conv(a, B) == conv(b, A)``.
* ``get_message_keys(key, nonce)`` = HKDF-expand(conversation key, info=nonce, L=76), split
  32 / 12 / 32 into the ChaCha20 key, the ChaCha20 nonce and the HMAC key.
* Padding: ``[length prefix][plaintext][zeros]`` to :func:`calc_padded_len`. The prefix is a
  big-endian ``u16`` below 65536 bytes, and ``0x0000`` followed by a big-endian ``u32`` from
  65536 bytes up (a zero ``u16`` announces the extended form; an extended prefix that encodes a
  length below 65536 is invalid padding, so every length has exactly one encoding).
* Payload: ``base64(0x02 || nonce(32) || ChaCha20(padded) || HMAC-SHA256(nonce || ciphertext))``.
* :func:`encrypt` takes the 32-byte ``nonce`` as a parameter (this package has no RNG: callers
  pass ``secrets.token_bytes(32)``; never reuse a nonce with the same conversation key).
* :func:`decrypt` refuses a payload longer than ``max_payload_chars`` *before* decoding it (the
  spec asks implementations to bound the base64 decoder), refuses ``#`` (a future non-base64
  version) and any version byte but 2, accepts only canonical padded standard base64, checks the
  MAC with :func:`hmac.compare_digest` over ``nonce || ciphertext`` *before* decrypting, then
  unpads and decodes strict UTF-8. Every failure raises the one :class:`DecryptionError` with the
  same message, so a peer learns nothing about which check failed. Encrypt failures raise
  :class:`EncryptionError`.

The default bound, :data:`DEFAULT_MAX_PAYLOAD_CHARS`, is the payload length of the largest
plaintext cdvm/1 accepts in one payload, :data:`DEFAULT_MAX_PLAINTEXT_BYTES` (1 MiB): chat
messages are chunked to ~28 KB per gift wrap, so 1 MiB leaves room for results while keeping
one decrypt to a few megabytes of memory. Callers that need more compute a bound with
:func:`payload_chars_for`.

Primitives: ChaCha20 and HKDF from ``cryptography``; HMAC-SHA256 from :mod:`hmac` (OpenSSL);
base64 from :mod:`binascii`. No per-byte Python loops on the data path.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .errors import DecryptionError, EncryptionError
from .keys import PublicKey, SecretKey, ecdh_x

__all__ = [
    "DEFAULT_MAX_PAYLOAD_CHARS",
    "DEFAULT_MAX_PLAINTEXT_BYTES",
    "EXTENDED_PREFIX_THRESHOLD_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "MIN_PAYLOAD_CHARS",
    "MIN_PLAINTEXT_BYTES",
    "VERSION",
    "ConversationKey",
    "MessageKeys",
    "calc_padded_len",
    "decrypt",
    "encrypt",
    "get_conversation_key",
    "get_message_keys",
    "pad",
    "payload_chars_for",
    "unpad",
]

VERSION = 2
MIN_PLAINTEXT_BYTES = 1
MAX_PLAINTEXT_BYTES = 2**32 - 1
EXTENDED_PREFIX_THRESHOLD_BYTES = 65536
_SHORT_PREFIX_BYTES = 2
_EXTENDED_PREFIX_BYTES = 6
_NONCE_BYTES = 32
_MAC_BYTES = 32
_SALT = b"nip44-v2"
# version(1) + nonce(32) + smallest padded plaintext with its prefix (2 + 32) + mac(32)
_MIN_DATA_BYTES = 1 + _NONCE_BYTES + _SHORT_PREFIX_BYTES + 32 + _MAC_BYTES
MIN_PAYLOAD_CHARS = 4 * ((_MIN_DATA_BYTES + 2) // 3)
# ChaCha20 in ``cryptography`` takes a 16-byte nonce: a 4-byte little-endian block counter
# followed by the 12-byte RFC 8439 nonce. NIP-44 starts the counter at 0.
_CHACHA_COUNTER_ZERO = b"\x00\x00\x00\x00"
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DECRYPT_FAILED = "NIP-44 payload could not be decrypted"


class ConversationKey:
    """The 32-byte NIP-44 conversation key, held in a wipeable ``bytearray``.

    ``repr``/``str`` print ``<sensitive>``. :meth:`wipe` overwrites the key and makes later use
    fail. CPython cannot guarantee erasure: the ECDH output, the HKDF output and buffers inside
    OpenSSL may leave copies in freed memory; the real guarantee for a job's keys is the
    destroyed confidential VM.
    """

    __slots__ = ("_key", "_wiped")

    def __init__(self, raw: bytes | bytearray) -> None:
        if not isinstance(raw, bytes | bytearray) or len(raw) != 32:
            raise EncryptionError("conversation key must be 32 bytes")
        self._key = bytearray(raw)
        self._wiped = False

    def __repr__(self) -> str:
        return "ConversationKey(<sensitive>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConversationKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]  # secrets are not dictionary keys

    def reveal_bytes(self) -> bytes:
        """The raw key. For known-answer tests and deliberate export only; never log it."""
        return bytes(self._live())

    def wipe(self) -> None:
        """Overwrite the key in place (best effort, see the class docstring)."""
        self._key[:] = bytes(len(self._key))
        self._wiped = True

    def _live(self) -> bytearray:
        if self._wiped:
            raise EncryptionError("conversation key has been wiped")
        return self._key


@dataclass(frozen=True, slots=True, repr=False)
class MessageKeys:
    """Per-message keys: HKDF-expand(conversation key, info=nonce, L=76) split 32/12/32."""

    chacha_key: bytes = field(repr=False)
    chacha_nonce: bytes = field(repr=False)
    hmac_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "MessageKeys(<sensitive>)"


def get_conversation_key(secret: SecretKey, public: PublicKey) -> ConversationKey:
    """HKDF-extract(salt=``nip44-v2``, IKM=raw ECDH x). Raises ``InvalidKeyError`` on bad keys."""
    shared_x = ecdh_x(secret, public)
    return ConversationKey(HKDF.extract(hashes.SHA256(), _SALT, shared_x))


def get_message_keys(key: ConversationKey, nonce: bytes) -> MessageKeys:
    """The ChaCha20 key, ChaCha20 nonce and HMAC key for one message (NIP-44 step 3)."""
    if len(nonce) != _NONCE_BYTES:
        raise EncryptionError("nonce must be 32 bytes")
    okm = HKDFExpand(hashes.SHA256(), 76, bytes(nonce)).derive(key._live())
    return MessageKeys(okm[0:32], okm[32:44], okm[44:76])


def calc_padded_len(unpadded_len_bytes: int) -> int:
    """Padded length of a plaintext: 32-byte chunks up to 256, then 1/8 of the next power of 2.

    The result excludes the length prefix. Raises :class:`EncryptionError` out of range.
    """
    if not MIN_PLAINTEXT_BYTES <= unpadded_len_bytes <= MAX_PLAINTEXT_BYTES:
        raise EncryptionError(
            f"plaintext must be {MIN_PLAINTEXT_BYTES} to {MAX_PLAINTEXT_BYTES} bytes"
        )
    if unpadded_len_bytes <= 32:
        return 32
    # 1 << (floor(log2(n - 1)) + 1) is the smallest power of two strictly above n - 1.
    next_power = 1 << (unpadded_len_bytes - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len_bytes - 1) // chunk + 1)


def _prefix(length_bytes: int) -> bytes:
    if length_bytes < EXTENDED_PREFIX_THRESHOLD_BYTES:
        return length_bytes.to_bytes(2, "big")
    return b"\x00\x00" + length_bytes.to_bytes(4, "big")


def payload_chars_for(plaintext_bytes: int) -> int:
    """Length of the base64 payload that carries a plaintext of ``plaintext_bytes`` bytes.

    Monotonic in ``plaintext_bytes``, so it is the right ``max_payload_chars`` for a plaintext
    bound.
    """
    prefix_bytes = (
        _SHORT_PREFIX_BYTES
        if plaintext_bytes < EXTENDED_PREFIX_THRESHOLD_BYTES
        else _EXTENDED_PREFIX_BYTES
    )
    raw_bytes = 1 + _NONCE_BYTES + prefix_bytes + calc_padded_len(plaintext_bytes) + _MAC_BYTES
    return 4 * ((raw_bytes + 2) // 3)


DEFAULT_MAX_PLAINTEXT_BYTES = 1024 * 1024
DEFAULT_MAX_PAYLOAD_CHARS = payload_chars_for(DEFAULT_MAX_PLAINTEXT_BYTES)


def _encode_plaintext(plaintext: str) -> bytes:
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a string")
    try:
        return plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise EncryptionError("plaintext is not encodable as UTF-8 (lone surrogate)") from None


def _pad_bytes(unpadded: bytes) -> bytes:
    length = len(unpadded)
    padded_len = calc_padded_len(length)
    return b"".join((_prefix(length), unpadded, bytes(padded_len - length)))


def pad(plaintext: str) -> bytes:
    """UTF-8 encode and pad: ``[prefix][plaintext][zeros]`` (NIP-44 step 4)."""
    return _pad_bytes(_encode_plaintext(plaintext))


def unpad(padded: bytes | bytearray | memoryview) -> str:
    """Inverse of :func:`pad`. Any inconsistency raises :class:`DecryptionError`."""
    view = memoryview(padded)
    if len(view) < _SHORT_PREFIX_BYTES:
        raise DecryptionError(_DECRYPT_FAILED)
    length = int.from_bytes(view[0:2], "big")
    prefix_bytes = _SHORT_PREFIX_BYTES
    if length == 0:
        if len(view) < _EXTENDED_PREFIX_BYTES:
            raise DecryptionError(_DECRYPT_FAILED)
        length = int.from_bytes(view[2:6], "big")
        prefix_bytes = _EXTENDED_PREFIX_BYTES
        # An extended prefix for a length that fits the u16 is non-canonical: refuse it.
        if length < EXTENDED_PREFIX_THRESHOLD_BYTES:
            raise DecryptionError(_DECRYPT_FAILED)
    if len(view) != prefix_bytes + calc_padded_len(length):
        raise DecryptionError(_DECRYPT_FAILED)
    try:
        return str(view[prefix_bytes : prefix_bytes + length], "utf-8")
    except UnicodeDecodeError:
        raise DecryptionError(_DECRYPT_FAILED) from None


def _chacha20(keys: MessageKeys, data: bytes | memoryview) -> bytes:
    cipher = Cipher(
        algorithms.ChaCha20(keys.chacha_key, _CHACHA_COUNTER_ZERO + keys.chacha_nonce), mode=None
    )
    return cipher.encryptor().update(data)


def _mac(keys: MessageKeys, nonce: bytes | memoryview, ciphertext: bytes | memoryview) -> bytes:
    mac = hmac.new(keys.hmac_key, nonce, hashlib.sha256)
    mac.update(ciphertext)
    return mac.digest()


def encrypt(plaintext: str, key: ConversationKey, *, nonce: bytes) -> str:
    """Encrypt ``plaintext`` (1 to 2**32-1 UTF-8 bytes) under ``key`` with a fresh 32-byte nonce.

    Raises :class:`EncryptionError` for an empty or oversized plaintext, a bad nonce or a wiped
    key.
    """
    if not isinstance(nonce, bytes) or len(nonce) != _NONCE_BYTES:
        raise EncryptionError("nonce must be 32 bytes")
    keys = get_message_keys(key, nonce)
    ciphertext = _chacha20(keys, _pad_bytes(_encode_plaintext(plaintext)))
    mac = _mac(keys, nonce, ciphertext)
    raw = b"".join((b"\x02", nonce, ciphertext, mac))
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _is_canonical_base64(payload: str) -> bool:
    """Whole quads, at most two ``=``, unused bits zero: one payload string per byte string.

    CPython's strict decoder still accepts ``=`` after a full quad and ignores the unused bits
    of the last quad, so those checks are made here (cheaply: only the tail is read).
    """
    if len(payload) % 4 or payload.endswith("==="):
        return False
    if payload.endswith("=="):
        return _B64_ALPHABET.find(payload[-3]) & 0x0F == 0
    if payload.endswith("="):
        return _B64_ALPHABET.find(payload[-2]) & 0x03 == 0
    return True


def _decode_payload(payload: str, max_payload_chars: int) -> bytes:
    # Length first: nothing of an oversized payload is read, let alone decoded.
    if not isinstance(payload, str) or len(payload) > max_payload_chars:
        raise DecryptionError(_DECRYPT_FAILED)
    # "#" flags a future non-base64 encoding: an unsupported version, like a wrong version byte.
    if payload.startswith("#") or len(payload) < MIN_PAYLOAD_CHARS:
        raise DecryptionError(_DECRYPT_FAILED)
    if not payload.isascii() or not _is_canonical_base64(payload):
        raise DecryptionError(_DECRYPT_FAILED)
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(_DECRYPT_FAILED) from None
    if len(data) < _MIN_DATA_BYTES or data[0] != VERSION:
        raise DecryptionError(_DECRYPT_FAILED)
    return data


def decrypt(
    payload: str, key: ConversationKey, *, max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS
) -> str:
    """Decrypt a NIP-44 v2 payload. Every failure raises the same :class:`DecryptionError`.

    ``max_payload_chars`` bounds the work and memory before any decoding; the default admits
    plaintexts up to :data:`DEFAULT_MAX_PLAINTEXT_BYTES`.
    """
    data = _decode_payload(payload, max_payload_chars)
    view = memoryview(data)
    nonce = view[1 : 1 + _NONCE_BYTES]
    ciphertext = view[1 + _NONCE_BYTES : -_MAC_BYTES]
    try:
        keys = get_message_keys(key, bytes(nonce))
    except EncryptionError:  # a wiped key: still one error to the caller
        raise DecryptionError(_DECRYPT_FAILED) from None
    if not hmac.compare_digest(_mac(keys, nonce, ciphertext), view[-_MAC_BYTES:]):
        raise DecryptionError(_DECRYPT_FAILED)
    return unpad(_chacha20(keys, ciphertext))
