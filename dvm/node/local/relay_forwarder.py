"""The node's relay forwarder: the only way out of a job's private network namespace.

docs/node.md "Sandbox"; docs/launch.md §1 (``relay_sockets``) and §5.

A sandboxed job runs in its own network namespace (``bwrap --unshare-net``): it has a loopback
interface of its own and no route anywhere, so neither the host's services on 127.0.0.1 nor
the internet are reachable. For each configured relay the node listens on one UNIX socket in
a fresh directory (mode 0700) that is bound read-only into the sandbox at
:data:`RELAYS_MOUNT`; every connection accepted there is joined, byte for byte, to a new TCP
connection to that relay's host and port, resolved by the node. The container speaks the same
websocket (and NIP-11 HTTP) bytes it would over TCP, with the relay URL's own Host header and,
for ``wss://``, its own TLS end to end: the forwarder neither reads nor changes the stream.

What it does not do: it does not parse the protocol, so the job can send the relay anything it
could send over a direct connection (the relay is the job's peer anyway); it does not limit
bandwidth. It bounds the number of simultaneous connections per job and logs connection
counts with the job id and relay index, never bytes.

Contract: :func:`relay_endpoint` is pure (URL in, ``(host, port)`` out, ``ValueError`` for a
URL that is not ``ws``/``wss`` with a host). :class:`RelayForwarder` is the asyncio shell:
:meth:`~RelayForwarder.start` binds every socket before the job starts, and
:meth:`~RelayForwarder.close` stops listening, cuts every open connection and removes the
directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["RELAYS_MOUNT", "RelayForwarder", "relay_endpoint"]

_log = logging.getLogger(__name__)

RELAYS_MOUNT = "/run/cdvm-relays"
_CHUNK_BYTES = 64 * 1024


def relay_endpoint(url: str) -> tuple[str, int]:
    """``(host, port)`` of a ``ws://`` or ``wss://`` relay URL (ports 80 and 443 by default)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a websocket relay url: {url[:64]!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in relay url {url[:64]!r}") from None
    return parts.hostname, port or (443 if parts.scheme == "wss" else 80)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on (HTTP/1.1 ``Connection: close`` needs it).

    A reset on either side ends this direction; the other one ends when its peer notices.
    """
    try:
        while chunk := await reader.read(_CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        return
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


def _bound_socket(directory: Path, name: str) -> socket.socket:
    """A UNIX stream socket bound at ``directory/name``, however long the directory's path.

    ``sun_path`` holds at most 107 bytes, and ``$TMPDIR`` may be deeper than that; binding
    through ``/proc/self/fd/<directory fd>`` (a magic link to the open directory, proc(5))
    creates the socket file in the directory with a path of about 25 bytes.
    """
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return sock


class RelayForwarder:
    """One job's UNIX-socket doors to its relays (one socket per relay URL)."""

    def __init__(
        self,
        relays: Sequence[str],
        *,
        job_id: str,
        max_connections: int = 16,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._targets = {url: relay_endpoint(url) for url in dict.fromkeys(relays)}
        if not self._targets:
            raise ValueError("a relay forwarder needs at least one relay url")
        self._job = job_id
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._directory: Path | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0
        self.connections_total = 0
        self.refused_total = 0

    @property
    def directory(self) -> Path:
        """The host directory holding the sockets (bind it at :data:`RELAYS_MOUNT`)."""
        if self._directory is None:
            raise RuntimeError("the forwarder has not been started")
        return self._directory

    @property
    def sandbox_paths(self) -> Mapping[str, str]:
        """Relay URL -> the socket's path inside the sandbox (the spec's ``relay_sockets``)."""
        return {url: f"{RELAYS_MOUNT}/{i}.sock" for i, url in enumerate(self._targets)}

    async def start(self) -> None:
        """Create the directory and listen on one socket per relay."""
        self._directory = Path(tempfile.mkdtemp(prefix=f"cdvm-relays-{self._job[:16]}-"))
        try:
            for index, (host, port) in enumerate(self._targets.values()):
                server = await asyncio.start_unix_server(
                    functools.partial(self._accept, index=index, host=host, port=port),
                    sock=_bound_socket(self._directory, f"{index}.sock"),
                )
                self._servers.append(server)
        except OSError:
            await self.close()
            raise

    async def _accept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        index: int,
        host: str,
        port: int,
    ) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - a stream callback always runs in a task
            return
        self._tasks.add(task)
        try:
            if self._open >= self._max_connections:
                self.refused_total += 1
                _log.warning(
                    "job %s: relay %d: over %d connections, refused",
                    self._job,
                    index,
                    self._max_connections,
                )
                return
            self._open += 1
            self.connections_total += 1
            try:
                await self._join(reader, writer, index, host, port)
            finally:
                self._open -= 1
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _join(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        index: int,
        host: str,
        port: int,
    ) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            _log.info("job %s: relay %d: cannot connect (%s)", self._job, index, type(exc).__name__)
            return
        _log.debug("job %s: relay %d: connection forwarded", self._job, index)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def close(self) -> None:
        """Stop listening, cut every forwarded connection, remove the socket directory."""
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._servers.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
