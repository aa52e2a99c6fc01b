"""ChainCache: the same answers as verify_chain, fewer RSA verifications."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from attestation.chain_cache import ChainCache
from attestation.errors import ChainError, UntrustedRoot
from attestation.simulated import SIMULATED_PRODUCT, SimulatedChain, mint_chain
from attestation.snp.abi import Product

MINTED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = MINTED + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return mint_chain(now=MINTED)


def pins(chain: SimulatedChain) -> dict[Product, frozenset[str]]:
    return {SIMULATED_PRODUCT: frozenset({hashlib.sha256(chain.der("ark")).hexdigest()})}


def check(
    cache: ChainCache,
    chain: SimulatedChain,
    now: dt.datetime,
    trusted: dict[Product, frozenset[str]],
) -> str:
    return cache.verify_chain(
        chain.vcek, chain.ask, chain.ark, product=SIMULATED_PRODUCT, now=now, trusted_arks=trusted
    )


def test_second_lookup_hits(chain: SimulatedChain) -> None:
    cache = ChainCache()
    first = check(cache, chain, NOW, pins(chain))
    assert check(cache, chain, NOW + dt.timedelta(days=1), pins(chain)) == first
    assert first == hashlib.sha256(chain.der("ark")).hexdigest()
    assert (cache.misses, cache.hits, len(cache)) == (1, 1, 1)


def test_pins_are_checked_on_every_hit(chain: SimulatedChain) -> None:
    cache = ChainCache()
    check(cache, chain, NOW, pins(chain))
    with pytest.raises(UntrustedRoot):
        check(cache, chain, NOW, {})
    assert cache.hits == 0


def test_validity_is_checked_on_every_hit(chain: SimulatedChain) -> None:
    cache = ChainCache()
    check(cache, chain, NOW, pins(chain))
    with pytest.raises(ChainError, match="expired"):
        check(cache, chain, MINTED + dt.timedelta(days=8 * 365), pins(chain))
    with pytest.raises(ChainError, match="not valid before"):
        check(cache, chain, MINTED - dt.timedelta(days=1), pins(chain))
    with pytest.raises(ValueError, match="timezone"):
        check(cache, chain, NOW.replace(tzinfo=None), pins(chain))
    assert cache.hits == 0


def test_failures_are_not_cached(chain: SimulatedChain) -> None:
    cache = ChainCache()
    with pytest.raises(UntrustedRoot):
        check(cache, chain, NOW, {})
    assert len(cache) == 0


def test_bounded(chain: SimulatedChain) -> None:
    other = mint_chain(now=MINTED)
    cache = ChainCache(max_entries=1)
    check(cache, chain, NOW, pins(chain))
    check(cache, other, NOW, pins(other))
    assert len(cache) == 1
    check(cache, chain, NOW, pins(chain))
    assert cache.misses == 3


def test_parsed_certificates_are_remembered_and_bounded(chain: SimulatedChain) -> None:
    cache = ChainCache(max_entries=1)
    first = cache.certificate(chain.der("vcek"))
    assert cache.certificate(chain.der("vcek")) is first
    other = mint_chain(now=MINTED)
    for which in ("ark", "ask", "vcek"):
        cache.certificate(other.der(which))
    assert cache.certificate(chain.der("vcek")) is not first  # evicted, parsed again
    assert cache.certificate(chain.der("vcek")) == first
