"""``make demo``: what runs end to end today.

Today the demo exercises the foundation through real parts: it starts the embedded
development relay (``cdvm relay``, a real ``nostr-relay`` process) on a free loopback port,
makes two fresh keys, sends a NIP-17 message from Alice to Bob as NIP-44 v2 sealed and
gift-wrapped events through that relay, receives and unwraps it on Bob's side, and shows that
the relay's database holds only ciphertext. The confidential job (node, sandboxed container,
attestation, model) replaces this with the end-to-end issue.

Exit codes: 0 ok, 1 a step failed (with the reason).
"""

from __future__ import annotations

import asyncio
import http.client
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dvm.nostr import nip17, nip19, nip59
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool

__all__ = ["main"]

_START_TIMEOUT_S = 30.0


def _say(step: str) -> None:
    print(f"==> {step}", flush=True)  # noqa: T201 - the demo talks to its user


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_serving(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/", headers={"Accept": "application/nostr+json"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the relay did not start on 127.0.0.1:{port} within {_START_TIMEOUT_S}s")


async def _exchange(url: str, canary: str) -> str:
    alice = SecretKey.generate(secrets.token_bytes)
    bob = SecretKey.generate(secrets.token_bytes)
    _say(f"Alice is {nip19.encode_npub(alice.public_key)}")
    _say(f"Bob   is {nip19.encode_npub(bob.public_key)}")
    now = int(time.time())
    async with RelayPool([url]) as bob_pool, RelayPool([url]) as alice_pool:
        inbox = await bob_pool.subscribe(
            [Filter(kinds=(nip59.GIFT_WRAP_KIND,), tags=(Filter.tag("p", [bob.public_key.hex()]),))]
        )
        await inbox.wait_eose(timeout_s=10)
        rumor = nip17.build_chat_rumor(
            sender=alice.public_key,
            receivers=[bob.public_key],
            content=f"Hello Bob, this never leaves the envelope in clear: {canary}",
            created_at=now,
        )
        wraps = nip17.gift_wraps(
            rumor, alice, [bob.public_key], random_bytes=secrets.token_bytes, now=now
        )
        for target, wrap in wraps:
            result = await alice_pool.publish(wrap)
            who = "Bob" if target == bob.public_key else "Alice's own copy"
            _say(f"published gift wrap {wrap.id[:12]}… for {who}: accepted by {result.accepted_by}")
        async with asyncio.timeout(15):
            async for event in inbox:
                opened = nip59.unwrap(event, bob, expected_sender=alice.public_key)
                message = nip17.parse_chat_rumor(opened.rumor)
                _say(f"Bob unwrapped {event.id[:12]}…: seal signed by Alice, rumor checks pass")
                return message.content
    raise RuntimeError("Bob's subscription ended without the message")


def main() -> int:
    canary = f"demo-canary-{secrets.token_hex(8)}"
    with tempfile.TemporaryDirectory(prefix="cdvm-demo-") as tmp:
        data_dir = Path(tmp) / "relay"
        port = _free_port()
        _say(f"starting the embedded relay on ws://127.0.0.1:{port} (data in {data_dir})")
        relay = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [
                sys.executable,
                "-m",
                "dvm.cli",
                "relay",
                "--port",
                str(port),
                "--data",
                str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_serving(port)
            received = asyncio.run(_exchange(f"ws://127.0.0.1:{port}", canary))
            if canary not in received:
                _say("FAILED: the unwrapped message is not the one sent")
                return 1
            _say(f"Bob reads: {received!r}")
            stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
            if canary.encode() in stored:
                _say("FAILED: the relay's files contain the plaintext")
                return 1
            _say(f"the relay stored {len(stored)} bytes; the message text is not among them")
        except (RuntimeError, TimeoutError, OSError) as exc:
            _say(f"FAILED: {exc}")
            return 1
        finally:
            relay.terminate()
            try:
                relay.wait(timeout=10)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait()
    _say("demo complete: the foundation works end to end (the confidential job comes next)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
