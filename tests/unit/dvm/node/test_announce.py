"""The node's NIP-89 announcement, NIP-65 relay list and NIP-09 withdrawal."""

from __future__ import annotations

from dvm.node.announce import (
    RELAY_LIST_KIND,
    build_announcement,
    build_relay_list,
    build_withdrawal,
)
from dvm.node.config import NodeConfig
from dvm.nostr.nip09 import parse_deletion
from dvm.nostr.nip89 import parse_handler
from tests.unit.dvm.node.conftest import key

P = key(1)


def test_announcement_content(config: NodeConfig) -> None:
    event = build_announcement(config, author_hex=P.public_key.hex(), created_at=1).sign(
        P, aux_rand=bytes(32)
    )
    handler = parse_handler(event)
    assert handler.kinds == (5050,)
    assert handler.identifier == "cdvm"
    assert handler.encryption_supported
    assert '"encryptionSupported":true' in event.content
    assert '"supportsEncryption":true' in event.content
    assert handler.tee == ("simulated",)
    assert [(m.name, m.runner, m.sha256) for m in handler.models] == [
        (m.name, m.runner.value, m.sha256) for m in config.models
    ]
    assert handler.nip90_params["model"]["values"] == ["tiny"]
    assert handler.nip90_params["max_tokens"]["max"] == config.limits.max_output_tokens


def test_relay_list_and_withdrawal(config: NodeConfig) -> None:
    relays = build_relay_list(config, author_hex=P.public_key.hex(), created_at=1)
    assert relays.kind == RELAY_LIST_KIND
    assert relays.tags == (("r", "ws://127.0.0.1:1"),)
    deletion = parse_deletion(
        build_withdrawal(config, author_hex=P.public_key.hex(), created_at=2).sign(
            P, aux_rand=bytes(32)
        )
    )
    assert deletion.addresses == (f"31990:{P.public_key.hex()}:cdvm",)
    assert deletion.kinds == (31990,)


def test_nip90_params_are_the_request_rows_of_the_table(config: NodeConfig) -> None:
    event = build_announcement(config, author_hex=P.public_key.hex(), created_at=1)
    handler = parse_handler(event.sign(P, aux_rand=bytes(32)))
    assert handler.nip90_params == {
        "model": {"required": True, "values": ["tiny"]},
        "mode": {"required": False, "values": ["oneshot", "chat"], "default": "chat"},
        "max_tokens": {"required": False, "max": config.limits.max_output_tokens},
        "temperature": {"required": False, "min": 0, "max": 2},
        "top_p": {"required": False, "min": 0, "max": 1},
        "top_k": {"required": False, "min": 0, "max": 1000},
        "seed": {"required": False, "min": 0, "max": 2**31 - 1},
    }


def test_announcement_states_the_proof_of_work_policy(config: NodeConfig) -> None:
    event = build_announcement(config, author_hex=P.public_key.hex(), created_at=1).sign(
        P, aux_rand=bytes(32)
    )
    parse_handler(event)  # still a valid NIP-89 handler
    limits = config.limits
    assert [t for t in event.tags if t[0] == "pow"] == [
        (
            "pow",
            str(limits.min_pow_bits),
            str(max(limits.min_pow_bits, limits.load_pow_bits)),
            str(limits.load_refusals_per_minute),
        )
    ]
