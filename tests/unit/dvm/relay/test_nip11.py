"""dvm.relay.nip11: the pure document parser, and the fetch against a real HTTP server on 127.0.0.1.

The server answers every request with the exact bytes a test sets (Content-Length, chunked,
HTTP/1.0 read to EOF, error statuses, garbage), so the standard library's HTTP client is driven
with the same responses the former hand-written parser was tested with.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.relay.errors import Nip11Error
from dvm.relay.nip11 import (
    RelayInformation,
    RelayLimits,
    fetch_relay_information,
    http_url_for,
    parse_relay_information,
)

DOC = (
    b'{"name":"r","supported_nips":[1,11,42,"x"],"software":"s","version":"1",'
    b'"limitation":{"max_message_length":65536,"max_subscriptions":20,'
    b'"max_content_length":"lots","auth_required":true}}'
)


class _Handler(socketserver.BaseRequestHandler):
    server: CannedHttpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        request = bytearray()
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                return
            request += chunk
        self.server.requests.append(bytes(request))
        if self.server.response is None:  # hold the connection open until the test ends
            self.server.release.wait()
            return
        with contextlib.suppress(OSError):  # the client may refuse to read all of it
            sock.sendall(self.server.response)


class CannedHttpServer(socketserver.ThreadingTCPServer):
    """Answers each request with ``response`` (bytes, then close), or never when it is None."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.response: bytes | None = b""
        self.requests: list[bytes] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server_address[1]}"

    def fetch(
        self, response: bytes | None, *, timeout_s: float = 5.0, max_body_bytes: int = 64 * 1024
    ) -> RelayInformation:
        self.response = response
        return asyncio.run(
            fetch_relay_information(self.url, timeout_s=timeout_s, max_body_bytes=max_body_bytes)
        )


@pytest.fixture(scope="module")
def server() -> Iterator[CannedHttpServer]:
    srv = CannedHttpServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def ok(headers: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n" + body


def test_parse_document_is_tolerant_of_bad_fields() -> None:
    info = parse_relay_information(DOC)
    assert info.name == "r"
    assert info.supported_nips == (1, 11, 42)
    assert info.limits == RelayLimits(
        max_message_length=65536, max_subscriptions=20, max_content_length=None, auth_required=True
    )


def test_override_wins_field_by_field() -> None:
    base = RelayLimits(max_message_length=10, max_subscriptions=3)
    assert base.overridden_by(RelayLimits(max_message_length=99)) == RelayLimits(99, 3)
    assert base.overridden_by(None) is base


def test_http_bodies(server: CannedHttpServer) -> None:
    expected = parse_relay_information(DOC)
    length = f"Content-Length: {len(DOC)}\r\n".encode()
    # Content-Length: exactly that many bytes, whatever follows.
    assert server.fetch(ok(length, DOC + b"junk")) == expected
    half = len(DOC) // 2
    chunked = b"Transfer-Encoding: chunked\r\n"
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, DOC[:half], len(DOC) - half, DOC[half:])
    assert server.fetch(ok(chunked, body)) == expected
    assert server.fetch(b"HTTP/1.0 200 OK\r\n\r\n" + DOC) == expected  # no length: read to EOF
    with pytest.raises(Nip11Error, match="HTTP 404"):
        server.fetch(b"HTTP/1.1 404 Not Found\r\n\r\n")
    with pytest.raises(Nip11Error, match="shorter than its Content-Length"):
        server.fetch(ok(length, DOC[:-1]))  # shorter than its Content-Length
    with pytest.raises(Nip11Error, match="failed: "):
        server.fetch(ok(chunked, b"2\r\n{}"))  # truncated chunked body
    with pytest.raises(Nip11Error, match="failed: "):
        server.fetch(ok(chunked, b"zz\r\n{}\r\n0\r\n\r\n"))  # bad chunk size
    with pytest.raises(Nip11Error, match="must be a JSON object"):
        server.fetch(ok(b"", b"[]"))


def test_request_bytes(server: CannedHttpServer) -> None:
    server.requests.clear()
    server.fetch(ok(b"", b"{}"))
    assert server.requests == [
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n"
        "Accept: application/nostr+json\r\nUser-Agent: cdvm\r\nConnection: close\r\n\r\n".encode()
    ]


