"""NIP-11 relay information documents: fetch over HTTP and parse the limits we respect.

NIP-11: https://github.com/nostr-protocol/nips/blob/master/11.md

``fetch_relay_information(url)`` sends ``GET`` with ``Accept: application/nostr+json`` to the
relay's websocket URL turned into http(s) (``http_url_for``): one request, ``Connection: close``,
the body bounded by ``max_body_bytes`` and the whole exchange by ``timeout_s``. HTTP itself
(status line, headers, ``Content-Length``, chunked bodies, TLS) is the standard library's
``http.client``, run in a worker thread (``asyncio.to_thread``); not ``urllib``, which would
follow redirects and honour ``*_proxy`` variables that the websocket connection ignores.
``parse_relay_information`` is pure; every failure is a :class:`Nip11Error`.

Parsing is tolerant by design: a limitation field with the wrong type is ignored (treated as
absent) rather than failing the whole document, because a relay's sloppy NIP-11 must not stop us
from using it; only a document that is not a JSON object is an error.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from dvm.nostr.errors import JsonError
from dvm.nostr.strict_json import parse_json

from .errors import Nip11Error

__all__ = [
    "RelayInformation",
    "RelayLimits",
    "fetch_relay_information",
    "http_url_for",
    "parse_relay_information",
]


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
        doc: Any = parse_json(body)
    except JsonError as exc:
        raise Nip11Error(f"NIP-11 document is not valid JSON ({exc})") from None
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


def _unix_socket(path: str, host: str, *, tls: bool, timeout_s: float) -> socket.socket:
    """A connected stream to the relay through a UNIX socket (a sandbox's relay forwarder);
    for ``wss`` the TLS handshake runs over it, checking the relay URL's host name."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(path)
        if tls:
            return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def _get_document(
    relay_url: str,
    target: tuple[str, str, int, str, bool],
    *,
    timeout_s: float,
    max_body_bytes: int,
    unix_path: str | None = None,
) -> bytes:
    """Blocking GET (run in a thread): the 200 response's body, at most ``max_body_bytes``.

    ``timeout_s`` bounds the whole exchange, not each socket operation, so the thread ends on
    its own soon after the awaiting coroutine has given up.
    """
    host_header, host, port, path, tls = target
    deadline = time.monotonic() + timeout_s
    conn = (
        http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=ssl.create_default_context()
        )
        if tls
        else http.client.HTTPConnection(host, port, timeout=timeout_s)
    )
    try:
        if unix_path is None:
            conn.connect()
        else:
            conn.sock = _unix_socket(unix_path, host, tls=tls, timeout_s=timeout_s)
        # Our socket: http.client drops its own reference once a response closes the connection.
        sock = conn.sock
        # The same request bytes as ever: no Accept-Encoding, the URL's own Host (port included).
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        conn.putheader("Accept", "application/nostr+json")
        conn.putheader("User-Agent", "cdvm")
        conn.putheader("Connection", "close")
        conn.endheaders()
        with conn.getresponse() as response:
            if response.status != 200:
                raise Nip11Error(f"NIP-11 request answered HTTP {response.status}")
            body = bytearray()
            while True:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise TimeoutError
                sock.settimeout(remaining_s)
                # read1: one read of the stream; http.client undoes chunking and Content-Length.
                chunk = response.read1(65536)
                if not chunk:
                    # http.client reports a short Content-Length body only to an unbounded read.
                    if response.length:
                        raise Nip11Error(
                            f"NIP-11 response from {relay_url} is shorter than its Content-Length"
                        )
                    return bytes(body)
                body += chunk
                if len(body) > max_body_bytes:
                    raise Nip11Error(
                        f"NIP-11 document from {relay_url} exceeds {max_body_bytes} bytes"
                    )
    finally:
        conn.close()


async def fetch_relay_information(
    relay_url: str,
    *,
    timeout_s: float = 5.0,
    max_body_bytes: int = 64 * 1024,
    unix_path: str | None = None,
) -> RelayInformation:
    """GET the NIP-11 document of ``relay_url``; :class:`Nip11Error` on any failure.

    ``timeout_s`` bounds the whole fetch (connect, request, response); a body over
    ``max_body_bytes`` is refused without reading the rest. Redirects are not followed and no
    proxy is used (the websocket connection uses none either). ``unix_path``: connect to this
    UNIX socket instead of the URL's host and port (the same request bytes).
    """
    target = http_url_for(relay_url)
    try:
        async with asyncio.timeout(timeout_s):
            body = await asyncio.to_thread(
                _get_document,
                relay_url,
                target,
                timeout_s=timeout_s,
                max_body_bytes=max_body_bytes,
                unix_path=unix_path,
            )
    except TimeoutError:
        raise Nip11Error(f"NIP-11 fetch from {relay_url} timed out after {timeout_s} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # ValueError: some malformed chunk sizes reach us as int()'s own error; UnicodeError.
        raise Nip11Error(f"NIP-11 fetch from {relay_url} failed: {type(exc).__name__}") from None
    return parse_relay_information(body)
