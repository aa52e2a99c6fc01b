"""NIP-01 subscription filters: the value sent in ``REQ`` and the matching rule.

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md#from-client-to-relay-sending-events-and-creating-subscriptions

A :class:`Filter` is a frozen value. ``Filter.from_dict`` parses the wire object (structural
checks only: 64-hex ids and authors, kinds in [0, 65535], non-negative ``since``/``until``/
``limit``, single-letter ``#x`` tag keys with string values) and raises :class:`MessageError`
on anything else; unknown keys (e.g. NIP-50 ``search``) are refused rather than silently
dropped, so a filter never widens on the way through. ``matches`` is the NIP-01 rule: every
present condition must hold, lists are OR-ed, ``since <= created_at <= until``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import MessageError
from .event import MAX_KIND, Event
from .hex64 import is_hex64

__all__ = ["Filter"]


def _hex64_list(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise MessageError(f"filter {name} must be a list")
    for item in value:
        if not is_hex64(item):
            raise MessageError(f"filter {name} must hold 64 lowercase hex strings")
    return tuple(value)


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MessageError(f"filter {name} must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class Filter:
    """One NIP-01 filter. ``tags`` holds ``(letter, values)`` pairs for ``#letter`` keys."""

    ids: tuple[str, ...] | None = None
    authors: tuple[str, ...] | None = None
    kinds: tuple[int, ...] | None = None
    tags: tuple[tuple[str, tuple[str, ...]], ...] = ()
    since: int | None = None
    until: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        # Re-validate through the wire form so a hand-built Filter obeys the same rules.
        Filter._check(self.to_dict())

    @staticmethod
    def tag(letter: str, values: Iterable[str]) -> tuple[str, tuple[str, ...]]:
        """Build one ``tags`` entry: ``Filter(tags=(Filter.tag("p", [pk]),))``."""
        return (letter, tuple(values))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ids is not None:
            out["ids"] = list(self.ids)
        if self.authors is not None:
            out["authors"] = list(self.authors)
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        for letter, values in self.tags:
            out[f"#{letter}"] = list(values)
        if self.since is not None:
            out["since"] = self.since
        if self.until is not None:
            out["until"] = self.until
        if self.limit is not None:
            out["limit"] = self.limit
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Filter:
        """Parse the wire object of one filter; :class:`MessageError` on anything malformed."""
        cls._check(data)
        tags = tuple((key[1], tuple(value)) for key, value in data.items() if key.startswith("#"))
        kinds = data.get("kinds")
        return cls(
            ids=tuple(data["ids"]) if "ids" in data else None,
            authors=tuple(data["authors"]) if "authors" in data else None,
            kinds=tuple(kinds) if kinds is not None else None,
            tags=tags,
            since=data.get("since"),
            until=data.get("until"),
            limit=data.get("limit"),
        )

    @staticmethod
    def _check(data: object) -> None:
        if not isinstance(data, Mapping):
            raise MessageError("a filter must be a JSON object")
        seen_letters: set[str] = set()
        for key, value in data.items():
            if not isinstance(key, str):
                raise MessageError("filter keys must be strings")
            if key in ("ids", "authors"):
                _hex64_list(value, key)
            elif key == "kinds":
                if not isinstance(value, list) or not all(
                    not isinstance(k, bool) and isinstance(k, int) and 0 <= k <= MAX_KIND
                    for k in value
                ):
                    raise MessageError("filter kinds must be integers in [0, 65535]")
            elif key in ("since", "until", "limit"):
                _non_negative_int(value, key)
            elif key.startswith("#") and len(key) == 2 and key[1].isascii() and key[1].isalpha():
                if key[1] in seen_letters:
                    raise MessageError(f"filter tag {key} appears twice")
                seen_letters.add(key[1])
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise MessageError(f"filter {key} must be a list of strings")
            else:
                raise MessageError(f"unsupported filter key {key[:16]!r}")

    def with_since(self, since: int) -> Filter:
        """This filter narrowed to ``created_at >= since`` (never widened: keeps a later since)."""
        if self.since is not None and self.since >= since:
            return self
        return replace(self, since=since)

    def matches(self, event: Event) -> bool:
        """The NIP-01 matching rule (``limit`` only applies to stored events and is ignored)."""
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        return all(set(event.tag_values(letter)) & set(values) for letter, values in self.tags)
