"""``cdvm submit`` and ``cdvm chat`` with their default options (21059 wraps, one relay, NIP-42
keys as the CLI chooses them) through the production relay profiles (tests/relay_profiles.py,
docs/relay.md "Relay profiles"), end to end: real relay, real node, real CLI.

The ONNX identity model runs one-shot and chat through each of the strfry-like, khatru-like and
auth-gated relays; Gemma (slower) runs through the strfry-like one only. The only options given
are the ones every job needs: the provider, the model, the relay and the pins (``job_args``).
Before issue 10 the strfry-like relay refused every 21059 wrap of the client (backdated by up
to two days), the khatru-like one could mute a message and end the job, and the auth-gated one
refused the request (signed by U, the client authenticated as S only).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from dvm.cli.embedded_relay import DATABASE_FILE_NAME
from tests.integration.conftest import RelayFactory, RelayProcess

from .conftest import GEMMA_NAME, ONNX_NAME, Model, NodeFactory, job_args, run_cli

pytestmark = [pytest.mark.relay, pytest.mark.slow]


def _tensor(*values: int) -> str:
    return json.dumps(
        {"inputs": {"x": {"shape": [1, len(values)], "dtype": "int64", "data": list(values)}}}
    )


def _stored_wrap_kinds(relay: RelayProcess) -> Counter[int]:
    """Gift wraps in the relay's database, by kind (nostr-relay keeps ephemeral events a while;
    the khatru-like profile never stores them)."""
    with sqlite3.connect(relay.settings.data_dir / DATABASE_FILE_NAME) as db:
        rows = db.execute("SELECT kind FROM events WHERE kind IN (1059, 21059)").fetchall()
    return Counter(kind for (kind,) in rows)


def _progress_steps(stderr: str) -> list[str]:
    return [
        line.split("]", 1)[1].split(":", 1)[0].strip()
        for line in stderr.splitlines()
        if line.startswith("[")
    ]


@pytest.mark.parametrize("profile", ["strfry", "khatru", "auth"])
def test_onnx_oneshot_and_chat_with_default_options(
    profile: str, relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relays = [relay_factory(profile=profile)]
    node = node_factory(relays, [onnx_model])

    oneshot = run_cli("submit", *job_args(node, relays, ONNX_NAME, "--json"), stdin=_tensor(41, 7))
    assert oneshot.returncode == 0, oneshot.stderr + node.log_text()[-3000:]
    doc = json.loads(oneshot.stdout)
    assert json.loads(doc["answer"])["outputs"]["y"]["data"] == [41, 7]
    assert doc["status"] == "success"
    assert doc["destroyed"] is True

    chat = run_cli(
        "chat", *job_args(node, relays, ONNX_NAME), stdin=f"{_tensor(1)}\n{_tensor(2, 3)}\n/end\n"
    )
    assert chat.returncode == 0, chat.stderr + node.log_text()[-3000:]
    answers = [json.loads(line) for line in chat.stdout.splitlines()]
    assert [a["outputs"]["y"]["data"] for a in answers] == [[1], [2, 3]]
    assert "container destroyed" in chat.stderr
    if profile != "khatru":
        # Every channel message went as a current 21059 wrap: none needed the 1059 fallback.
        kinds = _stored_wrap_kinds(relays[0])
        assert kinds[21059] > 0
        assert kinds[1059] == 0


def test_gemma_oneshot_and_chat_through_the_strfry_like_relay(
    relay_factory: RelayFactory, node_factory: NodeFactory, gemma_model: Model
) -> None:
    relays = [relay_factory(profile="strfry")]
    node = node_factory(relays, [gemma_model])
    oneshot = run_cli(
        "submit",
        *job_args(node, relays, GEMMA_NAME, "--json"),
        "--prompt",
        "The capital of France is",
    )
    assert oneshot.returncode == 0, oneshot.stderr + node.log_text()[-3000:]
    doc = json.loads(oneshot.stdout)
    assert doc["answer"].strip()
    assert doc["destroyed"] is True

    chat = run_cli(
        "chat", *job_args(node, relays, GEMMA_NAME), stdin="One, two,\nThe sky is\n/end\n"
    )
    assert chat.returncode == 0, chat.stderr + node.log_text()[-3000:]
    assert _progress_steps(chat.stderr).count("answer") == 2
    assert "container destroyed" in chat.stderr
    kinds = _stored_wrap_kinds(relays[0])
    assert kinds[21059] > 0
    assert kinds[1059] == 0
