"""Intake: turn a verified job-request event into an accepted job or a refusal (DESIGN §3.2-3.3).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md
NIP-40: https://github.com/nostr-protocol/nips/blob/master/40.md (expiration)

Contract: :func:`screen` is pure apart from the admission buckets: given an :class:`Event`
(its id and signature were verified when it was parsed, by the relay pool) it returns
:class:`Accepted` or a :class:`~dvm.node.admission.Refusal` with the cdvm/1 reason. Unsigned
or unparseable events never become an ``Event`` and are dropped by the pool (with a log line);
events that are not job requests for this node (:func:`is_for_us` False) are ignored silently.

Checks, in order (cheap and anti-flood first, so a flood costs little and is throttled). The
first six are :func:`precheck`: stateless, about one serialisation and one hash of work, and the
node runs them **before it writes anything to its ledger**, so a request they refuse leaves no
row (docs/node.md §3, §4):

1. size of the event's JSON <= ``limits.max_request_bytes``          -> ``bad-request``
2. the kind is one this node serves                                  -> ``bad-request``
3. ``expiration`` (when it is a decimal) not in the past             -> ``bad-request``
4. allow-list, then NIP-13 proof of work (the bits required rise
   under load, :meth:`~dvm.node.admission.Admission.required_pow_bits`) -> ``bad-request``

Then :func:`admit` (the node has looked the id up in its ledger in between; a refusal from here
on is recorded as ``refused``):

5. per-requester rate limit                                          -> ``rate-limited``
6. :func:`dvm.nostr.nip90.parse_job_request` (nonce present and 64 hex, one ``p``, one
   ``tee``, no confidential data, well-formed tags)                   -> ``bad-request``
7. ``tee`` offered by this node                                      -> ``unsupported-tee``
8. ``model`` param present                                           -> ``bad-request``
   and served here                                                   -> ``unsupported-model``
9. every other param known and in range (:mod:`dvm.cdvm.params`)     -> ``bad-request``
10. a free job slot                                                  -> ``capacity``

:func:`screen` is both, in order (what a caller without a ledger runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from dvm.cdvm.params import ParamError, check_param
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event
from dvm.nostr.nip40 import is_expired
from dvm.nostr.nip90 import JOB_REQUEST_KINDS, ErrorReason, JobRequest, parse_job_request

from .admission import Admission, Refusal
from .config import ModelConfig, NodeConfig

__all__ = ["Accepted", "admit", "is_for_us", "precheck", "screen"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A request that passed every check: launch it."""

    request: JobRequest
    model: ModelConfig


def is_for_us(event: Event, provider_hex: str) -> bool:
    """A job request (kind 5000-5999) whose ``p`` tags name this node."""
    return event.kind in JOB_REQUEST_KINDS and provider_hex in event.tag_values("p")


def _bad(message: str) -> Refusal:
    return Refusal(ErrorReason.BAD_REQUEST, message)


def _validate(request: JobRequest, config: NodeConfig, *, now: int) -> ModelConfig | Refusal:
    if request.kind not in config.kinds:
        served = ", ".join(str(k) for k in config.kinds)
        return _bad(f"job kind {request.kind} is not served here (served: {served})")
    if is_expired(request.expiration, now=now):
        return _bad("the request has expired (NIP-40 expiration is in the past)")
    if request.tee not in config.tee.kinds:
        offered = ", ".join(config.tee.kinds)
        return Refusal(
            ErrorReason.UNSUPPORTED_TEE,
            f"TEE kind {request.tee[:40]!r} is not offered here (offered: {offered})",
        )
    name = request.model
    if name is None:
        return _bad("the request names no model (['param', 'model', name])")
    model = config.model(name)
    if model is None:
        served = ", ".join(m.name for m in config.models)
        return Refusal(
            ErrorReason.UNSUPPORTED_MODEL,
            f"model {name[:64]!r} is not served here (served: {served})",
        )
    for key, value in request.params:
        try:
            check_param(key, value, max_output_tokens=config.limits.max_output_tokens)
        except ParamError as exc:
            return _bad(str(exc))
    return model


def _expiration(event: Event) -> int | None:
    """The first ``expiration`` tag's value if it is a plain decimal (else the parser refuses)."""
    for tag in event.tags:
        if tag[0] == "expiration" and len(tag) >= 2 and tag[1].isascii() and tag[1].isdigit():
            return int(tag[1][:20])
    return None


def precheck(event: Event, *, config: NodeConfig, admission: Admission, now: int) -> Refusal | None:
    """Checks 1-4 of the module docstring: no ledger, no per-key state; ``now`` in unix s."""
    size_bytes = len(event.to_json().encode("utf-8"))
    if size_bytes > config.limits.max_request_bytes:
        return _bad(
            f"the request is {size_bytes} bytes; this provider accepts at most "
            f"{config.limits.max_request_bytes}"
        )
    if event.kind not in config.kinds:
        served = ", ".join(str(k) for k in config.kinds)
        return _bad(f"job kind {event.kind} is not served here (served: {served})")
    if is_expired(_expiration(event), now=now):
        return _bad("the request has expired (NIP-40 expiration is in the past)")
    return admission.check_allowed(event.pubkey) or admission.check_pow(event)


def admit(
    event: Event, *, config: NodeConfig, admission: Admission, running_jobs: int, now: int
) -> Accepted | Refusal:
    """Checks 5-10 of the module docstring, for an event that passed :func:`precheck`."""
    refusal = admission.check_rate(event.pubkey)
    if refusal is not None:
        return refusal
    try:
        request = parse_job_request(event)
    except NostrError as exc:
        return _bad(f"malformed job request: {exc}")
    checked = _validate(request, config, now=now)
    if isinstance(checked, Refusal):
        return checked
    refusal = admission.check_capacity(running_jobs)
    if refusal is not None:
        return refusal
    return Accepted(request=request, model=checked)


def screen(
    event: Event,
    *,
    config: NodeConfig,
    admission: Admission,
    running_jobs: int,
    now: int,
) -> Accepted | Refusal:
    """Every check of the module docstring, in order; ``now`` is unix seconds."""
    refusal = precheck(event, config=config, admission=admission, now=now)
    if refusal is not None:
        return refusal
    return admit(event, config=config, admission=admission, running_jobs=running_jobs, now=now)
