"""The relay forwarder: bytes through UNIX sockets to exactly the configured relays, a relay
pool speaking through it, and a real private network namespace around a sandboxed process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dvm.node.local.relay_forwarder import RELAYS_MOUNT, RelayForwarder, relay_endpoint
from dvm.node.local.sandbox import (
    SandboxPlan,
    bubblewrap_usable,
    bwrap_argv,
    private_network_here,
    seccomp_memfd,
)
from dvm.node.local.seccomp import build_filter, native_arch
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.relay import BackoffPolicy, RelayPool
from tests.unit.dvm.relay.fake_relay import FakeRelay

KEY = SecretKey(bytes.fromhex("77" * 32))


def test_relay_endpoint() -> None:
    assert relay_endpoint("ws://127.0.0.1:7447") == ("127.0.0.1", 7447)
    assert relay_endpoint("wss://relay.example/path?x=1") == ("relay.example", 443)
    assert relay_endpoint("ws://relay.example") == ("relay.example", 80)
    assert relay_endpoint("ws://[::1]:9") == ("::1", 9)
    for bad in ("http://relay.example", "ws://", "ws://h:99999", "relay.example", ""):
        with pytest.raises(ValueError, match="relay url"):
            relay_endpoint(bad)


def test_a_forwarder_needs_a_relay_and_a_start() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RelayForwarder([], job_id="j")
    forwarder = RelayForwarder(["ws://a:1", "ws://b:2", "ws://a:1"], job_id="j")
    assert forwarder.sandbox_paths == {
        "ws://a:1": f"{RELAYS_MOUNT}/0.sock",
        "ws://b:2": f"{RELAYS_MOUNT}/1.sock",
    }
    with pytest.raises(RuntimeError, match="not been started"):
        _ = forwarder.directory


class Upstream:
    """A TCP service on 127.0.0.1 that answers each line with ``<n>:<line>`` and closes on EOF."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        while line := await reader.readline():
            writer.write(f"{number}:".encode() + line)
            await writer.drain()
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    service = Upstream()
    service.server = await asyncio.start_server(service._serve, "127.0.0.1", 0)
    yield service
    service.server.close()


@pytest.mark.asyncio
async def test_bytes_go_through_and_close_removes_everything(upstream: Upstream) -> None:
    url = f"ws://127.0.0.1:{upstream.port}"
    forwarder = RelayForwarder([url], job_id="job1")
    await forwarder.start()
    directory = forwarder.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    path = directory / "0.sock"
    assert stat.S_ISSOCK(path.stat().st_mode)
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"hello\n")
    assert await reader.readline() == b"1:hello\n"
    writer.write_eof()  # the half-close reaches the service, which then closes
    assert await reader.read() == b""
    writer.close()
    second_reader, second_writer = await asyncio.open_unix_connection(str(path))
    second_writer.write(b"again\n")
    assert await second_reader.readline() == b"2:again\n"
    await forwarder.close()
    assert await second_reader.read() == b""  # cut by close()
    second_writer.close()
    assert not directory.exists()
    assert forwarder.connections_total == 2


@pytest.mark.asyncio
async def test_a_deep_tmpdir_still_gets_its_sockets(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # past sun_path's 107 bytes with the socket name
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    forwarder = RelayForwarder([f"ws://127.0.0.1:{upstream.port}"], job_id="deep")
    await forwarder.start()
    try:
        assert len(str(forwarder.directory / "0.sock")) > 108
        dir_fd = os.open(forwarder.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            reader, writer = await asyncio.open_unix_connection(f"/proc/self/fd/{dir_fd}/0.sock")
        finally:
            os.close(dir_fd)
        writer.write(b"deep\n")
        assert await reader.readline() == b"1:deep\n"
        writer.close()
    finally:
        await forwarder.close()
    assert not forwarder.directory.exists()


@pytest.mark.asyncio
async def test_connections_over_the_limit_are_refused(upstream: Upstream) -> None:
    forwarder = RelayForwarder(
        [f"ws://127.0.0.1:{upstream.port}"], job_id="job2", max_connections=1
    )
    await forwarder.start()
    try:
        path = str(forwarder.directory / "0.sock")
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"one\n")
        assert await reader.readline() == b"1:one\n"
        extra_reader, extra_writer = await asyncio.open_unix_connection(path)
        assert await extra_reader.read() == b""  # closed at once
        extra_writer.close()
        assert forwarder.refused_total == 1
        writer.close()
    finally:
        await forwarder.close()


@pytest.mark.asyncio
async def test_an_unreachable_relay_closes_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        forwarder = RelayForwarder([f"ws://127.0.0.1:{port}"], job_id="job3")
        await forwarder.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(forwarder.directory / "0.sock"))
            assert await reader.read() == b""
            writer.close()
        finally:
            await forwarder.close()


