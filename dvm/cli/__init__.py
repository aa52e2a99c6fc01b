"""The ``cdvm`` command: every subcommand's module lives here (``main`` dispatches).

Modules: ``main`` (the parser, ``keygen``, ``relay``), ``jobs`` (``submit``, ``chat``),
``serve`` (the provider node), ``attest`` (``attest verify|measure``), ``demo`` (``make demo``'s
walk-through) and ``embedded_relay`` (the development relay, configured from the package data
in ``relay_config/``). This is the top layer: nothing else in ``dvm`` imports it.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
