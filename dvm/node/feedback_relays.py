"""Which of a request's ``relays`` the node also sends its feedback to (NIP-90).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md ("relays: list of relays where
Service Providers SHOULD publish responses to"). docs/node.md §6 "Feedback relays".

Contract (pure): :func:`select_feedback_relays` keeps at most :data:`MAX_FEEDBACK_RELAYS` URLs of
the request's list, in its order, that are

* ``ws://`` or ``wss://`` with a host, no user info, at most 256 characters;
* not one of the node's own relays (it publishes there anyway);
* **not local**: an IP literal must be a global address (no loopback, private, link-local,
  shared, reserved, multicast or unspecified address), and the names ``localhost``,
  ``*.localhost``, ``*.local``, ``*.internal``, ``*.home.arpa`` are refused, unless one of the
  node's own relays is itself local (a development or test setup on one machine).

Why: the list is chosen by whoever signed the request, and any key can sign one. Connecting
where it says would let a stranger make the node open connections inside the operator's network
(server-side request forgery: the websocket handshake is an HTTP GET to a chosen host and port).
What is left: a host **name** is not resolved here, so a public name pointing at a private
address still gets a connection attempt (the handshake's response is never shown to anyone);
docs/protocol.md §3 says so. The node opens these connections only for requests it **accepted**
(never for refusals: junk must not buy outgoing connections), in one short-lived pool per job,
closed when the job ends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

__all__ = ["MAX_FEEDBACK_RELAYS", "is_local_url", "select_feedback_relays"]

#: request relays a job's feedback also goes to
MAX_FEEDBACK_RELAYS = 3
_MAX_URL_CHARS = 256
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")


def _host(url: str) -> str | None:
    """The URL's host (lower case, no brackets) if it is a plain ws/wss URL, else None."""
    if len(url) > _MAX_URL_CHARS or not url.isascii():
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("ws", "wss") or "@" in parts.netloc:
        return None
    if port == 0 or not parts.hostname:
        return None
    return parts.hostname.lower().rstrip(".")


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine or a non-global network (see the module)."""
    host = _host(url)
    if host is None:
        return False
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def _key(url: str) -> str:
    return url.rstrip("/").lower()


def select_feedback_relays(
    requested: Iterable[str], own: Sequence[str], *, cap: int = MAX_FEEDBACK_RELAYS
) -> tuple[str, ...]:
    """The request relays the node may also publish to (see the module), at most ``cap``."""
    allow_local = any(is_local_url(url) for url in own)
    seen = {_key(url) for url in own}
    chosen: list[str] = []
    for url in requested:
        if len(chosen) >= cap:
            break
        if _host(url) is None or _key(url) in seen:
            continue
        if is_local_url(url) and not allow_local:
            continue
        seen.add(_key(url))
        chosen.append(url)
    return tuple(chosen)
