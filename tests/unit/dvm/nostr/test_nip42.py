from __future__ import annotations

import pytest

from dvm.nostr.errors import EventError
from dvm.nostr.event import Event
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip42 import AUTH_KIND, build_auth_event, check_auth_event, sign_auth_event

KEY = SecretKey(bytes.fromhex("22" * 32))
URL = "ws://127.0.0.1:7447"


def signed(challenge: str = "c1", created_at: int = 1_700_000_000) -> Event:
    return sign_auth_event(
        KEY, relay_url=URL, challenge=challenge, created_at=created_at, aux_rand=bytes(32)
    )


def test_auth_event_shape_and_signature() -> None:
    event = signed()
    assert event.kind == AUTH_KIND == 22242
    assert event.tags == (("relay", URL), ("challenge", "c1"))
    assert event.content == ""
    assert event.pubkey == KEY.public_key.hex()
    assert Event.from_dict(event.to_dict()) == event  # verifies id and signature


def test_relay_side_check_accepts_and_refuses() -> None:
    event = signed()
    check_auth_event(event, relay_url=URL + "/", challenge="c1", now=1_700_000_100)
    with pytest.raises(EventError, match="challenge"):
        check_auth_event(event, relay_url=URL, challenge="other", now=1_700_000_000)
    with pytest.raises(EventError, match="another relay"):
        check_auth_event(event, relay_url="ws://evil", challenge="c1", now=1_700_000_000)
    with pytest.raises(EventError, match="window"):
        check_auth_event(event, relay_url=URL, challenge="c1", now=1_700_000_000 + 601)


@pytest.mark.parametrize(("url", "challenge"), [("http://x", "c"), (URL, "")])
def test_builder_refuses_bad_inputs(url: str, challenge: str) -> None:
    with pytest.raises(EventError):
        build_auth_event(
            pubkey=KEY.public_key.hex(), relay_url=url, challenge=challenge, created_at=1
        )
