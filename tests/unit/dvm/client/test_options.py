"""dvm.client.options: unusable options are usage errors, before anything is published."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from dvm.client import (
    JobMode,
    JobOptions,
    OptionsError,
    Timeouts,
    load_policy_file,
    trust_simulated_roots,
)
from dvm.nostr.keys import PublicKey, SecretKey

P: PublicKey = SecretKey.generate(secrets.token_bytes).public_key


def test_request_params_put_model_and_mode_first() -> None:
    opts = JobOptions(provider=P, relays=("ws://r",), model="m", params=(("max_tokens", "8"),))
    assert opts.request_params(JobMode.ONESHOT) == (
        ("model", "m"),
        ("mode", "oneshot"),
        ("max_tokens", "8"),
    )
    assert opts.tee == "sev-snp"  # simulated only when asked


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"relays": ()}, "at least one relay"),
        ({"relays": ("http://x",)}, "ws://"),
        ({"model": ""}, "model"),
        ({"kind": 7000}, "5000-5999"),
        ({"tee": "tdx"}, "unknown TEE"),
        ({"wrap_kind": 4}, "1059 or 21059"),
        ({"params": (("model", "x"),)}, "its own option"),
        ({"params": (("mode", "chat"),)}, "its own option"),
        ({"params": (("a", "1"), ("a", "2"))}, "twice"),
        ({"params": (("", "1"),)}, "needs a name"),
        ({"expiration_s": 0}, "expiration"),
    ],
)
def test_bad_options_are_refused(kw: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"provider": P, "relays": ("ws://r",), "model": "m"}
    base.update(kw)
    with pytest.raises(OptionsError, match=message):
        JobOptions(**base)  # type: ignore[arg-type]


def test_timeouts_must_be_positive() -> None:
    assert Timeouts.uniform(5).destroyed_s == 5
    with pytest.raises(OptionsError):
        Timeouts(answer_s=0)


def test_unreadable_or_bad_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="cannot read"):
        trust_simulated_roots([tmp_path / "missing.pem"])
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(OptionsError, match="not a certificate"):
        trust_simulated_roots([junk])
    with pytest.raises(OptionsError, match="cannot read"):
        load_policy_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[snp]\nnonsense = 1\n")
    with pytest.raises(OptionsError, match="unknown keys"):
        load_policy_file(bad)
    good = tmp_path / "good.toml"
    good.write_text("[snp]\nallow_smt = false\n")
    assert load_policy_file(good).allow_smt is False


_DIGEST = "@sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/cdvm/job:latest",
        "registry.example/cdvm/job:1.0" + _DIGEST,
        "cdvm/job" + _DIGEST,  # no registry host: a short name is rewritten by the runtime
        "registry.example/cdvm/job@sha256:" + "AB" * 32,
        "",
    ],
)
def test_a_trusted_image_must_be_a_digest_reference(image: str) -> None:
    with pytest.raises(OptionsError, match="tags are refused") as caught:
        JobOptions(provider=P, relays=("ws://r",), model="m", trusted_images=(image,))
    assert "--trust-image" in str(caught.value)


def test_digest_references_are_trusted_images() -> None:
    images = ("registry.example/cdvm/job" + _DIGEST, "localhost:5000/job" + _DIGEST)
    opts = JobOptions(provider=P, relays=("ws://r",), model="m", trusted_images=images)
    assert opts.trusted_images == images
    assert JobOptions(provider=P, relays=("ws://r",), model="m").trusted_images == ()
