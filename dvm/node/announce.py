"""What the node says about itself: the NIP-89 announcement, its NIP-65 relay list, and the
NIP-09 deletion of the announcement on clean shutdown (DESIGN §3.1).

NIP-89: https://github.com/nostr-protocol/nips/blob/master/89.md (kind 31990)
NIP-65: https://github.com/nostr-protocol/nips/blob/master/65.md (kind 10002, ``["r", url]``)
NIP-09: https://github.com/nostr-protocol/nips/blob/master/09.md (kind 5, ``["a", address]``)

Contract: pure builders of unsigned events (the caller signs with the node key P and supplies
``created_at``). The announcement's content carries ``name``, ``about``, both encryption
flags, ``nip90Params`` (what :mod:`dvm.cdvm.params` accepts, each entry with ``required``,
``values`` and ``description`` as nostrdvm clients read them), ``tee`` and ``models`` (name,
runner, sha256), one ``k`` tag per served job kind, and the node's proof-of-work policy as
``["pow", <min_pow_bits>, <bits required under load>, <refusals per minute that mean load>]``
(NIP-13; docs/protocol.md "Proof of work"): a requester that reads it can mine enough work up
front, which matters under load, when refusals are not all answered.
"""

from __future__ import annotations

from dvm.cdvm.params import DESCRIPTIONS, MODES, PARAMS, REQUEST_PARAMS
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.nip09 import build_deletion
from dvm.nostr.nip89 import HANDLER_KIND, Handler, ModelInfo, build_handler, handler_address

from .config import NodeConfig

__all__ = [
    "POW_TAG",
    "RELAY_LIST_KIND",
    "build_announcement",
    "build_relay_list",
    "build_withdrawal",
    "handler_for",
]

RELAY_LIST_KIND = 10002
POW_TAG = "pow"


def _nip90_params(config: NodeConfig) -> dict[str, object]:
    """What a request may set: the rows of :data:`dvm.cdvm.params.PARAMS` a request may carry.

    Every entry has ``required`` (bool), ``values`` (the allowed values where they are a set:
    ``model`` the served names, ``mode`` :data:`MODES`; ``[]`` for a number, as nostrdvm's own
    announcements write a free value) and ``description`` (:data:`DESCRIPTIONS`): the shape
    nostrdvm-based clients read (``params[name]["required"]``, ``params[name]["values"]``,
    believethehype/nostrdvm ``nostr_dvm/bot.py``). Numbers add their range as ``min``/``max``,
    ``mode`` its ``default``.
    """

    def entry(name: str, values: list[str], **extra: object) -> dict[str, object]:
        required = name == "model"
        return {"required": required, "values": values, "description": DESCRIPTIONS[name], **extra}

    announced: dict[str, object] = {
        "model": entry("model", [m.name for m in config.models]),
        "mode": entry("mode", list(MODES), default="chat"),
        "max_tokens": entry("max_tokens", [], min=1, max=config.limits.max_output_tokens),
    }
    for name, rule in PARAMS.items():
        if name not in announced and name in REQUEST_PARAMS:
            announced[name] = entry(name, [], min=rule.low, max=rule.high)
    return announced


def handler_for(config: NodeConfig) -> Handler:
    return Handler(
        identifier=config.identifier,
        kinds=config.kinds,
        name=config.name,
        about=config.about,
        encryption_supported=True,
        nip90_params=_nip90_params(config),
        tee=config.tee.kinds,
        models=tuple(ModelInfo(m.name, m.runner.value, m.sha256) for m in config.models),
    )


def build_announcement(config: NodeConfig, *, author_hex: str, created_at: int) -> UnsignedEvent:
    """The kind-31990 handler event of this node, with its ``pow`` tag."""
    handler = build_handler(handler_for(config), author_hex=author_hex, created_at=created_at)
    limits = config.limits
    under_load = max(limits.min_pow_bits, limits.load_pow_bits)
    pow_tag = (
        POW_TAG,
        str(limits.min_pow_bits),
        str(under_load),
        str(limits.load_refusals_per_minute),
    )
    return UnsignedEvent(
        handler.pubkey, handler.created_at, handler.kind, (*handler.tags, pow_tag), handler.content
    )


def build_relay_list(config: NodeConfig, *, author_hex: str, created_at: int) -> UnsignedEvent:
    """The kind-10002 relay list: the node reads and writes on each of its relays."""
    tags = tuple(("r", url) for url in config.relays)
    return UnsignedEvent(author_hex, created_at, RELAY_LIST_KIND, tags, "")


def build_withdrawal(config: NodeConfig, *, author_hex: str, created_at: int) -> UnsignedEvent:
    """The kind-5 deletion of this node's announcement (``a`` + ``k`` 31990)."""
    return build_deletion(
        author_hex=author_hex,
        created_at=created_at,
        addresses=[handler_address(author_hex, config.identifier)],
        kinds=[HANDLER_KIND],
        reason="provider shutting down",
    )
