"""An in-process relay for testing the pool's shell (NIP-11 limits, NIP-42 ``auth-required``).

Not a relay implementation: it answers just enough of NIP-01 to exercise the client, speaking
the NIP-42 dialect (``auth-required:`` on OK and CLOSED) that nostr-relay 1.14 does not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from dvm.nostr.errors import NostrError
from dvm.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientEvent,
    ClientReq,
    Reason,
    RelayAuth,
    RelayClosed,
    RelayEose,
    RelayOk,
    parse_client_message,
)
from dvm.nostr.nip42 import check_auth_event


@dataclass
class FakeRelay:
    limitation: dict[str, object] = field(default_factory=dict)
    require_auth: bool = False
    received_event_ids: list[str] = field(default_factory=list)
    server: Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _nip11(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade") is None:
            body = json.dumps(
                {"name": "fake", "supported_nips": [1, 11, 42], "limitation": self.limitation}
            )
            response = connection.respond(HTTPStatus.OK, body)
            response.headers["Content-Type"] = "application/nostr+json"
            return response
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        authed = False
        challenge = "fake-challenge"
        if self.require_auth:
            await ws.send(RelayAuth(challenge).to_json())
        async for frame in ws:
            try:
                msg = parse_client_message(frame)
            except NostrError:
                continue
            if isinstance(msg, ClientAuth):
                try:
                    check_auth_event(
                        msg.event, relay_url=self.url, challenge=challenge, now=int(time.time())
                    )
                except NostrError as exc:
                    await ws.send(
                        RelayOk(msg.event.id, False, Reason.parse(f"invalid: {exc}")).to_json()
                    )
                else:
                    authed = True
                    await ws.send(RelayOk(msg.event.id, True, Reason.parse("")).to_json())
            elif isinstance(msg, ClientEvent):
                if self.require_auth and not authed:
                    reason = Reason.parse("auth-required: members only")
                    await ws.send(RelayOk(msg.event.id, False, reason).to_json())
                else:
                    self.received_event_ids.append(msg.event.id)
                    await ws.send(RelayOk(msg.event.id, True, Reason.parse("")).to_json())
            elif isinstance(msg, ClientReq):
                if self.require_auth and not authed:
                    await ws.send(
                        RelayClosed(
                            msg.subscription_id, Reason.parse("auth-required: members only")
                        ).to_json()
                    )
                else:
                    await ws.send(RelayEose(msg.subscription_id).to_json())
            elif isinstance(msg, ClientClose):
                continue

    async def __aenter__(self) -> FakeRelay:
        self.server = await serve(self._handle, "127.0.0.1", 0, process_request=self._nip11)
        self.port = next(iter(self.server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
