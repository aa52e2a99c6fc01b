"""Strict JSON: the one loader every parser of network bytes in ``dvm`` and ``container`` uses.

RFC 8259: https://www.rfc-editor.org/rfc/rfc8259 (JSON; §8.1 "MUST be encoded using UTF-8",
§4 "names within an object SHOULD be unique", §6 numbers, §8.2 unpaired surrogates).
NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md (events are UTF-8 JSON).

Python's :func:`json.loads` accepts more than JSON and fails in more ways than ``ValueError``:
``NaN``/``Infinity`` literals, ``1e400`` (silently ``inf``), integers of 4,300 digits and more
(``ValueError`` from the int-to-str guard), bytes in UTF-16 or UTF-32, nesting deep enough for
``RecursionError``, duplicate object keys (the last one wins, where another parser keeps the
first) and ``"\\ud800"``, which decodes to a lone surrogate: a Python ``str`` that is not
Unicode and makes a later ``.encode("utf-8")`` raise ``UnicodeEncodeError`` far from the parser
(issue 10: one such seal inside a gift wrap killed a job).

Contract (pure): :func:`parse_json` returns the value of one JSON text, or raises
:class:`~dvm.nostr.errors.JsonError` and nothing else, for any ``str`` or ``bytes`` input. It
refuses:

* input over ``max_bytes`` (counted in UTF-8 bytes, checked before parsing);
* bytes that are not UTF-8, and ``str`` that is not Unicode (a raw lone surrogate);
* ``NaN``, ``Infinity``, ``-Infinity``, and numbers that overflow a float;
* integers longer than :data:`MAX_INT_DIGITS` digits (no 64-bit protocol field needs more);
* nesting deeper than ``max_depth`` arrays and objects;
* duplicate keys in one object;
* a ``\\uD800``-``\\uDFFF`` escape that is not half of a surrogate pair (Python joins valid
  pairs, so any surrogate left in a decoded string is a lone one).

Messages name the check and sizes, never any of the text. Callers re-raise as their own error
(``EventError``, ``MessageError``, ``CodecError``, ``Nip11Error``): the one loader keeps the
rules identical everywhere. ``attestation`` cannot import ``dvm`` and keeps a small equivalent
(``attestation/evidence.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import JsonError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "MAX_INT_DIGITS",
    "has_surrogate",
    "parse_json",
]

#: Above the largest payload cdvm/1 decrypts (1 MiB, ``nip44.DEFAULT_MAX_PLAINTEXT_BYTES``)
#: with room for the JSON around it; relay frames are bounded earlier by the websocket.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: NIP-01 events nest 3 deep (event > tags > tag), relay messages 4, NIP-11 documents ~4,
#: evidence bundles 4: 32 leaves room and stays far below the interpreter's recursion limit.
DEFAULT_MAX_DEPTH = 32
#: 2**64 has 20 digits; a sign and one spare digit make 21.
MAX_INT_DIGITS = 21

_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON escape of a surrogate code unit; a false positive (an escaped backslash before "ud8")
# only costs the walk that checks the decoded strings.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a surrogate code point (is not valid Unicode for UTF-8)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _refuse_constant(name: str) -> Any:
    raise JsonError(f"non-finite number literal {name[:9]} is not JSON")


def _parse_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise JsonError(f"integer of {len(digits)} digits is too long")
    return int(digits)


def _parse_float(text: str) -> float:
    if len(text) > 64:
        raise JsonError(f"number of {len(text)} characters is too long")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonError("number overflows a double")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise JsonError("an object repeats a key")
    return obj


_DECODER = json.JSONDecoder(
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_refuse_constant,
    object_pairs_hook=_unique_object,
)


def _check_tree(value: Any, *, max_depth: int, strings: bool) -> None:
    """Depth bound, and (``strings``) no surrogate in any key or string; level by level."""
    level: list[Any] = [value]
    for depth in range(max_depth + 1):
        below: list[Any] = []
        containers = False
        for item in level:
            kind = type(item)  # the decoder makes exact list, dict and str
            if kind is list:
                containers = True
                below.extend(item)
            elif kind is dict:
                containers = True
                if strings:
                    below.extend(item)  # the keys
                below.extend(item.values())
            elif strings and kind is str and _SURROGATE.search(item):
                raise JsonError("a string holds a lone surrogate escape")
        if not containers:
            return
        if depth == max_depth:
            raise JsonError(f"nesting deeper than {max_depth}")
        level = below


def parse_json(
    text: str | bytes | bytearray,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """The value of one strict JSON text (module docstring), or :class:`JsonError`."""
    if isinstance(text, bytes | bytearray):
        if len(text) > max_bytes:
            raise JsonError(f"JSON text of {len(text)} bytes exceeds {max_bytes}")
        try:
            decoded = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonError("JSON text is not UTF-8") from None
    elif isinstance(text, str):
        # A str over max_bytes characters is over max_bytes UTF-8 bytes: refuse before encoding.
        if len(text) > max_bytes:
            raise JsonError(f"JSON text of {len(text)} characters exceeds {max_bytes} bytes")
        if has_surrogate(text):
            raise JsonError("JSON text is not valid Unicode (lone surrogate)")
        if not text.isascii() and len(text.encode("utf-8")) > max_bytes:
            raise JsonError(f"JSON text exceeds {max_bytes} bytes")
        decoded = text
    else:
        raise JsonError("JSON text must be str or bytes")
    try:
        value = _DECODER.decode(decoded)
    except JsonError:
        raise
    except (ValueError, RecursionError):
        # JSONDecodeError (a ValueError) would quote the text around the fault: not passed on.
        raise JsonError("not valid JSON") from None
    _check_tree(value, max_depth=max_depth, strings=_SURROGATE_ESCAPE.search(decoded) is not None)
    return value
