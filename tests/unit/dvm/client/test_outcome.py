"""dvm.client.outcome: the outcome value and its two renderings (progress text, --json)."""

from __future__ import annotations

import json

from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim
from dvm.client import JobOutcome, Verification, describe_verification, outcome_to_json
from dvm.client.pins import PinKind, ValuePin
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub
from dvm.nostr.nip90 import FeedbackStatus

_PUBLISHER = SecretKey(b"\x05" * 32).public_key

_V = Verification(
    job_id="ab" * 32,
    container="cd" * 32,
    attestation_id="ef" * 32,
    tee="simulated",
    simulated=True,
    claims=Claims(
        pubkey="79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        job="ab" * 32,
        nonce="00" * 32,
        provider="79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        model=ModelClaim("echo", "11" * 32),
        runtime=RuntimeClaim("0.1.0", "fake"),
    ),
    measurement="22" * 48,
    checks=("chain", "signature"),
    warnings=("image not pinned: x",),
    pins=(
        ValuePin(PinKind.MEASUREMENT, "22" * 48, True, (_PUBLISHER.hex(),), ("r1",), True),
        ValuePin(PinKind.MODEL, "11" * 32, False, (), (), False, accepted_unpinned=True),
    ),
)


def _outcome(**kw: object) -> JobOutcome:
    base: dict[str, object] = {
        "job_id": "ab" * 32,
        "container": "cd" * 32,
        "verification": _V,
        "answers": ("one", "two"),
        "result": '["one","two"]',
        "result_id": "12" * 32,
        "status": FeedbackStatus.SUCCESS,
        "reason": None,
        "destroyed": True,
    }
    base.update(kw)
    return JobOutcome(**base)  # type: ignore[arg-type]


def test_the_answer_is_the_last_one_and_ok_needs_success_and_destruction() -> None:
    assert _outcome().answer == "two"
    assert _outcome(answers=()).answer == ""
    assert _outcome().ok
    assert not _outcome(destroyed=False).ok
    assert not _outcome(status=FeedbackStatus.ERROR).ok


def test_the_description_says_what_was_checked_and_what_was_not() -> None:
    text = describe_verification(_V)
    assert text.startswith("SIMULATED: not confidential: simulated evidence for container cd")
    assert "  checked: chain\n  checked: signature\n  note: image not pinned: x" in text
    assert "measurement " + "22" * 48 in text


def test_the_json_document() -> None:
    doc = json.loads(outcome_to_json(_outcome(status=None)))
    assert doc["answer"] == "two"
    assert doc["answers"] == ["one", "two"]
    assert doc["status"] is None
    assert doc["destroyed"] is True
    assert doc["verified"]["label"] == "SIMULATED: not confidential"
    assert doc["verified"]["claims"]["model"]["name"] == "echo"
    assert doc["verified"]["warnings"] == ["image not pinned: x"]
    measurement, model = doc["verified"]["pins"]
    assert measurement == {
        "value": "measurement",
        "observed": "22" * 48,
        "pinned": True,
        "by_flag": True,
        "publishers": [encode_npub(_PUBLISHER)],
        "releases": ["r1"],
        "accepted_unpinned": False,
    }
    assert model["accepted_unpinned"] is True
    assert model["pinned"] is False