@pytest.mark.asyncio
async def test_a_relay_pool_talks_through_the_forwarder() -> None:
    # Both the NIP-11 fetch (its limit is applied) and the websocket go through the sockets.
    async with FakeRelay(limitation={"max_message_length": 4000}) as relay:
        forwarder = RelayForwarder([relay.url], job_id="job4")
        await forwarder.start()
        try:
            sockets = {relay.url: str(forwarder.directory / "0.sock")}
            backoff = BackoffPolicy(initial_s=0.05, max_s=0.2)
            async with RelayPool([relay.url], backoff=backoff, unix_sockets=sockets) as pool:
                assert pool.limits(relay.url).max_message_length == 4000
                note = UnsignedEvent(KEY.public_key.hex(), int(time.time()), 1, (), "hi").sign(
                    KEY, aux_rand=bytes(32)
                )
                assert (await pool.publish(note)).accepted_by == (relay.url,)
                sub = await pool.subscribe([Filter(kinds=(1,))])
                assert await sub.wait_eose(timeout_s=5)
            assert relay.received_event_ids == [note.id]
            assert forwarder.connections_total == 2  # one NIP-11 GET, one websocket
        finally:
            await forwarder.close()


# --- a real private network namespace ---------------------------------------------------

needs_netns = pytest.mark.skipif(
    not bubblewrap_usable("bwrap") or not private_network_here("bwrap"),
    reason="bubblewrap or its private network namespace unusable here",
)

NETPROBE_MODULE = """
import json, socket
out = {"interfaces": [name for _, name in socket.if_nameindex()]}
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=5).close()
    out["tcp_loopback"] = "connected"
except OSError as exc:
    out["tcp_loopback"] = type(exc).__name__
relay = socket.socket(socket.AF_UNIX)
relay.settimeout(10)
relay.connect(SOCKET)
relay.sendall(b"GET / HTTP/1.1\\r\\nHost: relay\\r\\nAccept: application/nostr+json\\r\\n"
              b"Connection: close\\r\\n\\r\\n")
answer = b""
while chunk := relay.recv(65536):
    answer += chunk
out["relay"] = answer.split(b"\\r\\n", 1)[0].decode()
out["relay_body"] = json.loads(answer.split(b"\\r\\n\\r\\n", 1)[1])["name"]
print(json.dumps(out))
"""


@needs_netns
@pytest.mark.asyncio
async def test_a_sandboxed_job_reaches_only_its_relay(tmp_path: Path) -> None:
    async with FakeRelay() as relay:
        forwarder = RelayForwarder([relay.url], job_id="job5")
        await forwarder.start()
        runtime = tmp_path / "runtime"
        runtime.mkdir()
        code = NETPROBE_MODULE.replace("PORT", str(relay.port)).replace(
            "SOCKET", repr(forwarder.sandbox_paths[relay.url])
        )
        (runtime / "netprobe.py").write_text(code, encoding="utf-8")
        model = tmp_path / "m.bin"
        model.write_bytes(b"m")
        plan = SandboxPlan(
            python=Path(sys.executable),
            python_prefixes=(Path(sys.prefix), Path(sys.base_prefix)),
            runtime_dir=runtime,
            model_path=model,
            model_name="m",
            module="netprobe",
            relay_dir=forwarder.directory,
        )
        fd = seccomp_memfd(build_filter(native_arch()))
        try:
            process = await asyncio.create_subprocess_exec(
                *bwrap_argv("bwrap", plan, seccomp_fd=fd),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(fd,),
                env={},
            )
            async with asyncio.timeout(60):
                stdout, stderr = await process.communicate()
        finally:
            os.close(fd)
            await forwarder.close()
    assert process.returncode == 0, stderr.decode()
    out = json.loads(stdout)
    assert out["tcp_loopback"] == "ConnectionRefusedError"  # its own, empty loopback
    assert out["interfaces"] == ["lo"]  # no way out but the forwarder's socket
    assert out["relay"] == "HTTP/1.1 200 OK"
    assert out["relay_body"] == "fake"
    assert forwarder.connections_total == 1
