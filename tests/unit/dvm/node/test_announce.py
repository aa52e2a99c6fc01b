"""The node's NIP-89 announcement, NIP-65 relay list and NIP-09 withdrawal."""

from __future__ import annotations

import json

from dvm.cdvm.params import DESCRIPTIONS, PARAMS, REQUEST_PARAMS
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

    def entry(name: str, required: bool, values: list[str], **extra: object) -> dict[str, object]:
        return {"required": required, "values": values, "description": DESCRIPTIONS[name], **extra}

    assert handler.nip90_params == {
        "model": entry("model", True, ["tiny"]),
        "mode": entry("mode", False, ["oneshot", "chat"], default="chat"),
        "max_tokens": entry("max_tokens", False, [], min=1, max=config.limits.max_output_tokens),
        "temperature": entry("temperature", False, [], min=0, max=2),
        "top_p": entry("top_p", False, [], min=0, max=1),
        "top_k": entry("top_k", False, [], min=0, max=1000),
        "seed": entry("seed", False, [], min=0, max=2**31 - 1),
    }


def test_every_parameter_has_a_description() -> None:
    assert set(DESCRIPTIONS) == set(PARAMS)
    assert all(DESCRIPTIONS.values())


def _nostrdvm_parameter_lines(content: str) -> str:
    """nostrdvm's reading of ``nip90Params``, re-implemented (not copied) from
    believethehype/nostrdvm ``nostr_dvm/bot.py`` (the bot's DVM info reply): for each announced
    parameter it indexes ``params[name]['required']`` and ``params[name]['values']`` (a KeyError
    there when a key is missing) and ``json.dumps`` the values."""
    document = json.loads(content)
    lines = ""
    if document.get("nip90Params"):
        params = document["nip90Params"]
        for name in params:
            lines += f"-{name}\nRequired: {params[name]['required']}\n"
            lines += f"Possible Values: {json.dumps(params[name]['values'])}\n\n"
    return lines


def test_a_nostrdvm_client_reads_our_parameters(config: NodeConfig) -> None:
    event = build_announcement(config, author_hex=P.public_key.hex(), created_at=1)
    lines = _nostrdvm_parameter_lines(event.content)  # raised KeyError before issue 13
    assert '-model\nRequired: True\nPossible Values: ["tiny"]' in lines
    assert '-mode\nRequired: False\nPossible Values: ["oneshot", "chat"]' in lines
    assert "-seed\nRequired: False\nPossible Values: []" in lines
    assert lines.count("Required: ") == len(REQUEST_PARAMS)


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
