"""Keys: secp256k1 secret keys, x-only public keys, BIP-340 Schnorr and raw ECDH.

BIP-340: https://github.com/bitcoin/bips/blob/master/bip-0340.mediawiki
NIP-01:  https://github.com/nostr-protocol/nips/blob/master/01.md (keys are x-only, 32 bytes)

Everything goes through libsecp256k1 via coincurve's cffi binding. We call
``secp256k1_schnorrsig_sign_custom`` and ``secp256k1_schnorrsig_verify`` directly so that
messages of any length can be signed and verified (BIP-340 allows it; coincurve's wrapper only
takes 32 bytes), which lets every row of the BIP-340 vector file pass through the very functions
the code uses. ECDH returns the raw x coordinate (NIP-04/NIP-44 need it; libsecp256k1's
``secp256k1_ecdh`` default hashes the point, which would be wrong here).

Randomness is a parameter: ``aux_rand`` for signing, ``random_bytes`` for key generation.

Secret keys live in a ``bytearray`` with a redacting ``__repr__`` and a best-effort ``wipe()``.
CPython cannot guarantee erasure (copies may exist in freed memory, in libsecp256k1's
stack frames, in hex strings a caller made); the real guarantee for the one-time container key
is the destroyed confidential VM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coincurve import PublicKey as _CPublicKey
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT as _GLOBAL_CONTEXT

from .errors import InvalidKeyError, SignatureError

__all__ = ["PublicKey", "SecretKey", "ecdh_x"]

_CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_CTX: Any = _GLOBAL_CONTEXT.ctx


def _parse_hex(value: str, size_bytes: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size_bytes:
        raise InvalidKeyError(f"{what} must be {2 * size_bytes} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidKeyError(f"{what} is not hex") from None


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An x-only secp256k1 public key (32 bytes), the identity of a Nostr key (NIP-01).

    Construct with :meth:`from_bytes` or :meth:`from_hex`; both check the point is on the curve.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise InvalidKeyError("x-only public key must be 32 bytes")

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKey:
        key = cls(bytes(raw))
        key._xonly()  # raises if not on the curve
        return key

    @classmethod
    def from_hex(cls, value: str) -> PublicKey:
        if value != value.lower():
            raise InvalidKeyError("public key hex must be lowercase")
        return cls.from_bytes(_parse_hex(value, 32, "public key"))

    def hex(self) -> str:
        return self.raw.hex()

    def __str__(self) -> str:
        return self.raw.hex()

    def _xonly(self) -> Any:
        xonly = _ffi.new("secp256k1_xonly_pubkey *")
        if not _lib.secp256k1_xonly_pubkey_parse(_CTX, xonly, self.raw):
            raise InvalidKeyError("public key is not a point on secp256k1")
        return xonly

    def verify_schnorr(self, signature: bytes, message: bytes) -> None:
        """Verify a BIP-340 signature over ``message`` (any length). Returns None or raises."""
        if len(signature) != 64:
            raise SignatureError("signature must be 64 bytes")
        try:
            xonly = self._xonly()
        except InvalidKeyError:
            raise SignatureError("public key is not a point on secp256k1") from None
        if not _lib.secp256k1_schnorrsig_verify(_CTX, signature, message, len(message), xonly):
            raise SignatureError("signature does not verify")

    def to_point_bytes(self) -> bytes:
        """The 33-byte compressed point with even y (the lift_x of BIP-340)."""
        return b"\x02" + self.raw


class SecretKey:
    """A secp256k1 secret key held in a wipeable ``bytearray``.

    ``repr`` and ``str`` print ``<sensitive>``; use :meth:`reveal_hex` where the key must be
    written out on purpose (``cdvm keygen``). The libsecp256k1 keypair is cached because signing
    without it costs a point multiplication per signature.
    """

    __slots__ = ("_keypair", "_public", "_secret")

    def __init__(self, secret: bytes | bytearray) -> None:
        if len(secret) != 32:
            raise InvalidKeyError("secret key must be 32 bytes")
        value = int.from_bytes(secret, "big")
        if not 0 < value < _CURVE_ORDER:
            raise InvalidKeyError("secret key out of range")
        self._secret = bytearray(secret)
        keypair = _ffi.new("secp256k1_keypair *")
        if not _lib.secp256k1_keypair_create(_CTX, keypair, bytes(self._secret)):
            raise InvalidKeyError("secret key rejected by libsecp256k1")
        self._keypair: Any = keypair
        xonly = _ffi.new("secp256k1_xonly_pubkey *")
        _lib.secp256k1_keypair_xonly_pub(_CTX, xonly, _ffi.NULL, keypair)
        out = _ffi.new("unsigned char[32]")
        _lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
        self._public = PublicKey(bytes(_ffi.buffer(out, 32)))

    @classmethod
    def from_hex(cls, value: str) -> SecretKey:
        return cls(_parse_hex(value, 32, "secret key"))

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes]) -> SecretKey:
        """A new key from a caller-supplied CSPRNG (``secrets.token_bytes`` one layer up)."""
        for _ in range(8):
            candidate = random_bytes(32)
            if 0 < int.from_bytes(candidate, "big") < _CURVE_ORDER:
                return cls(candidate)
        raise InvalidKeyError("random source keeps producing out-of-range keys")

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def __repr__(self) -> str:
        return "SecretKey(<sensitive>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        import hmac  # noqa: PLC0415 - constant-time compare, only needed here

        return hmac.compare_digest(bytes(self._secret), bytes(other._secret))

    __hash__ = None  # type: ignore[assignment]  # secret keys are not dictionary keys

    def reveal_hex(self) -> str:
        """The secret as hex. Only for deliberate export (key files); never log the result."""
        return self._secret.hex()

    def reveal_bytes(self) -> bytes:
        """The secret bytes. Only for deliberate export and for ECDH inside this package."""
        return bytes(self._secret)

    def sign_schnorr(self, message: bytes, *, aux_rand: bytes) -> bytes:
        """BIP-340 signature over ``message`` (any length) with 32 bytes of ``aux_rand``."""
        if len(aux_rand) != 32:
            raise InvalidKeyError("aux_rand must be 32 bytes")
        self._check_live()
        sig = _ffi.new("unsigned char[64]")
        extra = _ffi.new("secp256k1_schnorrsig_extraparams *")
        extra.magic = (0xDA, 0x6F, 0xB3, 0x8C)  # SECP256K1_SCHNORRSIG_EXTRAPARAMS_MAGIC
        extra.noncefp = _ffi.NULL
        aux = _ffi.new("unsigned char[32]", aux_rand)
        extra.ndata = aux
        if not _lib.secp256k1_schnorrsig_sign_custom(
            _CTX, sig, message, len(message), self._keypair, extra
        ):
            raise InvalidKeyError("libsecp256k1 refused to sign")
        return bytes(_ffi.buffer(sig, 64))

    def wipe(self) -> None:
        """Overwrite the secret and the cached keypair (best effort, see module docstring)."""
        for i in range(len(self._secret)):
            self._secret[i] = 0
        size = _ffi.sizeof("secp256k1_keypair")
        _ffi.memmove(self._keypair, bytes(size), size)

    def _check_live(self) -> None:
        if not any(self._secret):
            raise InvalidKeyError("secret key has been wiped")


def ecdh_x(secret: SecretKey, public: PublicKey) -> bytes:
    """The raw 32-byte x coordinate of ``secret * lift_x(public)`` (unhashed).

    NIP-04 and NIP-44 both use this value; libsecp256k1's default ECDH would hash it.
    """
    secret._check_live()
    try:
        point = _CPublicKey(public.to_point_bytes())
    except ValueError:
        raise InvalidKeyError("public key is not a point on secp256k1") from None
    shared = point.multiply(secret.reveal_bytes())
    return shared.format(compressed=True)[1:]
