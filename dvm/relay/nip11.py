"""NIP-11 relay information documents: fetch over HTTP and parse the limits we respect.

NIP-11: https://github.com/nostr-protocol/nips/blob/master/11.md

``fetch_relay_information(url)`` sends ``GET`` with ``Accept: application/nostr+json`` to the
relay's websocket URL turned into http(s), using a minimal HTTP/1.1 client on
``asyncio.open_connection`` (no new dependency): one request, ``Connection: close``, the body
bounded by ``max_body_bytes``, ``Content-Length`` or chunked bodies. ``parse_http_response`` and
``parse_relay_information`` are pure and raise :class:`Nip11Error` only.

Parsing is tolerant by design: a limitation field with the wrong type is ignored (treated as
absent) rather than failing the whole document, because a relay's sloppy NIP-11 must not stop us
from using it; only a document that is not a JSON object is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from .errors import Nip11Error

__all__ = [
    "RelayInformation",
    "RelayLimits",
    "fetch_relay_information",
    "http_url_for",
    "parse_http_response",
    "parse_relay_information",
]

_MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """The NIP-11 ``limitation`` fields the pool acts on (None: not published)."""

    max_message_length: int | None = None
    max_subscriptions: int | None = None
    max_content_length: int | None = None
    auth_required: bool | None = None

    def overridden_by(self, other: RelayLimits | None) -> RelayLimits:
        """These limits with every field ``other`` sets taking precedence."""
        if other is None:
            return self
        changes = {
            name: getattr(other, name)
            for name in self.__dataclass_fields__
            if getattr(other, name) is not None
        }
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class RelayInformation:
    name: str | None
    software: str | None
    version: str | None
    supported_nips: tuple[int, ...]
    limits: RelayLimits


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_relay_information(body: bytes) -> RelayInformation:
    """Parse a NIP-11 JSON document."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise Nip11Error("NIP-11 document is not valid JSON") from None
    if not isinstance(doc, dict):
        raise Nip11Error("NIP-11 document must be a JSON object")
    nips = doc.get("supported_nips")
    supported = (
        tuple(n for n in nips if isinstance(n, int) and not isinstance(n, bool))
        if isinstance(nips, list)
        else ()
    )
    raw_limits = doc.get("limitation")
    limits = RelayLimits()
    if isinstance(raw_limits, dict):
        auth = raw_limits.get("auth_required")
        limits = RelayLimits(
            max_message_length=_positive_int(raw_limits.get("max_message_length")),
            max_subscriptions=_positive_int(raw_limits.get("max_subscriptions")),
            max_content_length=_positive_int(raw_limits.get("max_content_length")),
            auth_required=auth if isinstance(auth, bool) else None,
        )
    return RelayInformation(
        name=_opt_str(doc.get("name")),
        software=_opt_str(doc.get("software")),
        version=_opt_str(doc.get("version")),
        supported_nips=supported,
        limits=limits,
    )


def _dechunk(data: bytes) -> bytes:
    body = bytearray()
    rest = data
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise Nip11Error("truncated chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Nip11Error("bad chunk size in NIP-11 response") from None
        if size < 0:
            raise Nip11Error("bad chunk size in NIP-11 response")
        if size == 0:
            return bytes(body)
        if len(rest) < size + 2 or rest[size : size + 2] != b"\r\n":
            raise Nip11Error("truncated chunked body")
        body += rest[:size]
        rest = rest[size + 2 :]


def parse_http_response(raw: bytes) -> bytes:
    """The body of a complete HTTP/1.x response read to EOF; the status must be 200."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise Nip11Error("NIP-11 response has no header terminator")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
        raise Nip11Error("NIP-11 response has no HTTP status line")
    if status[1] != b"200":
        raise Nip11Error(f"NIP-11 request answered HTTP {status[1][:3].decode('ascii', 'replace')}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise Nip11Error("malformed header line in NIP-11 response")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return _dechunk(body)
    if b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError:
            raise Nip11Error("bad Content-Length in NIP-11 response") from None
        if length < 0 or len(body) < length:
            raise Nip11Error("NIP-11 response body is shorter than its Content-Length")
        return body[:length]
    return body


def http_url_for(relay_url: str) -> tuple[str, str, int, str, bool]:
    """``(host header, host, port, path, tls)`` for the http(s) twin of a ws(s) URL."""
    parts = urlsplit(relay_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise Nip11Error(f"not a websocket relay url: {relay_url[:64]!r}")
    tls = parts.scheme == "wss"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise Nip11Error(f"bad port in relay url {relay_url[:64]!r}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.netloc, parts.hostname, port, path, tls


async def fetch_relay_information(
    relay_url: str, *, timeout_s: float = 5.0, max_body_bytes: int = 64 * 1024
) -> RelayInformation:
    """GET the NIP-11 document of ``relay_url``; :class:`Nip11Error` on any failure."""
    host_header, host, port, path, tls = http_url_for(relay_url)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/nostr+json\r\n"
        "User-Agent: cdvm\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "strict")
    limit = max_body_bytes + _MAX_HEADER_BYTES
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if tls else None
            )
            try:
                writer.write(request)
                await writer.drain()
                raw = bytearray()
                while chunk := await reader.read(65536):
                    raw += chunk
                    if len(raw) > limit:
                        raise Nip11Error(f"NIP-11 response from {relay_url} exceeds {limit} bytes")
            finally:
                writer.close()
                # The peer may already have gone away; the response is what matters.
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise Nip11Error(f"NIP-11 fetch from {relay_url} timed out after {timeout_s} s") from None
    except (OSError, UnicodeError) as exc:
        raise Nip11Error(f"NIP-11 fetch from {relay_url} failed: {type(exc).__name__}") from None
    return parse_relay_information(parse_http_response(bytes(raw)))
