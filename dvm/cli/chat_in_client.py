"""``cdvm submit --chat-in-client``: verify a job here, then chat from any NIP-17 client.

Spec: docs/standard-clients.md (the steps), docs/protocol.md §5 (plain NIP-17 messages).

The request names **no session key**: its reply-to key is the user's own U (``--key``, required:
the user must chat with the key their client holds). The attestation is waited for and
verified exactly as ``cdvm submit`` does (same pins, fail closed: a refusal exits 1 and nothing
is printed for a client to use). Then the container's kind-10050 DM relay list is read (NIP-17:
a client sends only to those relays), and the container's npub, its relays and the
verification summary are printed. Nothing is sent to the container: the session is closed
without the end message, and the container waits for the user's first message (its attestation
timeout, then its idle timeout, bound the wait). ``--json`` prints one JSON document instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

from dvm.client import JobMode, JobOptions, JobSession, OptionsError, describe_verification
from dvm.client.errors import ClientTimeout
from dvm.nostr.errors import NostrError
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17_relays import RELAY_LIST_KIND, parse_relay_list
from dvm.nostr.nip19 import encode_npub
from dvm.relay import RelayPool

__all__ = ["RELAY_LIST_WAIT_S", "fetch_dm_relays", "run_chat_in_client"]

#: how long to wait for C's kind 10050 once its attestation verified (published right after it)
RELAY_LIST_WAIT_S = 30.0


async def fetch_dm_relays(
    relays: tuple[str, ...], container: PublicKey, *, key: SecretKey, timeout_s: float
) -> tuple[str, ...] | None:
    """The relays of ``container``'s first valid kind 10050 on ``relays``; None if none came
    within ``timeout_s`` (``key`` answers NIP-42 AUTH)."""
    wanted = Filter(kinds=(RELAY_LIST_KIND,), authors=(container.hex(),))
    async with RelayPool(relays, secret_key=key) as pool:
        sub = await pool.subscribe([wanted])
        try:
            async with asyncio.timeout(timeout_s):
                async for event in sub:
                    if event.pubkey != container.hex() or event.kind != RELAY_LIST_KIND:
                        continue  # pragma: no cover - the relay applied our filter
                    try:
                        return parse_relay_list(event)
                    except NostrError:
                        continue
        except TimeoutError:
            pass
        finally:
            await sub.close()
    return None


def _render(job: JobSession, relays: tuple[str, ...], user: PublicKey, *, as_json: bool) -> str:
    verification = job.verification
    container = PublicKey.from_hex(verification.container)
    if as_json:
        return json.dumps(
            {
                "job": job.job_id,
                "container": verification.container,
                "container_npub": encode_npub(container),
                "relays": list(relays),
                "user_npub": encode_npub(user),
                "simulated": verification.simulated,
                "verification": describe_verification(verification),
            },
            indent=2,
        )
    lines = [
        f"container: {encode_npub(container)}",
        *(f"relay: {url}" for url in relays),
        f"job: {job.job_id}",
        "",
        describe_verification(verification),
        "",
        f"Now open a NIP-17 client logged in as {encode_npub(user)}, add the container's npub,",
        "and write to it (it answers each message once; /end ends the job and destroys it).",
    ]
    return "\n".join(lines)


async def run_chat_in_client(
    options: JobOptions, identity: SecretKey | None, *, as_json: bool
) -> str:
    """Publish, verify, read C's DM relays; the text to print. Raises the client's errors."""
    if identity is None:
        raise OptionsError(
            "--chat-in-client needs --key FILE (your nsec): you chat with the key your client holds"
        )
    options = dataclasses.replace(options, fresh_session=False)  # reply-to: U, no session key
    job = JobSession(options, mode=JobMode.CHAT, identity=identity)
    try:
        verification = await job.start()
        wait_s = min(RELAY_LIST_WAIT_S, options.timeouts.attestation_s)
        relays = await fetch_dm_relays(
            options.relays,
            PublicKey.from_hex(verification.container),
            key=identity,
            timeout_s=wait_s,
        )
        if relays is None:  # NIP-17 clients refuse to send to a key without one
            raise ClientTimeout(job.job_id, f"DM relay list (kind {RELAY_LIST_KIND})", wait_s)
        return _render(job, relays, identity.public_key, as_json=as_json)
    finally:
        await job.close()  # never the end message: the user's client talks to C from here
