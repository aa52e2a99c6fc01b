"""Errors of the pure protocol core.

One root, a small set of kinds. Messages carry ids, kinds and lengths, never key material or
plaintext::

    NostrError
    ├── InvalidKeyError              invalid secret or public key encoding or value
    ├── SignatureError         a BIP-340 signature that does not verify
    ├── EventError             malformed event JSON, wrong id, bad signature, bad field
    ├── Bech32Error            NIP-19 / bech32 encoding or decoding failure
    ├── DecryptionError        any NIP-44 / NIP-04 decrypt failure (one error: no oracle)
    ├── EncryptionError        plaintext that cannot be encrypted (empty, too long)
    ├── UnwrapError            any NIP-59 gift-wrap / seal / rumor failure (one error to the peer)
    ├── CodecError             a cdvm/1, NIP-90, NIP-89 or chunk message that does not parse
    ├── JsonError              text that is not strict JSON (``strict_json.parse_json``); every
    │                          parser re-raises it as its own kind above
    ├── PowError               NIP-13 proof of work missing, too low, or a wrong commitment
    └── MessageError           a relay <-> client message that does not parse
"""

from __future__ import annotations

__all__ = [
    "Bech32Error",
    "CodecError",
    "DecryptionError",
    "EncryptionError",
    "EventError",
    "InvalidKeyError",
    "JsonError",
    "MessageError",
    "NostrError",
    "PowError",
    "SignatureError",
    "UnwrapError",
]


class NostrError(Exception):
    """Root of every error raised by ``dvm.nostr``."""


class InvalidKeyError(NostrError):
    """A secret or public key that is malformed or out of range."""


class SignatureError(NostrError):
    """A BIP-340 Schnorr signature that does not verify."""


class EventError(NostrError):
    """An event that is malformed or whose id or signature does not check."""


class Bech32Error(NostrError):
    """A bech32 / NIP-19 string that does not decode, or a value that cannot be encoded."""


class DecryptionError(NostrError):
    """Any decryption failure. Deliberately one type with no detail about which check failed."""


class EncryptionError(NostrError):
    """A plaintext that cannot be encrypted under the scheme (empty or too long)."""


class UnwrapError(NostrError):
    """Any failure to unwrap a gift wrap, open its seal or accept its rumor."""


class CodecError(NostrError):
    """A protocol message (NIP-90, NIP-89, cdvm/1 kind 7100, chunk tags) that does not parse."""


class JsonError(NostrError):
    """Text that is not strict JSON: not UTF-8, a lone surrogate, NaN, a huge number, too deep,
    too large, or a repeated key (:mod:`dvm.nostr.strict_json`)."""


class PowError(NostrError):
    """NIP-13 proof of work that is missing, below the difficulty, or not committed to."""


class MessageError(NostrError):
    """A relay or client message (NIP-01 array) that does not parse."""
