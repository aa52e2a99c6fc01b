"""``dvm.client``: the requester side of a confidential job (DESIGN §3; ``docs/client.md``).

``await submit(options, text)`` runs a one-shot job; ``async with Chat(options) as chat``
verifies the container, then ``await chat.send(text)`` per message and ``await chat.end()``.
Both refuse to send anything unless the container's attestation verifies
(:class:`AttestationRefused` lists every reason). The public surface is ``__all__``.

Inside: a pure job state machine (``machine.py``, its vocabulary ``events.py`` and its bookkeeping
``record.py``), the asyncio shell that performs its actions (``session.py`` over
``transport.py``), the channel reader (``reader.py``), the attestation check (``verify.py``)
with the requester's pins (``pins.py`` and ``gpu_pins.py``, pure; reference values fetched by
``references.py``), options, outcome and errors.
"""

from __future__ import annotations

from .errors import (
    AttestationRefused,
    ClientError,
    ClientTimeout,
    JobFailed,
    NotPublished,
    OptionsError,
)
from .options import (
    JobMode,
    JobOptions,
    ProgressListener,
    Step,
    Timeouts,
    load_crl_policy,
    load_policy_file,
    trust_simulated_roots,
)
from .outcome import JobOutcome, describe_verification, outcome_to_json
from .pins import PinKind, Pins
from .reader import Answers, ChannelReader
from .references import fetch_references
from .session import Chat, JobSession, submit
from .verify import Verification, default_crl_policy, verify_attestation

__all__ = [
    "Answers",
    "AttestationRefused",
    "ChannelReader",
    "Chat",
    "ClientError",
    "ClientTimeout",
    "JobFailed",
    "JobMode",
    "JobOptions",
    "JobOutcome",
    "JobSession",
    "NotPublished",
    "OptionsError",
    "PinKind",
    "Pins",
    "ProgressListener",
    "Step",
    "Timeouts",
    "Verification",
    "default_crl_policy",
    "describe_verification",
    "fetch_references",
    "load_crl_policy",
    "load_policy_file",
    "outcome_to_json",
    "submit",
    "trust_simulated_roots",
    "verify_attestation",
]
