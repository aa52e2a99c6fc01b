"""dvm.nostr.nip40: an event is expired at its expiration second (NIP-40)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.nip40 import is_expired


def test_no_expiration_never_expires() -> None:
    assert not is_expired(None, now=2**62)


def test_expired_at_the_second_itself() -> None:
    assert not is_expired(100, now=99)
    assert is_expired(100, now=100)
    assert is_expired(100, now=101)


@given(st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=0, max_value=2**63))
def test_expired_exactly_when_now_has_reached_it(expiration: int, now: int) -> None:
    assert is_expired(expiration, now=now) is (now >= expiration)
