"""Intake: turn a verified job-request event into an accepted job or a refusal (DESIGN §3.2-3.3).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md
NIP-40: https://github.com/nostr-protocol/nips/blob/master/40.md (expiration)

Contract: :func:`screen` is pure apart from the admission buckets: given an :class:`Event`
(its id and signature were verified when it was parsed, by the relay pool) it returns
:class:`Accepted` or a :class:`~dvm.node.admission.Refusal` with the cdvm/1 reason. Unsigned
or unparseable events never become an ``Event`` and are dropped by the pool (with a log line);
events that are not job requests for this node (:func:`is_for_us` False) are ignored silently.

Checks, in order (cheap and anti-flood first, so a flood costs little and is throttled):

1. size of the event's JSON <= ``limits.max_request_bytes``          -> ``bad-request``
2. allow-list, NIP-13 proof of work, per-requester rate limit        -> see admission
3. :func:`dvm.nostr.nip90.parse_job_request` (nonce present and 64 hex, one ``p``, one
   ``tee``, no confidential data, well-formed tags)                   -> ``bad-request``
4. the kind is one this node serves                                  -> ``bad-request``
5. ``expiration`` not in the past                                    -> ``bad-request``
6. ``tee`` offered by this node                                      -> ``unsupported-tee``
7. ``model`` param present                                           -> ``bad-request``
   and served here                                                   -> ``unsupported-model``
8. every other param known and in range (:mod:`dvm.cdvm.params`)     -> ``bad-request``
9. a free job slot                                                   -> ``capacity``
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

__all__ = ["Accepted", "is_for_us", "screen"]


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


def screen(
    event: Event,
    *,
    config: NodeConfig,
    admission: Admission,
    running_jobs: int,
    now: int,
) -> Accepted | Refusal:
    """Every check of the module docstring, in order; ``now`` is unix seconds."""
    size_bytes = len(event.to_json().encode("utf-8"))
    if size_bytes > config.limits.max_request_bytes:
        return _bad(
            f"the request is {size_bytes} bytes; this provider accepts at most "
            f"{config.limits.max_request_bytes}"
        )
    refusal = (
        admission.check_allowed(event.pubkey)
        or admission.check_pow(event)
        or admission.check_rate(event.pubkey)
    )
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
