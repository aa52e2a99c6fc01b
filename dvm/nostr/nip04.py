"""NIP-04 (LEGACY): encrypted direct message content, AES-256-CBC.

NIP-04: https://github.com/nostr-protocol/nips/blob/master/04.md (marked ``unrecommended``:
deprecated in favour of NIP-44).

LEGACY, for interoperability only. cdvm/1 never uses NIP-04 for job data: requests carry no
encrypted params, and the channel, the results and the attestation flow use NIP-44 v2 inside
NIP-59 gift wraps. NIP-04 has no MAC (ciphertexts are malleable and padding errors can act as an
oracle), leaks the message length and uses the raw ECDH x as the AES key; do not build on it.

Contract:

* key = the unhashed 32-byte x of the ECDH point (:func:`dvm.nostr.keys.ecdh_x`), used directly
  as the AES-256 key; PKCS#7 padding; CBC with a 16-byte IV.
* wire format: ``base64(ciphertext) + "?iv=" + base64(iv)``.
* :func:`encrypt` takes ``iv`` as a parameter (this package has no RNG).
* :func:`decrypt` refuses a payload longer than ``max_payload_chars`` before decoding it; every
  failure (format, base64, IV length, block length, padding, UTF-8) raises the one
  :class:`DecryptionError` with the same message.
"""

from __future__ import annotations

import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import DecryptionError, EncryptionError
from .keys import PublicKey, SecretKey, ecdh_x

__all__ = ["DEFAULT_MAX_PAYLOAD_CHARS", "IV_SEPARATOR", "decrypt", "encrypt"]

IV_SEPARATOR = "?iv="
_IV_BYTES = 16
_BLOCK_BITS = 128
# The 64 KiB plaintext bound NIP-44 long used, in base64 plus the IV part: ample for DMs.
DEFAULT_MAX_PAYLOAD_CHARS = 4 * ((65536 + 16 + 2) // 3) + len(IV_SEPARATOR) + 24
_DECRYPT_FAILED = "NIP-04 payload could not be decrypted"


def _cipher(secret: SecretKey, public: PublicKey, iv: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(ecdh_x(secret, public)), modes.CBC(iv))


def encrypt(plaintext: str, secret: SecretKey, public: PublicKey, *, iv: bytes) -> str:
    """Encrypt ``plaintext`` from ``secret`` to ``public`` with a fresh random 16-byte ``iv``."""
    if not isinstance(iv, bytes) or len(iv) != _IV_BYTES:
        raise EncryptionError("iv must be 16 bytes")
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a string")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise EncryptionError("plaintext is not encodable as UTF-8 (lone surrogate)") from None
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = _cipher(secret, public, iv).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return (
        binascii.b2a_base64(ciphertext, newline=False).decode("ascii")
        + IV_SEPARATOR
        + binascii.b2a_base64(iv, newline=False).decode("ascii")
    )


def _b64(text: str) -> bytes:
    if not text.isascii():
        raise DecryptionError(_DECRYPT_FAILED)
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(_DECRYPT_FAILED) from None


def decrypt(
    payload: str,
    secret: SecretKey,
    public: PublicKey,
    *,
    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS,
) -> str:
    """Decrypt a NIP-04 payload sent between ``secret``'s owner and ``public``.

    Raises :class:`DecryptionError` for every failure. Key errors (``InvalidKeyError``) are
    the caller's, not the peer's, and propagate unchanged.
    """
    if not isinstance(payload, str) or len(payload) > max_payload_chars:
        raise DecryptionError(_DECRYPT_FAILED)
    parts = payload.split(IV_SEPARATOR)
    if len(parts) != 2:
        raise DecryptionError(_DECRYPT_FAILED)
    ciphertext, iv = _b64(parts[0]), _b64(parts[1])
    if len(iv) != _IV_BYTES or not ciphertext or len(ciphertext) % 16:
        raise DecryptionError(_DECRYPT_FAILED)
    decryptor = _cipher(secret, public, iv).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        data = unpadder.update(padded) + unpadder.finalize()
        return data.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise DecryptionError(_DECRYPT_FAILED) from None
