"""Shared fixtures."""

from __future__ import annotations

from tests.integration.conftest import RelayProcess, relay, relay_factory

__all__ = ["RelayProcess", "relay", "relay_factory"]
