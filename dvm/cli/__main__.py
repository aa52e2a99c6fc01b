"""``python -m dvm.cli``: the ``cdvm`` command."""

from __future__ import annotations

from .main import main

main()
