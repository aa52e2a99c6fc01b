"""The production relay examples in relay_config/ are sized for cdvm (issue: event size at least
131072, frames larger than events, ephemeral kinds not refused, NIP-42 gating where available)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIN_EVENT_BYTES = 131072


def test_nostr_rs_relay_config() -> None:
    config = tomllib.loads((ROOT / "relay_config" / "nostr-rs-relay.toml").read_text())
    limits = config["limits"]
    assert limits["max_event_bytes"] >= MIN_EVENT_BYTES
    assert limits["max_ws_message_bytes"] > limits["max_event_bytes"]
    assert limits["max_ws_frame_bytes"] > limits["max_event_bytes"]
    assert config["authorization"] == {"nip42_auth": True, "nip42_dms": True}
    assert "event_kind_allowlist" not in limits  # would have to list 21059 and friends


def _strfry_value(text: str, key: str) -> int:
    found = re.findall(rf"^\s*{key}\s*=\s*(\d+)\s*$", text, re.MULTILINE)
    assert len(found) == 1, key
    return int(found[0])


def test_strfry_config() -> None:
    text = (ROOT / "relay_config" / "strfry.conf").read_text()
    event = _strfry_value(text, "maxEventSize")
    assert event >= MIN_EVENT_BYTES
    assert _strfry_value(text, "maxWebsocketPayloadSize") > event
    assert _strfry_value(text, "ephemeralEventsLifetimeSeconds") > 0
    assert re.search(r'^\s*plugin\s*=\s*""\s*$', text, re.MULTILINE)  # no policy dropping kinds
    assert "dumpInEvents = false" in text