def test_document_size_is_bounded(server: CannedHttpServer) -> None:
    padded = DOC[:-1] + b',"pad":"' + b"x" * 200 + b'"}'
    assert server.fetch(ok(b"", padded), max_body_bytes=len(padded)).name == "r"
    with pytest.raises(Nip11Error, match=f"exceeds {len(padded) - 1} bytes"):
        server.fetch(ok(b"", padded), max_body_bytes=len(padded) - 1)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(padded), padded)
    with pytest.raises(Nip11Error, match="exceeds"):
        server.fetch(ok(b"Transfer-Encoding: chunked\r\n", chunked), max_body_bytes=64)


def test_a_silent_server_times_out(server: CannedHttpServer) -> None:
    started = time.monotonic()
    with pytest.raises(Nip11Error, match=r"timed out after 0\.3 s"):
        server.fetch(None, timeout_s=0.3)
    assert time.monotonic() - started < 5


def test_refused_connection_is_a_nip11_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(Nip11Error, match="failed: ConnectionRefusedError"):
            asyncio.run(fetch_relay_information(f"ws://127.0.0.1:{port}"))


def test_ws_url_to_http() -> None:
    assert http_url_for("ws://127.0.0.1:7447") == ("127.0.0.1:7447", "127.0.0.1", 7447, "/", False)
    assert http_url_for("wss://relay.example/x?y=1")[1:] == ("relay.example", 443, "/x?y=1", True)
    with pytest.raises(Nip11Error):
        http_url_for("https://relay.example")


@settings(deadline=None, max_examples=60)
@given(
    st.binary(max_size=300)
    | st.binary(max_size=300).map(lambda b: b"HTTP/1.1 200 OK\r\n" + b)
    | st.binary(max_size=300).map(lambda b: ok(b"Transfer-Encoding: chunked\r\n", b))
)
def test_garbage_http_raises_only_nip11_error(server: CannedHttpServer, raw: bytes) -> None:
    with contextlib.suppress(Nip11Error):
        server.fetch(raw)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_garbage_documents_raise_only_nip11_error(raw: bytes) -> None:
    with contextlib.suppress(Nip11Error):
        parse_relay_information(raw)


class _UnixHttpServer(socketserver.ThreadingUnixStreamServer):
    """The canned server's handler on a UNIX socket (a sandbox's relay forwarder stands here)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(path, handler)
        self.response: bytes | None = b""
        self.requests: list[bytes] = []
        self.release = threading.Event()


class _FirstBytes(socketserver.BaseRequestHandler):
    server: _UnixHttpServer

    def handle(self) -> None:
        self.server.requests.append(self.request.recv(4096))


@contextlib.contextmanager
def _unix_server(
    tmp_path: Path, handler: type[socketserver.BaseRequestHandler]
) -> Iterator[_UnixHttpServer]:
    srv = _UnixHttpServer(str(tmp_path / "relay.sock"), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def test_fetch_through_a_unix_socket_keeps_the_urls_request(tmp_path: Path) -> None:
    with _unix_server(tmp_path, _Handler) as srv:
        srv.response = ok(b"", DOC)
        info = asyncio.run(
            fetch_relay_information(
                "ws://relay.invalid:7447/path", unix_path=str(tmp_path / "relay.sock")
            )
        )
    assert info.name == "r"
    assert srv.requests == [
        (
            b"GET /path HTTP/1.1\r\nHost: relay.invalid:7447\r\n"
            b"Accept: application/nostr+json\r\nUser-Agent: cdvm\r\nConnection: close\r\n\r\n"
        )
    ]


def test_wss_through_a_unix_socket_starts_tls_for_the_urls_host(tmp_path: Path) -> None:
    with (
        _unix_server(tmp_path, _FirstBytes) as srv,
        pytest.raises(Nip11Error, match="failed: "),
    ):
        asyncio.run(
            fetch_relay_information(
                "wss://relay.invalid", unix_path=str(tmp_path / "relay.sock"), timeout_s=3
            )
        )
    hello = srv.requests[0]
    assert hello[0] == 0x16  # a TLS handshake record: the ClientHello
    assert b"relay.invalid" in hello  # its server name indication is the URL's host
