"""The simulated TEE (DESIGN §4): a real signer with a locally minted, AMD-shaped chain.

:mod:`~attestation.simulated.chain` mints and keeps the chain, :mod:`~attestation.simulated.signer`
signs SNP-ABI reports, :mod:`~attestation.simulated.measure` computes the runtime measurement.
Evidence from it proves nothing about confidentiality and verifiers refuse it unless its root is
trusted explicitly; see ``docs/attestation.md``.
"""

from __future__ import annotations

from .chain import (
    ARK_CN,
    ASK_CN,
    DEFAULT_CONFIG_DIR,
    SIMULATED_PRODUCT,
    SIMULATED_TCB,
    SimulatedChain,
    load_or_mint,
    mint_chain,
)
from .measure import MEASUREMENT_DOMAIN, measure_files, measure_runtime, runtime_files
from .signer import SimulatedTee

__all__ = [
    "ARK_CN",
    "ASK_CN",
    "DEFAULT_CONFIG_DIR",
    "MEASUREMENT_DOMAIN",
    "SIMULATED_PRODUCT",
    "SIMULATED_TCB",
    "SimulatedChain",
    "SimulatedTee",
    "load_or_mint",
    "measure_files",
    "measure_runtime",
    "mint_chain",
    "runtime_files",
]
