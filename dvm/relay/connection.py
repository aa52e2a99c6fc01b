"""The thin I/O shell around one :class:`RelaySession`: a websocket that keeps coming back.

One task per relay: fetch the NIP-11 document (until it has been fetched once), connect, feed
every frame to the session, write what the session wants sent, dispatch what it decided; on
any connection failure wait the next backoff delay (:mod:`dvm.relay.backoff`, restarted after
every successful handshake) and try again, until :meth:`close`. All protocol decisions live in
the session; this module only moves frames, keeps the send order (one lock around
"take frames, send them") and turns OKs into futures.

A frame that does not parse is the session's to drop (size and reason logged, the socket kept:
``parse_relay_message`` raises ``MessageError`` and nothing else), so no frame a relay sends can
end this task; only :meth:`close` does.

Logs name the relay URL, event and subscription ids; never content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from dvm.nostr.event import Event
from dvm.nostr.filters import Filter

from .backoff import BackoffPolicy, backoff_delays
from .errors import Nip11Error
from .nip11 import RelayLimits, fetch_relay_information
from .session import AuthSigner, OkReceived, RelaySession, SessionEvent

__all__ = ["RelayConnection"]

_log = logging.getLogger(__name__)


class RelayConnection:
    """A self-healing connection to one relay, driven by ``RelaySession``."""

    def __init__(
        self,
        url: str,
        *,
        listener: Callable[[str, SessionEvent | None], None],
        clock: Callable[[], float],
        random: Callable[[], float],
        signer: AuthSigner | None,
        backoff: BackoffPolicy,
        since_overlap_s: int,
        connect_timeout_s: float,
        limits_override: RelayLimits | None,
        fetch_nip11: bool,
        max_frame_bytes: int,
        unix_path: str | None = None,
    ) -> None:
        self.url = url
        self._unix_path = unix_path
        self.session = RelaySession(url, signer=signer, since_overlap_s=since_overlap_s)
        self._listener = listener
        self._clock = clock
        self._random = random
        self._backoff = backoff
        self._connect_timeout_s = connect_timeout_s
        self._limits_override = limits_override
        self._nip11_limits: RelayLimits | None = None if fetch_nip11 else RelayLimits()
        self._max_frame_bytes = max_frame_bytes
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ok_waiters: dict[str, list[asyncio.Future[OkReceived]]] = {}
        self.last_error: str | None = None
        self.connect_count = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay {self.url}")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def limits(self) -> RelayLimits:
        """NIP-11 limits (once fetched) with the configured override on top."""
        return (self._nip11_limits or RelayLimits()).overridden_by(self._limits_override)

    async def wait_attempted(self) -> None:
        """Return once the first connection attempt succeeded or failed."""
        await self._attempted.wait()

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Close the socket, stop reconnecting, fail pending OK waiters; idempotent."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await self.flush()
            with contextlib.suppress(WebSocketException, OSError):
                await ws.close()
        if self._task is not None:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        for waiters in self._ok_waiters.values():
            for fut in waiters:
                fut.cancel()
        self._ok_waiters.clear()

    # --- caller operations --------------------------------------------------------------

    async def publish(self, event: Event) -> asyncio.Future[OkReceived]:
        """Queue ``event`` (sent now if connected, else on connect); a future for its OK."""
        fut: asyncio.Future[OkReceived] = asyncio.get_running_loop().create_future()
        self._ok_waiters.setdefault(event.id, []).append(fut)
        self.session.publish(event)
        await self.flush()
        return fut

    def forget_publish(self, event_id: str, fut: asyncio.Future[OkReceived]) -> None:
        waiters = self._ok_waiters.get(event_id, [])
        if fut in waiters:
            waiters.remove(fut)
        if not waiters:
            self._ok_waiters.pop(event_id, None)
            self.session.forget_publish(event_id)

    async def subscribe(self, subscription_id: str, filters: tuple[Filter, ...]) -> None:
        self.session.subscribe(subscription_id, filters)
        await self.flush()

    async def unsubscribe(self, subscription_id: str) -> None:
        self.session.unsubscribe(subscription_id)
        await self.flush()

    async def flush(self) -> None:
        async with self._send_lock:
            ws = self._ws
            frames = self.session.data_to_send()
            if ws is None:
                return
            try:
                for frame in frames:
                    await ws.send(frame)
            except ConnectionClosed:
                _log.debug("relay %s: connection closed while sending", self.url)

    # --- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        delays = backoff_delays(self._backoff, random=self._random)
        waiting = False  # "waiting for relay" logged for the current streak of failures
        while not self._closing.is_set():
            if self._nip11_limits is None:
                await self._fetch_nip11(quiet=waiting)
            try:
                ws = await (
                    connect(
                        self.url,
                        open_timeout=self._connect_timeout_s,
                        max_size=self._max_frame_bytes,
                        proxy=None,
                        close_timeout=2,
                    )
                    if self._unix_path is None
                    else unix_connect(  # the same handshake for self.url, through the socket
                        self._unix_path,
                        self.url,
                        open_timeout=self._connect_timeout_s,
                        max_size=self._max_frame_bytes,
                        close_timeout=2,
                    )
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.last_error = type(exc).__name__
                if not waiting:  # once per streak of failures; each retry at debug
                    waiting = True
                    _log.info("waiting for relay %s (%s)", self.url, self.last_error)
                else:
                    _log.debug("relay %s: connect failed (%s)", self.url, self.last_error)
                if isinstance(exc, InvalidURI):
                    self._attempted.set()
                    return
            else:
                delays = backoff_delays(self._backoff, random=self._random)
                waiting = False
                await self._serve(ws)
            self._attempted.set()
            if self._closing.is_set():
                break
            delay_s = next(delays)
            _log.debug("relay %s: reconnecting in %.2f s", self.url, delay_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await self._closing.wait()

    async def _fetch_nip11(self, *, quiet: bool = False) -> None:
        try:
            info = await fetch_relay_information(
                self.url, timeout_s=self._connect_timeout_s, unix_path=self._unix_path
            )
        except Nip11Error as exc:
            # While waiting for a relay to come up, once per streak, as "waiting for relay".
            _log.log(
                logging.DEBUG if quiet else logging.INFO,
                "relay %s: no NIP-11 document (%s)",
                self.url,
                exc,
            )
            return
        self._nip11_limits = info.limits
        _log.debug("relay %s: NIP-11 limits %s", self.url, info.limits)

    async def _serve(self, ws: ClientConnection) -> None:
        async with self._send_lock:
            self._ws = ws
            self.connect_count += 1
            self.session.connection_opened()
            frames = self.session.data_to_send()
            self._connected.set()
            self._attempted.set()
            _log.info("relay %s: connected (%d)", self.url, self.connect_count)
            try:
                for frame in frames:
                    await ws.send(frame)
            except ConnectionClosed:
                pass
        try:
            async for message in ws:
                self.session.receive(message, now=int(self._clock()))
                self._dispatch()
                await self.flush()
        except ConnectionClosed as exc:
            self.last_error = f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            async with self._send_lock:
                self._ws = None
                self._connected.clear()
                self.session.connection_lost()
            self._dispatch_disconnect()
            if not self._closing.is_set():
                _log.info("relay %s: connection lost", self.url)
            with contextlib.suppress(WebSocketException, OSError):
                await ws.close()

    def _dispatch(self) -> None:
        for item in self.session.events_received():
            if isinstance(item, OkReceived):
                for fut in self._ok_waiters.pop(item.event_id, []):
                    if not fut.done():
                        fut.set_result(item)
            else:
                self._listener(self.url, item)

    def _dispatch_disconnect(self) -> None:
        # None tells the listener the socket went away (per-relay EOSE state resets).
        self._listener(self.url, None)
