"""Shared fixtures for every test directory.

- ``relay`` / ``relay_factory``: real ``nostr-relay`` processes (tests/integration/conftest.py).
- ``node_factory``, ``onnx_model``, ``gemma_model``, ``simulated_dir``: a real provider node
  (``cdvm serve``) and its models (tests/e2e/conftest.py), for the e2e and interop tests.
"""

from __future__ import annotations

from tests.e2e.conftest import gemma_model, node_factory, onnx_model, simulated_dir
from tests.integration.conftest import RelayProcess, relay, relay_factory

__all__ = [
    "RelayProcess",
    "gemma_model",
    "node_factory",
    "onnx_model",
    "relay",
    "relay_factory",
    "simulated_dir",
]
